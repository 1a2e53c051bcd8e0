"""A fault hook for the exactly-once tests: `LAB_TEST_KILL=POINT` (or `runner@POINT`) makes the runner or a job's
supervisor kill itself (or the runner) with SIGKILL at one named point of starting or finishing a job, once per
lab. Unset (always, outside tests), each point is one environment lookup."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lab.core import layout

KILL_POINTS = ("runner-claimed", "runner-forked", "supervisor-identity", "supervisor-spawned", "supervisor-started",
               "supervisor-exited", "supervisor-recorded", "supervisor-done", "runner-reaped")
FIRED_NAME = layout.TEST_KILL_FIRED


def kill_point(name: str, state_dir: Path, runner: int | None = None) -> None:
    """SIGKILL at point `name` when LAB_TEST_KILL says so (once per lab)."""
    wanted = os.environ.get("LAB_TEST_KILL")
    if not wanted or wanted.rpartition("@")[2] != name:
        return
    try:
        os.close(os.open(Path(state_dir) / FIRED_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    victim = runner if wanted.startswith("runner@") and runner else os.getpid()
    os.kill(victim, signal.SIGKILL)
    if victim == os.getpid():
        time.sleep(60)
