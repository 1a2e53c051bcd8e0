"""Linux: a job's supervisor is the subreaper of its program, so that no process of the job can outlive it
unnoticed.

Orphaned descendants of the program are re-parented to the supervisor, not to init, so "is anything of the job
left?" is one read of the supervisor's children instead of a scan of /proc. `prctl` is loaded once in the runner
(`load_prctl`): its supervisors inherit it, with no ctypes import per job.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.core import process

PR_SET_CHILD_SUBREAPER = 36
_prctl = None


def load_prctl() -> None:
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False


def become_subreaper() -> None:
    """Make this process the subreaper of its descendants (nothing where prctl is missing)."""
    load_prctl()
    if _prctl:
        _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants_left() -> bool:
    """Whether any process of the job may be left (exited children are reaped here)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False  # no children at all: as a subreaper, no descendants either
        if pid == 0:
            break
    me = os.getpid()
    try:
        return bool(Path(f"/proc/{me}/task/{me}/children").read_text().split())
    except OSError:
        return bool(others())


def others() -> list[int]:
    """The live processes of this process's group but itself."""
    me = os.getpid()
    return [pid for pid in process.live_members(me) if pid != me]


def end_others(grace: float) -> None:
    """SIGTERM what is left of the job's process group (the supervisor excepted), SIGKILL after `grace`."""
    if not descendants_left() or not others():
        return
    process.terminate_group(os.getpid(), grace, members=others)
