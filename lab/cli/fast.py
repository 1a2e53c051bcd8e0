"""The `lab` entry point, with a click-free path for `lab search` and `lab status`.

Importing click alone takes longer than Python's whole start-up, and `lab search` must answer in about the
time of `python -c "import sqlite3"` (`lab status`, run again and again while jobs run, in well under 200 ms).
So `main` recognises a plain `lab [--root DIR] [--debug] search ...` or `... status ...` invocation itself,
parses its few options, and prints without importing click, rich, YAML or sqlite-utils. Anything else
(`--help`, a bad option, every other command) goes to the click CLI in `lab.cli.app`, which registers both
commands too (lab/cli/search.py, lab/cli/runs.py, calling the functions here) so help and errors look as usual.
Both paths share the error mapping (lab.cli.exits), root discovery (lab.core.layout.find_root) and the name check
(lab.core.names); tests/cli/test_fast_path.py checks that this parser either declines a command line or agrees with
click.
"""

from __future__ import annotations

import os
import sys

from lab.cli.exits import run
from lab.core.layout import find_root

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace

SLOW_SCAN = 0.15  # seconds: a freshness scan this slow earns a hint about `lab watch`
_VALUE_OPTIONS = {"--type": "type", "--exp": "exp", "--tag": "tag", "--limit": "limit", "--mode": "mode"}


def main(argv=None) -> None:
    """Run `lab`: the fast path for a plain `lab search` or `lab status`, the click CLI for everything else."""
    args = sys.argv[1:] if argv is None else list(argv)
    parsed = parse(args)
    if parsed is None:
        from lab.cli.app import main as click_main

        click_main(args, prog_name="lab")
        return
    name, options = parsed
    command = run_search if name == "search" else _status_at_root
    debug = options.pop("debug")
    root = options.pop("root")
    run(lambda: command(find_root(root), **options), debug)


def parse(args: list[str]) -> tuple[str, dict] | None:
    """("search" or "status", its options) for a command line the fast path answers; None leaves it to click."""
    for name, parser in (("search", _parse_search), ("status", _parse_status)):
        options = parser(args)
        if options is not None:
            return name, options
    return None


def _parse_global(args: list[str], command: str, out: dict) -> int | None:
    """Parse `[--root DIR] [--debug]` before `command` into `out`; the index after `command`, or None."""
    i = 0
    while i < len(args) and args[i] != command:
        a = args[i]
        if a == "--debug":
            out["debug"] = True
        elif a == "--root" and i + 1 < len(args):
            out["root"] = args[i + 1]
            i += 1
        elif a.startswith("--root="):
            out["root"] = a[len("--root=") :]
        else:
            return None
        i += 1
    return i + 1 if i < len(args) else None


def _parse_status(args: list[str]) -> dict | None:
    """The options of `lab [--root DIR] [--debug] status [TARGET...] [--json]`, or None to let click handle it."""
    out = {"root": None, "debug": False, "targets": [], "as_json": False}
    i = _parse_global(args, "status", out)
    if i is None:
        return None
    for a in args[i:]:
        if a == "--json":
            out["as_json"] = True
        elif a.startswith("-"):
            return None  # --help, a typo: click explains
        else:
            out["targets"].append(a)
    return out


def _status_at_root(root: str, targets: list[str], as_json: bool) -> int:
    from lab.core.workspace import Workspace

    return run_status(Workspace(root), targets, as_json)


def run_status(workspace: Workspace, targets: list[str], as_json: bool = False) -> int:
    """Print the runs (a table, or JSON on stdout) and the runner's state (stderr); return the exit status."""
    from lab.runs.local.info import queue_info
    from lab.runs.status import entries_json, table_rows

    if as_json:
        text = entries_json(workspace, list(targets))
        sys.stdout.write(text + "\n")
        empty = text == "[]"
    else:
        rows = table_rows(workspace, list(targets))
        sys.stdout.write(format_status(rows))
        empty = not rows
    sys.stdout.flush()
    info = queue_info(workspace)
    if empty:
        sys.stderr.write("no runs yet; start some with: lab run EXP\n")
    if info["runner_pid"]:
        sys.stderr.write(f"runner: running (pid {info['runner_pid']}); {info['queued']} queued{lanes_text(info['lanes'])}\n")
    elif info["queued"]:
        why = f" ({info['stopped']})" if info["stopped"] else ""
        sys.stderr.write(f"runner: not running{why}; {info['queued']} queued; resume with: lab run\n")
    return 0


