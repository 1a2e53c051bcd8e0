"""`lab search` and `lab reindex`.

A plain `lab search ...` never reaches this module: `lab.cli.fast` answers it without importing click. This
command is what `lab search --help`, usage errors and in-process callers (CliRunner) see; both paths print
through `lab.cli.fast.run_search`.
"""

from __future__ import annotations

import sys
import time

import click

from lab.cli.app import echo_json, pass_lab
from lab.search.searcher import MAX_LIMIT, MODES, TYPES


@click.command("search")
@click.argument("words", nargs=-1, metavar="QUERY")
@click.option("--type", "type_", type=click.Choice(TYPES), help="Only documents of this type.")
@click.option("--exp", metavar="EXP", help="Only the experiment EXP: its report, settings, runs, and papers linked to it.")
@click.option("--tag", metavar="TAG", help="Only experiments and papers tagged TAG.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=MAX_LIMIT), help="At most this many results.")
@click.option("--mode", type=click.Choice(MODES), help="hybrid (the default where semantic search can run): words and "
              "meaning fused; keyword: words only; semantic: meaning only.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {type, id, title, section, snippet, path, score, match}.")
@pass_lab
def search_cmd(lab, words, type_, exp, tag, limit, mode, as_json):
    """Search experiments, reports, settings, runs, paper notes and feed items, by words and by meaning.

    Type a question as you would ask it. Documents with all the words come first, then those with some of them
    (bm25: titles count more than headings, headings more than text; `warmup` also finds `warm-up` and
    `warm up`, `schedules` finds `schedule`), fused with the documents closest in meaning (all-MiniLM-L6-v2
    embeddings; each ranking's scores scaled to 0-1 and added). "Quoted phrases" and prefix* must match;
    anything else you type is searched as plain text. The index (.lab/index.db) is brought up to date with the
    files first.

    \b
    Examples:
      lab search "does warmup help small-batch fine-tuning?"
      lab search warmup_steps --type setting --exp exp3
      lab search "linear ramp of the step size" --mode semantic --json
      lab search 学習率
    """
    code = run_search_cmd(lab.workspace.root, list(words), type_, exp, tag, limit, as_json, mode)
    if code:
        raise SystemExit(code)


def run_search_cmd(root, words, type_, exp, tag, limit, as_json, mode=None) -> int:
    from lab.cli.fast import run_search

    return run_search(root, words, type=type_, exp=exp, tag=tag, limit=limit, as_json=as_json, mode=mode)


@click.command("related")
@click.argument("exp", metavar="EXP")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1), help="At most this many.")
@click.option("--mode", type=click.Choice(MODES), help="hybrid (default where semantic search can run), keyword or semantic.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {type, id, title, path, score, match, linked}.")
@pass_lab
def related_cmd(lab, exp, limit, mode, as_json):
    """Papers, feed items and past experiments closest to experiment EXP (its title, tags, question, report and
    settings), by words and by meaning. Papers already linked to EXP are marked.

    \b
    Examples:
      lab related exp3
      lab related exp3 --limit 5 --json
    """
    found = [r.to_dict() for r in lab.lab.related(exp, limit=limit, mode=mode, say=lambda line: click.echo(line, err=True))]
    if as_json:
        echo_json(found)
        return
    click.echo(format_related(found), nl=False)
    if not found:
        experiment = lab.workspace.experiment(exp)
        click.echo(f"nothing related to {experiment.name} yet: describe it in {experiment.report_path}", err=True)


def format_related(found: list[dict]) -> str:
    """`[type id] title (linked)` and where it is, one pair of lines each."""
    lines = []
    for r in found:
        linked = " (linked)" if r["linked"] else ""
        lines.append(f"[{r['type']} {r['id']}] {r['title']}{linked}\n    {r['path']}\n")
    return "".join(lines)


