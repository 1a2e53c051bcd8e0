"""What `lab status` says of the local runner and its queue: the runner's pid, how many jobs wait and run, why the
queue is stopped, and the live runner's lanes (`.lab/lanes.json`, written by the runner when it starts) with what
its running jobs hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lab.core import layout
from lab.core.fsutil import atomic_write_json
from lab.runs.local.lock import LOCK_NAME, runner_pid
from lab.runs.local.queue import Queue
from lab.runs.state import State

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow

LANES_NAME = layout.LANES
QUEUE_NAME = layout.QUEUE_DB


def write_lanes(state_dir: Path, pid: int, lanes) -> None:
    """The runner's lanes (`lab.runs.gpus.Lanes`), for `lab status`."""
    try:
        atomic_write_json(Path(state_dir) / LANES_NAME, {"pid": pid, **lanes.to_json()}, fsync=False)
    except OSError:
        pass


def active_jobs(workspace: Workspace) -> list[QueueRow]:
    """Queued and running jobs (all executors), without opening the queue when there is none."""
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        return queue.jobs((State.QUEUED, State.RUNNING))
    finally:
        queue.close()


def queue_info(workspace: Workspace) -> dict:
    """The runner and the queue: `{"runner_pid", "queued", "running", "stopped", "lanes"}` (stopped: the reason, or
    None; lanes: the live runner's lanes and how many are busy, or None)."""
    info: dict = {"runner_pid": None, "queued": 0, "running": 0, "stopped": None, "lanes": None}
    state_dir = workspace.state_dir
    if not os.path.exists(state_dir / LOCK_NAME) and not os.path.exists(state_dir / QUEUE_NAME):
        return info  # this lab never ran anything
    info["runner_pid"] = runner_pid(state_dir)
    queue = Queue.open_existing(state_dir)
    if queue is None:
        return info
    try:
        running = []
        for job in queue.jobs((State.QUEUED, State.RUNNING), executor="local"):
            info[job["state"]] += 1
            if job["state"] == State.RUNNING:
                running.append(job)
        info["stopped"] = queue.get_flag("stop")
        if info["runner_pid"]:
            info["lanes"] = lanes_busy(workspace, info["runner_pid"], running)
    finally:
        queue.close()
    return info


def lanes_busy(workspace: Workspace, pid: int, running: list[dict]) -> dict | None:
    """The live runner's lanes (`.lab/lanes.json`, written when it started) and what its running jobs hold."""
    try:
        lanes = json.loads((workspace.state_dir / LANES_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(lanes, dict) or lanes.get("pid") != pid:
        return None
    from lab.runs.gpus import held_from
    from lab.runs.slots import Pool, busy

    pool = Pool(gpus=tuple(lanes.get("gpus") or ()), cpu=int(lanes.get("max_parallel") or 1))
    used = busy(pool, [held_from(job.get("lane")) for job in running])
    per_gpu = int(lanes.get("jobs_per_gpu") or 1)
    return {"gpus": list(pool.gpus), "jobs_per_gpu": per_gpu, "max_parallel": pool.cpu,
            "gpu_slots": len(pool.gpus) * per_gpu, "gpu_slots_busy": round(sum(used["gpus"].values()) * per_gpu),
            "busy_gpus": [g for g, share in used["gpus"].items() if share > 0],
            "cpu_busy": used["cpu_busy"], "waiting": _gpu_wait(workspace, pid)}


def _gpu_wait(workspace, pid: int) -> str | None:
    from lab.runs.local.gpugate import read_wait

    return read_wait(workspace.state_dir, pid).get("reason")
