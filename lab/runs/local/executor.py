"""The local executor: jobs in the lab's queue (`.lab/queue.db`), run by the background runner (one at a time, or
on lanes)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.core import process
from lab.runs import record as records
from lab.runs.executor import ActiveRun, CancelResult, Executor, Plan, StopResult, SubmitEntry, View, decide, entry
from lab.runs.local.queue import Queue
from lab.runs.local.jobfiles import identity, request_stop
from lab.runs.local.lock import runner_alive, runner_pid
from lab.runs.local.recovery import job_setting, recover_if_needed
from lab.runs.local.spawn import ensure_runner
from lab.runs.state import State

if TYPE_CHECKING:
    from lab.core.settings import Setting
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow
    from lab.runs.record import Record


def changed_since_queued(job: QueueRow, plan) -> str | None:
    """Why `lab run` leaves a queued job as it is although the setting's file or the report's command changed since
    it was queued (the job runs what was queued), and how to queue the new version instead; None when unchanged."""
    if job["state"] != State.QUEUED:
        return None
    what = [w for w, same in (("settings", job.get("settings_hash") == plan.hash),
                              ("command", job.get("command") in (None, plan.template))) if not same]
    if not what:
        return None
    sid = plan.setting.id
    return (f"its {' and '.join(what)} changed since it was queued; the job runs them as queued. "
            f"To run the new version: lab cancel {sid} && lab run {sid}")


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self._checks: dict[str, tuple[float, int]] = {}  # lab root -> (last liveness check, misses) for wait

    def submit(self, workspace: Workspace, plans: Sequence[Plan], *, rerun: bool = False, stop_on_failure: bool = False,
               env: dict[str, str] | None = None, parallel: bool = False) -> list[SubmitEntry]:
        recover_if_needed(workspace)
        queue = Queue(workspace.state_dir)
        batch = uuid.uuid4().hex[:12]
        results = []
        try:
            with queue.transaction():
                for plan in plans:
                    results.append(self._enqueue(workspace, queue, plan, rerun, stop_on_failure, env, batch))
                queue.set_flag("stop", None)  # `lab run` means: run (it lifts `lab stop` and --stop-on-failure)
        finally:
            queue.close()
        ensure_runner(workspace, env)
        return results

    def _enqueue(self, workspace: Workspace, queue: Queue, plan: Plan, rerun: bool, stop_on_failure: bool,
                 env: dict[str, str] | None, batch: str) -> SubmitEntry:
        setting = plan.setting
        active = queue.active(setting.experiment.name, setting.name)
        if active is not None:
            return entry(setting, f"already {active['state']}", "local", job_id=active["id"], reason=changed_since_queued(active, plan))
        action, why, busy = decide(workspace, plan, rerun, "local")
        if busy is not None:  # queued or running on another executor
            return entry(setting, action, busy.get("executor") or "local", reason=why, slurm_job_id=busy.get("slurm_job_id"))
        if action != "run":
            return entry(setting, action, "local", reason=why)
        job_id = queue.insert(setting.experiment.name, setting.name, plan.resolved, plan.hash, env,
                              executor="local", stop_on_failure=stop_on_failure, batch=batch, command=plan.template)
        records.write_record(setting, records.queued(setting, executor="local", resolved=plan.resolved, hash_=plan.hash,
                                                     template=plan.template, argv=plan.argv,
                                                     extra={"job_id": job_id, "fixed_when_queued": records.FIXED_WHEN_QUEUED}))
        return entry(setting, State.QUEUED, "local", job_id=job_id)

    def active(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[ActiveRun]:
        queue = Queue.open_existing(workspace.state_dir)
        if queue is None:
            return []
        try:
            jobs = queue.jobs((State.QUEUED, State.RUNNING), executor="local")
        finally:
            queue.close()
        if settings is not None:
            wanted = {(s.experiment.name, s.name) for s in settings}
            jobs = [j for j in jobs if (j["experiment"], j["setting"]) in wanted]
        return [{"experiment": j["experiment"], "setting": j["setting"], "state": j["state"], "executor": "local",
                 "job_id": j["id"], "why": f"already {j['state']} by the local runner"} for j in jobs]

    def reconcile(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[Record]:
        """Crash recovery (when no runner lives); the records of the runs it settled."""
        settled = []
        for run_id in recover_if_needed(workspace):
            experiment, _, name = run_id.partition("/")
            settled.append(records.read_record(records.setting_of(workspace, experiment, name), strict=False)
                           or records.as_record({"experiment": experiment, "setting": name}))
        return settled

    def stop(self, workspace: Workspace, now: bool = False, grace: float = 10.0) -> StopResult:
        queue = Queue.open_existing(workspace.state_dir)
        if queue is None:
            return {"runner": None, "running": [], "cancelled": [], "ended": {}, "queued": 0}
        try:
            with queue.transaction():
                queue.set_flag("stop", f"lab stop at {records.now_iso()}")
            # Read after the flag is set: a job is claimed only while the flag is not set (Queue.claim), so these
            # are all the jobs that started or will, and every queued one stays queued.
            running = queue.jobs((State.RUNNING,), executor="local")
            cancelled: list[str] = []
            ended: dict[str, str] = {}
            if now:
                with queue.transaction():
                    for job in running:
                        request_stop(workspace.state_dir, job, grace)
                        queue.request_cancel(job["id"], grace)
                # Each job's supervisor ends it (SIGKILL after `grace`) and records it cancelled: wait for all of
                # them at once (every lane), signalling each process group as soon as it is known (or recovering a
                # job if nobody is left to do it).
                signalled: set[int] = set()
                waiting = {job["id"] for job in running}
                deadline = time.monotonic() + grace + 30
                while waiting and time.monotonic() < deadline:
                    for job_id in list(waiting):
                        row = queue.job(job_id)
                        if row is None or row["state"] != State.RUNNING:
                            waiting.discard(job_id)
                            continue
                        ident = identity(workspace.state_dir, row)
                        if job_id not in signalled and ident and process.is_our_group(ident["pgid"], ident.get("proc_start"), ident.get("boot_id")):
                            process.signal_group(ident["pgid"], signal.SIGTERM)
                            signalled.add(job_id)
                    if waiting:
                        recover_if_needed(workspace)
                        time.sleep(0.02)
                # A program that ended on its own while the stop reached it is said as it ended, not as cancelled.
                for job in running:
                    row = queue.job(job["id"])
                    if row is not None and row["state"] == "done" and row["result"] not in (None, State.CANCELLED):
                        ended[job_setting(workspace, job).id] = row["result"]
                    else:
                        cancelled.append(job_setting(workspace, job).id)
            queued = len(queue.jobs((State.QUEUED,), executor="local"))
            return {"runner": runner_pid(workspace.state_dir), "running": [job_setting(workspace, j).id for j in running],
                    "cancelled": cancelled, "ended": ended, "queued": queued}
        finally:
            queue.close()

    def cancel(self, workspace: Workspace, targets: list[str]) -> CancelResult:
        from lab.core.settings import parse_target

        wanted = [parse_target(target) for target in targets]

        def matches(job: QueueRow) -> bool:
            return any(job["experiment"] == e and (s is None or job["setting"] == s) for e, s in wanted)

        queue = Queue.open_existing(workspace.state_dir)
        if queue is None:
            return {"cancelled": [], "running": []}
        try:
            jobs = [j for j in queue.jobs((State.QUEUED, State.RUNNING), executor="local") if matches(j)]
            result: CancelResult = {"cancelled": [], "running": [f"{j['experiment']}/{j['setting']}" for j in jobs if j["state"] == State.RUNNING]}
            with queue.transaction():
                for job in jobs:
                    if job["state"] == State.QUEUED and queue.cancel_queued(job["id"]):
                        setting = job_setting(workspace, job)
                        rec = records.read_record(setting, strict=False)
                        if not rec or rec.get("state") != State.QUEUED:
                            import json

                            rec = records.queued(setting, executor="local", resolved=json.loads(job["settings"]),
                                                 hash_=job["settings_hash"], template=None, argv=None,
                                                 extra={"job_id": job["id"]}, queued_at=job["queued_at"], previous=rec)
                        records.write_record(setting, records.cancelled_before_start(rec, "cancelled by lab cancel before it started"))
                        result["cancelled"].append(setting.id)
        finally:
            queue.close()
        return result

    def wait(self, workspace: Workspace, entries: Sequence[SubmitEntry]) -> list[View]:
        queue = Queue(workspace.state_dir)
        try:
            views = []
            stopped = queue.get_flag("stop")
            for e in entries:
                job_id = e.get("job_id")
                job = queue.job(job_id) if job_id is not None else None
                views.append(self._view(workspace, e, job))
            if any(v["state"] in records.ACTIVE for v in views):
                alive = self._runner_ok(workspace, stopped)
                if not alive and stopped:
                    for v in views:
                        if v["state"] == State.QUEUED:
                            v["held"] = True
            return views
        finally:
            queue.close()

    def _runner_ok(self, workspace: Workspace, stopped: str | None) -> bool:
        """Whether someone runs the queue; a runner that died is recovered and started again (unless stopped)."""
        key = str(workspace.root)
        last, misses = self._checks.get(key, (time.monotonic(), 0))
        if time.monotonic() - last < 1.0:
            self._checks.setdefault(key, (last, misses))
            return True
        if runner_alive(workspace.state_dir):
            self._checks[key] = (time.monotonic(), 0)
            return True
        if stopped:
            recover_if_needed(workspace)
            self._checks[key] = (time.monotonic(), 0)
            return False
        misses += 1  # twice in a row, so that a runner still starting up is not taken for a dead one
        if misses >= 2:
            ensure_runner(workspace)
            misses = 0
        self._checks[key] = (time.monotonic(), misses)
        return True

    def _view(self, workspace: Workspace, e: SubmitEntry, job: QueueRow | None) -> View:
        view: View = {"id": e["id"], "experiment": e["experiment"], "setting": e["setting"], "executor": "local",
                      "job_id": e.get("job_id"), "state": State.CANCELLED, "exit_code": None, "signal": None,
                      "reason": None, "progress": None, "started_at": None, "held": False}
        if job is None:
            return view
        if job["state"] in records.ACTIVE:
            view["state"], view["started_at"] = job["state"], job["started_at"]
            if job["state"] == State.RUNNING:
                view["progress"] = records.latest_metrics(records.metrics_path(job_setting(workspace, job)))
            return view
        view["state"] = job["result"] or job["state"]
        view["exit_code"] = job["exit_code"]
        rec = records.read_record(job_setting(workspace, job), strict=False)
        if rec is not None and rec.get("job_id") == job["id"]:
            view["exit_code"], view["signal"], view["reason"] = rec.get("exit_code"), rec.get("signal"), rec.get("reason")
        return view


EXECUTOR: Executor = LocalExecutor()
