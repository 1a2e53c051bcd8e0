"""The `lab` command: parses arguments, calls one library function, prints.

Commands live in small modules beside this one and are imported only when run (or when their own `--help` is
asked for), so `lab --help` and `lab search` start fast and never import torch, transformers or mkdocs.
Errors become one line on stderr in lab.cli.exits, the one mapping this CLI shares with the fast path.
"""

from __future__ import annotations

import importlib
import sys

import click


# name -> (module, function, one-line help). Kept here so `lab --help` needs no command module.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("lab.cli.core", "init_cmd", "Make a lab: experiments/, papers/, mkdocs.yml, .gitignore."),
    "new": ("lab.cli.core", "new_cmd", "Make a new experiment (optionally a variant of another)."),
    "list": ("lab.cli.core", "list_cmd", "List the experiments."),
    "show": ("lab.cli.core", "show_cmd", "Print a setting's resolved JSON, or an experiment's settings."),
    "note": ("lab.cli.papers", "note_cmd", "Keep arXiv papers as notes in papers/, linked to experiments."),
    "feed": ("lab.cli.papers", "feed_cmd", "Follow RSS/Atom feeds and arXiv categories: add, list, pull, remove."),
    "bib": ("lab.cli.papers", "bib_cmd", "Print BibTeX for the paper notes."),
    "run": ("lab.cli.runs", "run_cmd", "Queue settings and run them in the background (one at a time, or on GPU lanes)."),
    "status": ("lab.cli.runs", "status_cmd", "Show the queue and the runs (state, times, exit code, metrics)."),
    "logs": ("lab.cli.runs", "logs_cmd", "Print or follow a run's log."),
    "stop": ("lab.cli.runs", "stop_cmd", "Stop the queue after the running job (--now: end it too)."),
    "cancel": ("lab.cli.runs", "cancel_cmd", "Remove queued jobs from the queue."),
    "gpus": ("lab.cli.gpus", "gpus_cmd", "Show the machine's GPUs and what runs on each: this lab's jobs, other labs', other processes."),
    "notify": ("lab.cli.runs", "notify_cmd", "Show where lab sends word of failures and a drained queue; --test sends one."),
    "search": ("lab.cli.search", "search_cmd", "Search experiments, settings, runs, papers and feed items."),
    "related": ("lab.cli.search", "related_cmd", "Papers, feed items and experiments closest to an experiment."),
    "reindex": ("lab.cli.search", "reindex_cmd", "Rebuild the search index from the files."),
    "watch": ("lab.cli.search", "watch_cmd", "Keep the search index fresh from file events (faster searches)."),
    "compare": ("lab.cli.book", "compare_cmd", "Compare an experiment's runs: differing settings, final metrics, best run."),
    "report": ("lab.cli.book", "report_cmd", "Write an experiment's runs table into its report.md (between markers)."),
    "book": ("lab.cli.book", "book_cmd", "Build (or --serve) the lab book; --out renders it; EXP --single FILE writes one page."),
    "reproduce": ("lab.cli.drift", "reproduce_cmd", "Run a recorded attempt again as recorded (its commit, settings, command)."),
    "recapture": ("lab.cli.capture", "recapture_cmd", "Derive ended runs' metrics again from their logs and output files."),
    "capture": ("lab.cli.capture", "capture_cmd", "Show what lab would capture from a log file (try capture patterns)."),
    "diff": ("lab.cli.drift", "diff_cmd", "Show why two runs differ: settings, command, code, inputs, packages, metrics."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and name not in COMMANDS and not name.startswith("-"):
            from lab.core.keys import unknown_name

            raise click.UsageError(f"No such command {name!r}{unknown_name(name, sorted(COMMANDS), 'commands', limit=40)}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class LabContext:
    """What every command gets: the `--root` option, resolved to a Workspace on first use."""

    def __init__(self, root: str | None, debug: bool):
        self.root_option = root
        self.debug = debug
        self._workspace = None

    @property
    def workspace(self):
        if self._workspace is None:
            from lab.core.workspace import Workspace

            self._workspace = Workspace.find(self.root_option)
        return self._workspace

    @property
    def lab(self):
        """The Python API's Lab (lab.api) over the same workspace: what a command calls, then formats."""
        from lab.api import Lab

        return Lab(self.workspace)


pass_lab = click.make_pass_decorator(LabContext)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", metavar="DIR", type=click.Path(file_okay=False), help="The lab root (default: $LAB_ROOT, else the nearest directory above holding experiments/).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.version_option(package_name="lab", prog_name="lab")
@click.pass_context
def cli(ctx, root, debug):
    """lab: a lab notebook for ML research.

    Experiments are directories (settings/, logs/, models/, report.md); `lab run` queues their settings and
    runs them in the background (one after another, or several at once on GPU lanes); `lab note` keeps arXiv papers as Markdown notes;
    `lab search` finds all of it.

    \b
    Example:
      lab init mylab && cd mylab
      lab new exp1
      lab run exp1 --wait
      lab search "learning rate warmup"
    """
    ctx.obj = LabContext(root, debug)


def echo_json(data) -> None:
    """Print machine-readable output on stdout."""
    import json

    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def main(args=None, prog_name: str = "lab") -> None:
    """Entry point: run the CLI, turning every error into one line on stderr and an exit status (lab.cli.exits)."""
    from lab.cli.exits import run

    args = sys.argv[1:] if args is None else list(args)
    debug = "--debug" in args[: args.index("--") if "--" in args else len(args)]
    run(lambda: cli.main(args=args, prog_name=prog_name, standalone_mode=False), debug, translate=click_error)


def click_error(error: BaseException) -> tuple[str, int] | None:
    """click's own errors as (line, exit status): usage errors (2) name the help to read; None for the rest."""
    if isinstance(error, click.exceptions.UsageError):
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        return f"{error.format_message()}{hint}", 2
    if isinstance(error, click.exceptions.Abort):
        return "aborted", 130
    if isinstance(error, click.exceptions.ClickException):
        return error.format_message(), error.exit_code
    return None
