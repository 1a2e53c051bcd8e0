"""No race between `lab run` and `lab stop`: what stop says is what the runner does, under any timing.

Real parts: the real `lab` command and runner, run and stopped back to back (benchmarks/bench_stop_race.py does
the same 100 times).
"""

from __future__ import annotations

import sys

from helpers import REPO, kill_lab_processes

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_stop_race  # noqa: E402


def test_stop_straight_after_run_says_what_the_runner_does(tmp_path):
    root = bench_stop_race.make_lab(tmp_path)
    try:
        assert bench_stop_race.run_pairs(root, 8) == []
    finally:
        kill_lab_processes(root)
