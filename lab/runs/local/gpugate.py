"""The local runner's side of sharing a GPU machine (`lab.runs.gpushare`): each round, what others hold; for each
job it starts on GPUs, the machine-wide lease its supervisor holds for the job's life; and why GPU jobs wait, in
`.lab/gpuwait.json` for `lab status`.

A runner that hands out no GPU, or GPUs it got from `LAB_GPUS`, or runs with `gpu_check: false`, pays nothing: no
probe, no lease, no file.
"""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

from lab.core.fsutil import atomic_write_json
from lab.errors import BadInput
from lab.runs import gpushare

WAIT_NAME = "gpuwait.json"
TAKEN = object()
LEASE_POLL_S = 0.1  # lease(): another lab took a GPU since this round's look


class GpuGate:
    def __init__(self, workspace, lanes, log):
        self.workspace = workspace
        self.log = log
        self.sharing = None
        self._said: str | None = None
        self._checked = 0.0
        self._wait: dict | None = None
        try:
            check = gpushare.check_options(workspace.config, str(Path(workspace.root) / "lab.yaml"))
        except BadInput as e:  # lab.yaml changed since lab run checked it
            log(f"{e}; checking GPUs with the defaults")
            check = gpushare.Check()
        if gpushare.active(lanes, check):
            self.sharing = gpushare.Sharing(workspace, lanes, check)

    @property
    def active(self) -> bool:
        return self.sharing is not None

    @property
    def holding_back(self) -> bool:
        """Whether queued jobs wait for GPUs that others hold (the runner stays and looks again)."""
        return bool(self._wait and self._wait["jobs"])

    def changed(self) -> bool:
        """While jobs wait for GPUs others hold: whether another lab's job let go of one (or took one) since the
        last look, checked at most every LEASE_POLL_S; the runner then looks again at once, not at its next rescan."""
        if not self.holding_back:
            return False
        now = time.monotonic()
        if now - self._checked < LEASE_POLL_S:
            return False
        self._checked = now
        return self.sharing.leases_changed()

    def outside(self, running: list[dict]) -> list:
        """What others hold on this runner's GPUs now (for `gpus.plan`); logs one line when the machine cannot be
        asked or a lease file cannot be used, once until it changes."""
        if self.sharing is None:
            return []
        out = self.sharing.look(running)
        self._say(out.error)
        return out.as_held()

    def lease(self, gpu_ids: tuple[str, ...], share: Fraction):
        """The lease for a job about to start on `gpu_ids` (None when it uses no GPU or lab checks none); TAKEN
        when another lab's job or an unusable lease file is in the way."""
        if self.sharing is None or not gpu_ids:
            return None
        lease = self.sharing.lease(gpu_ids, share)
        if lease is None:
            self._say(self.sharing.last.error)
            return TAKEN
        return lease

    def started(self, lease, job: dict, supervisor: int, share: Fraction) -> None:
        """The job's supervisor holds the lease now: say who holds it, and let go of the runner's copy."""
        if lease is None or lease is TAKEN:
            return
        lease.write_info(self.sharing.info(job, supervisor, share, lease.gpus))
        lease.close()

    def waiting(self, plan, started: set, looked: bool = True) -> None:
        """Record which queued jobs wait for a GPU and why (only while something outside this lab is in the way;
        `looked`: whether this round asked the machine, else the runner's own jobs fill its GPUs)."""
        if self.sharing is None:
            return
        reason = self.sharing.last.reason() if looked else None
        ids = sorted(job_id for job_id, need in plan.needs.items() if need.gpus and job_id not in started) if reason else []
        self._write_wait(reason if ids else None, ids)

    def _say(self, error: str | None) -> None:
        if error and error != self._said:
            self.log(f"GPUs not handed out: {error}")
        elif not error and self._said:
            self.log("GPUs can be checked again")
        self._said = error

    def _write_wait(self, reason: str | None, ids: list) -> None:
        data = {"pid": os.getpid(), "reason": reason, "jobs": ids}
        if data == self._wait:
            return
        self._wait = data
        try:
            atomic_write_json(self.workspace.state_dir / WAIT_NAME, data, fsync=False)
        except OSError:
            pass


def read_wait(state_dir: Path, runner: int | None) -> dict:
    """What the live runner `runner` last said about jobs waiting for a GPU: {"reason", "jobs"} ({} when nothing)."""
    if not runner:
        return {}
    try:
        data = json.loads((Path(state_dir) / WAIT_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("pid") != runner or not data.get("reason"):
        return {}
    return {"reason": str(data["reason"]), "jobs": [j for j in data.get("jobs") or () if isinstance(j, int)]}
