"""The tests' in-process `lab` (tests/helpers.py LabCLI) answers as the real command does: the same exit status,
stdout and stderr for the fast path, click's commands, bad input and a command's own environment; and a search
run in the test process never forks it (lab.search.prefork.enabled)."""

from __future__ import annotations

import os

import pytest

from helpers import LabCLI, write_settings

LINES = [
    ("status",),
    ("status", "--json"),
    ("search", "warmup", "--json", "--mode", "keyword"),
    ("search", "--limit", "0", "warmup"),
    ("new", "exp2"),
    ("new", "exp2"),  # again: bad input
    ("run", "nosuch"),
    ("status", "--bogus"),
    ("--help",),
]


def test_in_process_and_real_commands_agree(tmp_path):
    from lab.core.workspace import init

    results = {}
    for kind in ("real", "in-process"):
        root = tmp_path / kind / "lab"  # the same path depth, so that lines naming the root line up
        init(root)
        write_settings(root, "exp1", {"s1.json": {"learning_rate": 0.1}})
        cli = LabCLI(root, real=kind == "real")
        results[kind] = [cli(*line) for line in LINES]
    for line, real, here in zip(LINES, results["real"], results["in-process"]):
        same = (here.returncode, here.stdout.replace("in-process", "real"), here.stderr.replace("in-process", "real"))
        assert same == (real.returncode, real.stdout, real.stderr), line


def test_the_test_process_keeps_its_environment_and_working_directory(lab, tmp_path):
    before = (dict(os.environ), os.getcwd())
    proc = lab("status", env={"LAB_GPUS": "0,1"}, cwd=tmp_path)
    assert proc.returncode == 0
    assert (dict(os.environ), os.getcwd()) == before


def test_an_in_process_search_never_forks_the_test_process(lab, embedded, monkeypatch):
    def no_fork():
        raise AssertionError("the test process was forked")

    monkeypatch.setattr(os, "fork", no_fork)
    results = lab.json("search", "learning rate warmup")
    assert any("semantic" in r["match"] for r in results)  # ranked by meaning in this process instead


@pytest.mark.real_process
def test_a_test_marked_real_process_runs_a_real_process(lab):
    assert lab.is_real and not LabCLI(lab.root, real=False).is_real
