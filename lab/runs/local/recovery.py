"""Crash recovery: settle the jobs marked running whose supervisor is gone.

`recover` runs under the runner lock: by the runner at start-up and after each of its supervisors exits (that is
how a finished job is marked done), and by `lab run` / `lab status` / `lab stop` when no runner holds the lock
(`recover_if_needed`). For each job marked running:
- its supervisor still lives: it is left alone and the new runner *reattaches* (waits for it to end before
  starting the next job); `lab status` shows it running;
- its supervisor is gone and its record or exit file says how it ended: that end is recorded, the job is done;
- its supervisor was killed while the program ran (only a kill of the supervisor itself does this): what is left
  of the process group is stopped (SIGTERM, SIGKILL after a grace period), the record becomes `interrupted`
  (kept in the history) and the job is queued again at its place; also when it was killed after starting the
  program but before writing the `running` record (the group still had the program in it);
- the program never started: the job is queued again at its place.
"""

from __future__ import annotations

from collections.abc import Collection

from lab.core import process
from lab.errors import BadInput
from lab.runs import notify
from lab.runs import record as records
from lab.runs.local import diary
from lab.runs.local.jobfiles import forget, identity, identity_file, read_exit, remove_all_but, supervisor_alive
from lab.runs.local.lock import RunnerLock
from lab.runs.local.queue import Queue
from lab.runs.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow


def job_setting(workspace: Workspace, job: QueueRow):
    """The Setting of a queued job, even when its file was renamed since (the resolved settings were kept)."""
    return records.setting_of(workspace, job["experiment"], job["setting"])


def recover(workspace: Workspace, queue: Queue, grace: float = 5.0, busy: Collection[int] = ()) -> list[str]:
    """Settle the jobs marked running whose supervisor is gone (call with the runner lock held); return their ids.

    Jobs whose supervisor still runs are left to it (the runner reattaches to them), and so are `busy` ones (the
    live runner's own supervisors, which may not have said who they are yet). A row is changed only if it is
    still as it was read."""
    settled = []
    state_dir = workspace.state_dir
    for job in queue.jobs((State.RUNNING,), executor="local"):
        if job["id"] in busy:
            continue
        ident = identity(state_dir, job)
        if supervisor_alive(ident):
            continue
        setting = job_setting(workspace, job)
        rec = records.read_record(setting, strict=False)
        ours = rec is not None and rec.get("job_id") == job["id"]
        mine = ours and ident is not None and rec.get("attempt") == ident.get("attempt") and rec.get("started_at")
        if mine and rec.get("state") in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.INTERRUPTED) or (
                ours and ident is not None and rec.get("state") == State.CANCELLED and not rec.get("started_at")):
            # The supervisor recorded the end (or the cancel before the start) and exited: mark the job so.
            # (interrupted: the runner was stopped, SIGTERM, while it ran)
            if not settle_row(queue, job, rec["state"], rec.get("exit_code"), setting.id):
                continue
            forget(state_dir, job)
            settled.append(setting.id)
            continue
        cancelled = bool(job["cancel_requested"])
        if ident is None:
            # No supervisor ever said it runs this start: the program never started.
            if not settle_row(queue, job, State.CANCELLED if cancelled else State.INTERRUPTED, None, setting.id):
                continue
            forget(state_dir, job)
            diary.write(state_dir, f"{setting.id} had not started when its runner died; " + ("cancelled" if cancelled else "queued again"))
            settled.append(setting.id)
            continue
        began = False  # whether the program had started (a member of the group besides its dead supervisor)
        if process.is_our_group(ident["pgid"], ident.get("proc_start"), ident.get("boot_id")):
            began = not process.group_gone(ident["pgid"])
            process.terminate_group(ident["pgid"], grace)  # what is left of it, unsupervised
        ended = read_exit(state_dir, job)
        if mine and rec.get("state") == State.RUNNING and ended is not None:  # it ended; its record was not written
            rec = records.ended(setting, rec, ended["returncode"], duration_s=ended["duration_s"],
                                state=State.CANCELLED if cancelled and ended["returncode"] != 0 else None)
            records.write_record(setting, rec)
            if not settle_row(queue, job, rec["state"], rec.get("exit_code"), setting.id):
                continue
            forget(state_dir, job)
            diary.write(state_dir, f"{rec['state']} {setting.id} (exit {rec.get('exit_code')}; recorded after its supervisor died)")
            settled.append(setting.id)
            continue
        state = State.CANCELLED if cancelled else State.INTERRUPTED
        if mine and rec.get("state") == State.RUNNING:
            reason = "cancelled by lab stop --now" if cancelled else "its supervisor died while the job ran; it was stopped and queued again"
            records.write_record(setting, records.settled(setting, rec, state, reason))
        elif ours and rec.get("state") == State.QUEUED and began:
            # Its supervisor started the program and died before it wrote the `running` record (the record is
            # written once the program runs): the attempt is recorded, so the next one's history shows it.
            begun = {**rec, "attempt": ident.get("attempt") or rec.get("attempt"),
                     "started_at": _started_at(identity_file(state_dir, job["id"]))}
            reason = "cancelled by lab stop --now" if cancelled else "its supervisor died as the program started; it was stopped and queued again"
            records.write_record(setting, records.settled(setting, begun, state, reason))
        if not settle_row(queue, job, state, None, setting.id):
            continue
        forget(state_dir, job)
        diary.write(state_dir, f"{setting.id}: its supervisor died; what was left of it was stopped and "
                               + ("recorded cancelled" if cancelled else "queued again"))
        settled.append(setting.id)
    remove_all_but(state_dir, {str(j["id"]) for j in queue.jobs((State.RUNNING,), executor="local")})
    return settled