@click.command("reindex")
@click.option("--keyword-only", is_flag=True, help="Do not embed new text now (searches embed it in the background); vectors of unchanged text are kept.")
@click.option("--json", "as_json", is_flag=True, help="Print what was indexed as JSON.")
@pass_lab
def reindex_cmd(lab, keyword_only, as_json):
    """Rebuild the search index (.lab/index.db) from the files, and embed every document for semantic search.

    Never needed for correct results (every search syncs the index first, and embeds what is new, in the
    background when it is much); use it after deleting or damaging the index, or to have semantic matches for
    the whole lab now. Vectors of text that did not change are kept. Progress goes to stderr.

    \b
    Example:
      lab reindex
    """
    from lab.search.rebuild import rebuild

    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if done == total or now - last[0] > 0.5:
            last[0] = now
            click.echo(f"\rindexing: {done}/{total} files", err=True, nl=done == total)

    from lab.cli.fast import download_progress

    with _EmbedBar(sys.stderr.isatty()) as bar:
        done = rebuild(lab.workspace.root, keyword_only=keyword_only, progress=progress, embed_progress=bar.update,
                       download_progress=download_progress if sys.stderr.isatty() else None,
                       say=lambda line: click.echo(f"lab: {line}", err=True))
    for message in done.warnings:
        click.echo(f"lab: warning: {message}", err=True)
    if as_json:
        echo_json({"files": done.files, "documents": done.documents, "embedded": done.embedded,
                   "seconds": round(done.seconds, 3), "warnings": done.warnings, "path": done.path})
    click.echo(f"indexed {done.files} files, {done.documents} documents in {done.index_seconds:.1f}s: {done.path}", err=True)
    if done.embedded:
        click.echo(f"embedded {done.embedded} documents in {done.seconds - done.index_seconds:.1f}s", err=True)


class _EmbedBar:
    """The embedding's progress bar on a terminal (rich, on stderr), drawn from the first update; nothing
    elsewhere."""

    def __init__(self, shown: bool):
        self.shown = shown
        self.bar = None
        self.task = None

    def __enter__(self):
        return self

    def update(self, done: int, total: int) -> None:
        if not self.shown:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("embedding", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


@click.command("watch")
@click.option("--detach", is_flag=True, help="Run in the background (new session, output to .lab/watch.log).")
@click.option("--stop", is_flag=True, help="Stop the lab's watcher.")
@click.option("--status", "show_status", is_flag=True, help="Say whether a watcher runs, and its state.")
@click.option("--json", "as_json", is_flag=True, help="With --status or --detach: print the watcher's state as JSON.")
@pass_lab
def watch_cmd(lab, detach, stop, show_status, as_json):
    """Keep the search index fresh from file events, so searches need not scan the lab first.

    Every search brings the index up to date with the files before it answers; on a large lab (thousands of
    notes) checking every file takes most of the search's time. A watcher (one per lab, Linux) follows the
    kernel's file events instead and has the index up to date whenever a search asks; searches use it
    automatically and scan as before when none runs. It exits when the lab is deleted.

    \b
    Examples:
      lab watch              # in the foreground; Ctrl-C stops it
      lab watch --detach     # in the background
      lab watch --status
      lab watch --stop
    """
    from lab.search import watch

    root = str(lab.workspace.root)
    if sum((detach, stop, show_status)) > 1:
        raise click.UsageError("give one of --detach, --stop, --status")
    if stop:
        pid = watch.stop(root)
        click.echo(f"stopped the watcher (pid {pid})" if pid else "no watcher runs for this lab", err=True)
        return
    if show_status or detach:
        info = watch.status(root) if show_status else watch.start(root)
        if as_json:
            echo_json({"watching": info is not None, **(info or {"root": root})})
        elif info is None:
            click.echo("not watching: every search scans the files first (start one with: lab watch --detach)")
        else:
            click.echo(f"watching {info['root']} (pid {info['pid']}, {info['directories']} directories, since {info['since']})")
        return

    def ready(info):
        click.echo(f"watching {info['root']} ({info['directories']} directories); Ctrl-C stops", err=True)

    from lab.search.watcher import serve

    try:
        serve(root, on_ready=ready)
    except KeyboardInterrupt:
        pass