def format_status(rows: list[list[str]]) -> str:
    """The status table: one line a run, columns padded, metrics last."""
    if not rows:
        return ""
    table = [["RUN", "STATE", "STARTED", "DURATION", "EXIT", "METRICS"], *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(fmt.format(*row).rstrip() for row in table) + "\n"


def lanes_text(lanes: dict | None) -> str:
    """`; 3 of 4 GPU slots busy (GPUs 0,1,2), 0 of 1 CPU lane` for the runner's line ('' for one plain lane)."""
    if not lanes or (not lanes["gpus"] and lanes["max_parallel"] == 1):
        return ""
    parts = []
    if lanes["gpus"]:
        which = f" (GPU{'s' if len(lanes['busy_gpus']) != 1 else ''} {','.join(lanes['busy_gpus'])})" if lanes["busy_gpus"] else ""
        parts.append(f"{lanes['gpu_slots_busy']} of {lanes['gpu_slots']} GPU slots busy{which}")
    parts.append(f"{lanes['cpu_busy']} of {lanes['max_parallel']} CPU lane{'s' if lanes['max_parallel'] != 1 else ''} busy")
    return "; " + ", ".join(parts) + (f"; {lanes['waiting']}" if lanes.get("waiting") else "")


def _parse_search(args: list[str]) -> dict | None:
    """The options of `lab [--root DIR] [--debug] search ...`, or None to let click handle the command line."""
    out = {"root": None, "debug": False, "words": [], "type": None, "exp": None, "tag": None, "limit": 20, "as_json": False,
           "mode": None}
    i = _parse_global(args, "search", out)
    if i is None:
        return None
    rest = False
    while i < len(args):
        a = args[i]
        if rest or not a.startswith("-") or a == "-":
            out["words"].append(a)
        elif a == "--":
            rest = True
        elif a == "--json":
            out["as_json"] = True
        elif a in _VALUE_OPTIONS and i + 1 < len(args):
            out[_VALUE_OPTIONS[a]] = args[i + 1]
            i += 1
        elif a.split("=", 1)[0] in _VALUE_OPTIONS and "=" in a:
            name, value = a.split("=", 1)
            out[_VALUE_OPTIONS[name]] = value
        else:
            return None  # --help, a typo: click explains
        i += 1
    from lab.search.searcher import MAX_LIMIT, MODES, TYPES  # here: `lab status` and `lab --help` need none of it

    if out["type"] is not None and out["type"] not in TYPES:
        return None
    if out["mode"] is not None and out["mode"] not in MODES:
        return None
    try:
        out["limit"] = int(out["limit"])
    except ValueError:
        return None
    if not 1 <= out["limit"] <= MAX_LIMIT:
        return None  # click says what the range is
    return out


def run_search(root, words, type=None, exp=None, tag=None, limit=20, as_json=False, color=None, mode=None) -> int:
    """Search the lab at `root` (lab.search.searcher.search) and print the results (stdout) and diagnostics
    (stderr); return the exit status.

    `mode`: "keyword", "semantic" or "hybrid" (None: hybrid where semantic search can run, else keyword).
    """
    from lab.search.searcher import search

    query_text = " ".join(words)
    if color is None:
        color = not as_json and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    marks = ("\x1b[1;33m", "\x1b[0m") if color else ("**", "**")
    tty = sys.stderr.isatty()
    found = search(root, query_text, type=type, exp=exp, tag=tag, limit=limit, mode=mode, marks=marks, say=_say,
                   download_progress=download_progress if tty else None, index_progress=index_progress if tty else None)
    results = found.results
    for message in found.warnings:
        sys.stderr.write(f"lab: warning: {message}\n")
    if found.scanned > SLOW_SCAN and sys.stderr.isatty():
        sys.stderr.write(f"lab: checking the lab's files for changes took {found.scanned * 1000:.0f} ms; "
                         "'lab watch --detach' keeps the index fresh so searches skip that\n")
    if as_json:
        import json

        sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_results(results, color))
    if not results:
        filters = " ".join(f"--{k} {v}" for k, v in (("type", type), ("exp", exp), ("tag", tag)) if v)
        if found.nothing_to_search:
            sys.stderr.write("nothing to search for: give some words, e.g. lab search \"learning rate warmup\"\n")
        else:
            sys.stderr.write(f"no results for {query_text!r}{' with ' + filters if filters else ''}\n")
    return 0


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


def index_progress(done: int, total: int) -> None:
    """Files taken into the index before a search can answer, on a terminal, when they are many (a new clone,
    a deleted `.lab/`, a pull of many files): one line on stderr, redrawn in place."""
    if total >= INDEX_PROGRESS_FROM:
        sys.stderr.write(f"\rindexing: {done}/{total} files" + ("\n" if done >= total else ""))
        sys.stderr.flush()


INDEX_PROGRESS_FROM = 200  # files: fewer are indexed in well under a second


def download_progress(done: int, total: int) -> None:
    """The model's download on a terminal: one line on stderr, redrawn in place."""
    end = "\n" if total and done >= total else ""
    sys.stderr.write(f"\rdownloading the search model: {done / 1e6:.0f} of {total / 1e6:.0f} MB{end}")
    sys.stderr.flush()


def format_results(results: list[dict], color: bool = False) -> str:
    """Results as text: `[type id] title › section`, then where it is, then the snippet."""
    bold, reset = ("\x1b[1m", "\x1b[0m") if color else ("", "")
    lines = []
    for r in results:
        head = f"{bold}[{r['type']} {r['id']}] {r['title']}{reset}"
        if r.get("section"):
            head += f" › {r['section']}"
        lines.append(head)
        where = r["path"]
        if r.get("page") is not None:  # a passage of the paper's PDF: `papers/2301.12345.md p. 5 §4.2`
            where += f" p. {r['page']}"
            if r.get("section"):
                import re

                number = re.match(r"(\d+(?:\.\d+)*|[IVX]+|[A-H])\.?\s", r["section"])
                where += f" §{number.group(1) if number else r['section']}"
        lines.append(f"    {where}")
        if r["snippet"]:
            lines.append(f"    {r['snippet']}")
        lines.append("")
    return "\n".join(lines)