def _started_at(ident_path) -> str:
    """When a supervisor that died before its `running` record started the program: when it wrote its identity
    file, just before."""
    from lab.core.clock import iso, now_iso

    try:
        return iso(ident_path.stat().st_mtime)
    except OSError:
        return now_iso()


def settle_row(queue: Queue, job: QueueRow, state: str, exit_code: int | None, what: str) -> bool:
    """Mark a running job's queue row as its end says: `interrupted` queues it again at its place, any other state
    finishes it (a failure stops the queue under --stop-on-failure). One transaction, and only if the row is still
    as it was read: False when someone else settled it first."""
    with queue.transaction():
        if not queue.unchanged(job):
            return False
        if state == State.INTERRUPTED:
            queue.requeue(job["id"])
        else:
            queue.finish(job["id"], state, exit_code)
            if state == State.FAILED and job["stop_on_failure"]:
                queue.set_flag("stop", f"stopped after {what} failed (--stop-on-failure)")
    return True


def recover_if_needed(workspace: Workspace) -> list[str]:
    """Crash recovery for `lab run` and `lab status`: only when jobs are marked running and no runner lives."""
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        jobs = queue.jobs((State.RUNNING,), executor="local")
        if not jobs or all(supervisor_alive(identity(workspace.state_dir, j)) for j in jobs):
            return []
        lock = RunnerLock(workspace.state_dir)
        if not lock.try_acquire():
            return []  # a live runner (which recovers at start-up) or another command doing it now
        try:
            settled = recover(workspace, queue)
        finally:
            lock.release()
    finally:
        queue.close()
    tell(workspace, settled)
    return settled


def tell(workspace: Workspace, settled: list[str]) -> None:
    """Send word of the jobs that recovery found failed or interrupted (from a short-lived command: detached)."""
    if not settled:
        return
    try:
        config = notify.config_for(workspace)
    except BadInput:
        return
    if config is None:
        return
    for setting_id in settled:
        exp, _, name = setting_id.partition("/")
        rec = records.read_record(records.setting_of(workspace, exp, name), strict=False) or {}
        if rec.get("state") in (State.INTERRUPTED, State.FAILED):
            notify.send_detached(workspace, notify.job_event(rec["state"], rec, workspace.root), config=config)
