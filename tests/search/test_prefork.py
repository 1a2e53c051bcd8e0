"""A search without `lab watch` forks a helper that embeds the query while the search scans (lab.search.prefork):
the same results as ranking in the search's own process, no NumPy in that process, and no child left behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import SEARCHES, searched

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the helper is forked on Linux only")

IN_PROCESS = """
import json, sys
from lab.search import prefork
prefork.start = lambda root, text: None  # no helper: the search ranks in its own process
from lab.cli.fast import run_search
run_search(sys.argv[1], [sys.argv[2]], as_json=True, **json.loads(sys.argv[3]))
"""

PARENT = """
import json, sys
from lab.search import prefork
started = []
start = prefork.start
prefork.start = lambda root, text: started.append(start(root, text)) or started[-1]
if len(sys.argv) > 4:  # the helper fails to rank: the search ranks itself
    prefork._rank = lambda *args: 1 / 0
from lab.cli.fast import run_search
run_search(sys.argv[1], [sys.argv[2]], as_json=True, **json.loads(sys.argv[3]))
helper = started[0]
sys.stderr.write(json.dumps({"numpy": "numpy" in sys.modules, "reaped": helper.pid == 0 and helper.sock is None,
                             "answered": helper.answered}) + "\\n")
"""


def options(args) -> tuple[str, dict]:
    words, rest = args[0], args[1:]
    names = {"--mode": "mode", "--type": "type", "--exp": "exp"}
    return words, {names[rest[i]]: rest[i + 1] for i in range(0, len(rest), 2)}


def run(script, root, words, extra, *more):
    proc = subprocess.run([sys.executable, "-c", script, str(root), words, json.dumps(extra), *more],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_the_helper_ranks_as_the_search_itself_would(embedded):
    for args in SEARCHES:
        words, extra = options(args)
        alone, _ = run(IN_PROCESS, embedded, words, extra)
        forked, err = run(PARENT, embedded, words, extra)
        assert forked == alone, args
        report = json.loads(err.splitlines()[-1])
        assert report == {"numpy": False, "reaped": True, "answered": True}, report
    assert any("semantic" in r["match"] for r in alone)


def test_a_helper_that_cannot_rank_leaves_the_search_ranking_itself(embedded):
    words, extra = options(SEARCHES[0])
    alone, _ = run(IN_PROCESS, embedded, words, extra)
    forked, err = run(PARENT, embedded, words, extra, "fail")
    assert forked == alone and any("semantic" in r["match"] for r in forked)
    assert json.loads(err.splitlines()[-1])["numpy"] is True  # ranked here after the helper's `none`
    assert "ZeroDivisionError" not in err and "Traceback" not in err  # the helper says nothing


def test_a_search_that_needs_no_ranking_ends_its_helper(embedded):
    # No document of the type asked for: nothing to rank by meaning, so the helper is never asked.
    results, err = run(PARENT, embedded, "learning rate warmup", {"type": "feed"})
    report = json.loads(err.splitlines()[-1])
    assert results == [] and report == {"numpy": False, "reaped": True, "answered": False}, report


def test_the_command_line_search_leaves_no_process_behind(lab, embedded):
    """The whole `lab search` process: its helper imports NumPy (not the search), and nothing outlives it."""
    results, tops = searched(embedded, "learning rate warmup")
    assert any("semantic" in r["match"] for r in results) and "numpy" in tops  # the helper's imports
    left = subprocess.run(["pgrep", "-f", f"--root {embedded} search"], capture_output=True, text=True)
    assert left.stdout == "", left.stdout  # the helper has the search's command line: none is left
