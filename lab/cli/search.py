"""`lab search` and `lab reindex`.

A plain `lab search ...` never reaches this module: `lab.cli.fast` answers it without importing click. This
command is what `lab search --help`, usage errors and in-process callers (CliRunner) see; both paths print
through `lab.cli.fast.run_search`.
"""

from __future__ import annotations

import time

import click

from lab.cli.app import echo_json, pass_lab
from lab.cli.fast import MAX_LIMIT, TYPES


@click.command("search")
@click.argument("words", nargs=-1, metavar="QUERY")
@click.option("--type", "type_", type=click.Choice(TYPES), help="Only documents of this type.")
@click.option("--exp", metavar="EXP", help="Only the experiment EXP: its report, settings, runs, and papers linked to it.")
@click.option("--tag", metavar="TAG", help="Only experiments and papers tagged TAG.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1, max=MAX_LIMIT), help="At most this many results.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {type, id, title, section, snippet, path, score}.")
@pass_lab
def search_cmd(lab, words, type_, exp, tag, limit, as_json):
    """Search experiments, reports, settings, runs, paper notes and feed items.

    Every word must match, best matches first (titles count more than headings, headings more than text).
    "Quoted phrases" and prefix* work; anything else you type is searched as plain text. The index
    (.lab/index.db) is brought up to date with the files first, so results are always current.

    \b
    Examples:
      lab search "learning rate warmup"
      lab search warmup_steps --type setting --exp exp3
      lab search 学習率 --json
    """
    code = run_search_cmd(lab.workspace.root, list(words), type_, exp, tag, limit, as_json)
    if code:
        raise SystemExit(code)


def run_search_cmd(root, words, type_, exp, tag, limit, as_json) -> int:
    from lab.cli.fast import run_search

    return run_search(root, words, type=type_, exp=exp, tag=tag, limit=limit, as_json=as_json)


@click.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print what was indexed as JSON.")
@pass_lab
def reindex_cmd(lab, as_json):
    """Rebuild the search index (.lab/index.db) from the files.

    Never needed for correct results (every search syncs the index first); use it after deleting or
    damaging the index, or to start clean.

    \b
    Example:
      lab reindex
    """
    from lab.search.index import index_path, reindex

    start = time.monotonic()
    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if done == total or now - last[0] > 0.5:
            last[0] = now
            click.echo(f"\rindexing: {done}/{total} files", err=True, nl=done == total)

    stats = reindex(lab.workspace.root, progress=progress)
    for message in stats.warnings:
        click.echo(f"lab: warning: {message}", err=True)
    seconds = time.monotonic() - start
    if as_json:
        echo_json({"files": stats.read, "documents": stats.documents, "seconds": round(seconds, 3),
                   "warnings": stats.warnings, "path": str(index_path(lab.workspace.root))})
    click.echo(f"indexed {stats.read} files, {stats.documents} documents in {seconds:.1f}s: "
               f"{index_path(lab.workspace.root)}", err=True)


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
