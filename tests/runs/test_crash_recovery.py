"""Exactly once under kill -9: the runner (or a job's supervisor) killed at each named point of starting and
finishing a job, and random kill -9 of the runner over a queue of short jobs: each setting still runs exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, lab_processes, wait_for, write_settings

# Every test here kills the runner or a supervisor: the runner must be orphaned, as a real `lab run` leaves it.
pytestmark = pytest.mark.real_process

# Each execution appends its setting to a side file, then exits with the status its settings ask for.
PROGRAM = r"""
import json, os, sys, time
s = json.load(open(sys.argv[1]))
with open(os.path.join(os.environ["LAB_ROOT"], "executions.txt"), "a") as f:
    f.write(os.environ["LAB_SETTING"] + "\n")
time.sleep(s.get("sleep", 0))
print("error: something went wrong" if s.get("exit") else "done", flush=True)
sys.exit(s.get("exit", 0))
"""


def make_lab(root: Path, settings: dict) -> None:
    (root / "prog.py").write_text(PROGRAM)
    write_settings(root, "e", {f"{k}.json": v for k, v in settings.items()}, command="{python} prog.py {settings}")


def executions(root: Path) -> list[str]:
    path = root / "executions.txt"
    return path.read_text().split() if path.exists() else []


def records(root: Path) -> dict:
    runs = root / "experiments" / "e" / "runs"
    return {p.name[:-5]: json.loads(p.read_text()) for p in runs.glob("*.json") if not p.name.endswith(".settings.json")}


def queue_rows(root: Path) -> list[tuple]:
    import sqlite3

    db = sqlite3.connect(root / ".lab" / "queue.db")
    try:
        return db.execute("SELECT setting, state, result, exit_code FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


def settle(root: Path, names) -> None:
    """Recover and restart until every job is done (what `lab run` with no target does)."""
    from lab.core.workspace import Workspace
    from lab.runs.local.spawn import ensure_runner

    ws = Workspace(root)

    def done():
        if any(state in ("queued", "running") for _, state, _, _ in queue_rows(root)):
            if not _runner_alive(root):
                ensure_runner(ws)
            return False
        return True

    wait_for(done, timeout=120, what="every job done")


def _runner_alive(root: Path) -> bool:
    from lab.runs.local.lock import runner_alive

    return runner_alive(root / ".lab")


@pytest.fixture
def cleanup(lab_root):
    yield
    kill_lab_processes(lab_root)


POINTS = ["runner-claimed", "runner-forked", "runner-reaped",
          "runner@supervisor-identity", "runner@supervisor-spawned", "runner@supervisor-started",
          "runner@supervisor-exited", "runner@supervisor-recorded", "runner@supervisor-done",
          "supervisor-identity", "supervisor-spawned", "supervisor-started", "supervisor-exited",
          "supervisor-recorded", "supervisor-done"]
# A kill of the supervisor while its program runs: the program is stopped by recovery and run again.
WHILE_IT_RUNS = ("supervisor-spawned", "supervisor-started")


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_point_of_a_job_leaves_each_setting_done_once(lab_root, cleanup, point):
    # Between the program's start and its `running` record (supervisor-spawned), the program must still run
    # when recovery looks: long enough for a loaded machine.
    make_lab(lab_root, {"a": {"sleep": 3 if point == "supervisor-spawned" else 0.2, "exit": 3}, "b": {}})
    LabCLI(lab_root)("run", "e", check=0, env={"LAB_TEST_KILL": point})
    wait_for(lambda: (lab_root / ".lab" / "test-kill-fired").exists(), what=f"the kill at {point}")
    settle(lab_root, ["a", "b"])
    recs = records(lab_root)
    assert recs["a"]["state"] == "failed" and recs["a"]["exit_code"] == 3  # its real exit status
    assert recs["a"]["reason"] == "exit code 3: error: something went wrong"
    assert recs["b"]["state"] == "succeeded" and recs["b"]["exit_code"] == 0
    assert [r[1:] for r in queue_rows(lab_root)] == [("done", "failed", 3), ("done", "succeeded", 0)]
    runs = executions(lab_root)
    if point in WHILE_IT_RUNS:
        # Only a kill of the supervisor itself while the program runs loses the program's exit status: what is
        # left of it is stopped, recorded interrupted (even before its `running` record was written), and run
        # again (the first copy may not have got far).
        assert sorted(set(runs)) == ["a", "b"] and runs.count("b") == 1
        assert recs["a"]["attempt"] == 2 and [h["state"] for h in recs["a"]["history"]] == ["interrupted"]
    else:
        if sorted(runs) != ["a", "b"]:
            Path("/tmp/fail.log").write_text((lab_root / ".lab" / "runner.log").read_text() + json.dumps(recs["a"], indent=1))
        assert sorted(runs) == ["a", "b"], runs
        assert recs["a"]["attempt"] == 1 and recs["a"]["history"] == []
    wait_for(lambda: not lab_processes(lab_root), what="no process left")
    assert not list((lab_root / ".lab" / "jobs").glob("*.exit"))


@pytest.mark.slow  # a storm of kill -9
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kill9_of_the_runner_runs_every_setting_exactly_once(lab_root, cleanup, seed):
    rng = random.Random(seed)
    names = [f"s{i}" for i in range(24)]
    make_lab(lab_root, {n: {"sleep": rng.choice([0.05, 0.1, 0.2, 0.3])} for n in names})
    from lab.core.workspace import Workspace
    from lab.runs.local.lock import runner_pid
    from lab.runs.local.spawn import ensure_runner

    LabCLI(lab_root)("run", "e", check=0)
    ws = Workspace(lab_root)
    kills = 0
    deadline = time.monotonic() + 60
    while kills < 20 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0, 0.15))
        pid = runner_pid(ws.state_dir)
        if pid is None:
            if any(state == "queued" for _, state, _, _ in queue_rows(lab_root)):
                ensure_runner(ws)
                continue
            break
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        ensure_runner(ws)
    settle(lab_root, names)
    assert kills >= 20
    assert sorted(executions(lab_root)) == sorted(names)  # none executed twice, none lost
    recs = records(lab_root)
    assert {n: recs[n]["state"] for n in names} == {n: "succeeded" for n in names}
    assert all(recs[n]["history"] == [] and recs[n]["attempt"] == 1 for n in names)
    wait_for(lambda: not lab_processes(lab_root), what="no process left")
