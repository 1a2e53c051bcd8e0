"""Starting a runner: `lab run` queues its jobs, then `ensure_runner` starts a runner unless one holds the lock.

The runner is a new session (no terminal, so closing the shell does not end it, as with `nohup`) whose stdin is
/dev/null and whose output goes to `.lab/runner.log`. A runner that finds the queue empty releases the lock, then
looks once more: a job queued while it was leaving saw the lock held, so this last look is what picks it up (and
a job queued after the release starts its own runner).
"""

from __future__ import annotations

import sys

from lab.core import process
from lab.runs.local import diary
from lab.runs.local.lock import WAIT_FOR_LOCK_S, RunnerLock
from lab.runs.local.queue import Queue
from lab.runs.local.recovery import recover, tell

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace


def ensure_runner(workspace: Workspace, env: dict | None = None) -> int | None:
    """Start a runner for the lab unless one is alive; return the new runner's pid (None when one was alive).

    Recovers a crashed runner's job first (under the lock), so the new runner starts from a clean queue.
    """
    state_dir = workspace.state_dir
    lock = RunnerLock(state_dir)
    if not lock.acquire(WAIT_FOR_LOCK_S):
        return None  # a live runner holds the lock; it picks up what was queued (see the module docstring)
    try:
        queue = Queue(state_dir)
        try:
            settled = recover(workspace, queue)
        finally:
            queue.close()
    finally:
        lock.release()
    tell(workspace, settled)
    return spawn(workspace, env)


def spawn(workspace: Workspace, env: dict | None = None) -> int:
    """Start `python -m lab.runs.local.runner` detached from the terminal: new session, no stdin, output to the
    runner's diary."""
    state_dir = workspace.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    log = diary.rotate(state_dir)
    proc = process.spawn_detached([sys.executable, "-m", "lab.runs.local.runner", "--root", str(workspace.root)], log,
                                  cwd=workspace.root, env=env)
    return proc.pid
