"""Exactly one runner per lab root: an exclusive `flock` on `.lab/runner.lock`, held for the runner's whole life,
with the holder's pid written in the file.

The kernel drops the lock when the process dies in any way (kill -9, out of memory, reboot), so "the lock is free"
reliably means "no runner". Other lab commands take the same lock for a moment to do crash recovery
(`lab.runs.local.recovery`), so recovery never races a live runner.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from lab.core import layout, process

LOCK_NAME = layout.RUNNER_LOCK
WAIT_FOR_LOCK_S = 30.0  # how long a new runner waits while another lab command holds the lock for a moment


class RunnerLock:
    """The runner lock of a lab root (`.lab/runner.lock`): an exclusive flock, plus the holder's pid."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / LOCK_NAME
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def acquire(self, timeout: float, give_up_if_runner: bool = True) -> bool:
        """Wait up to `timeout` for the lock; give up at once when a live runner holds it."""
        deadline = time.monotonic() + timeout
        while True:
            if self.try_acquire():
                return True
            if give_up_if_runner and runner_pid(self.path.parent) is not None:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def write_pid(self) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self, clear_pid: bool = False) -> None:
        if self.fd is None:
            return
        if clear_pid:
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = None


def runner_pid(state_dir: Path) -> int | None:
    """The pid of the live runner of this lab, or None when no runner holds the lock."""
    path = Path(state_dir) / LOCK_NAME
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    if not process.pid_alive(pid):
        return None
    # The pid file is only trusted while the lock is held (a dead runner's pid may have been recycled).
    probe = RunnerLock(state_dir)
    if probe.try_acquire():
        probe.release()
        return None
    return pid


def runner_alive(state_dir: Path) -> bool:
    probe = RunnerLock(state_dir)
    if probe.try_acquire():
        probe.release()
        return False
    return True
