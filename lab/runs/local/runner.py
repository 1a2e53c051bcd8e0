"""The background runner: one process per lab root takes queued jobs one at a time, or several at once on lanes
(`python -m lab.runs.local.runner`, started by `lab run`).

Its life, one module per step (as pueue's daemon splits its process handler):
- `lock`: exactly one runner per lab root (a flock on `.lab/runner.lock`);
- `spawn`: `lab run` starts a runner unless one lives;
- `jobfiles`: what a job's supervisor and the rest of lab tell each other through `.lab/jobs/`;
- `recovery`: crash recovery, settling the jobs whose supervisor is gone;
- `supervisor`: the per-job supervisor (a fork of the runner) that starts the program and records its end, with
  `subreaper` (no process of a job outlives it) and `faults` (the tests' kill points);
- `diary`: the runner's log, `.lab/runner.log`;
- this module: the loop.

Lanes: the runner reads its lanes when it starts (`lab.runs.gpus.lanes_for`: GPUs to hand out, jobs per GPU, CPU
lanes) and writes them to `.lab/lanes.json` for `lab status` (`lab.runs.local.info`). Each round it asks
`lab.runs.gpus.plan` which queued jobs fit now and on which GPUs (`lab.runs.slots`: queue order, and no job is
delayed by a later one), claims each with what it holds (the row's `lane`: its GPUs, its share, the environment its
supervisor gives the program), forks its supervisor, and then waits for a supervisor to end or the queue to
change. With no GPUs and `max_parallel: 1` (the default) that is one job at a time. Word of failed and interrupted
jobs and of the drained queue goes out through `lab.runs.notify`.

Exactly once, with no unsafe instant. A job starts in four steps:
1. the runner claims it: one queue transaction marks it `running` with a fresh token;
2. the runner forks a per-job supervisor, which makes itself a new session (its pid is the job's process group)
   and writes that identity (token, pid, start time, boot id, attempt) to `.lab/jobs/ID.json`, still holding
   the runner's lock (inherited with the fork) so that no recovery can look in between;
3. only then the supervisor lets the lock go and starts the program in its process group; it writes the
   `running` record;
4. when the program ends, the supervisor writes its exit status to `.lab/jobs/ID.exit` (a file made before the
   program started, so this write needs no new disk space), then the final record, and exits; whoever settles
   the job next (the runner at once, or crash recovery) marks its row done from the record.
At every moment either the program has not started, or a file names the process group that runs it.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time
import uuid

from lab.core import process
from lab.errors import BadInput
from lab.runs import gpus, notify
from lab.runs import record as records
from lab.runs.local import diary, info, subreaper
from lab.runs.local.faults import kill_point
from lab.runs.local.gpugate import TAKEN, GpuGate
from lab.runs.local.jobfiles import identity, supervisor_alive
from lab.runs.local.lock import WAIT_FOR_LOCK_S, RunnerLock
from lab.runs.local.queue import Queue
from lab.runs.local.recovery import job_setting, recover
from lab.runs.local.supervisor import DISK_FULL, DiskFull, Supervisor, prepare, warm
from lab.runs.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow


class Runner:
    """The loop of the background process: start what fits on the lanes, each job under its own supervisor, until
    the queue is empty; with no GPUs and `max_parallel: 1` (the default), one job at a time."""

    POLL_S = 0.01  # how often a runner with jobs running looks for an ended supervisor or a changed queue
    RESCAN_S = 1.0  # and how often it looks at the queue at the latest

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.queue: Queue | None = None
        self.lock: RunnerLock | None = None
        self._terminating = False
        self.children: dict[int, QueueRow] = {}  # supervisor pid -> its job (this runner's forks)
        self.exits: dict[int, int] = {}  # supervisor pid -> a pidfd that wakes the runner when it ends
        self.watched: dict[int, dict] = {}  # job id -> identity, for supervisors that outlived an earlier runner
        self.lanes = gpus.Lanes()
        self.gate: GpuGate | None = None  # sharing the machine's GPUs with other labs (lab.runs.local.gpugate)
        self.notifier = None
        self.summary = notify.Summary()

    def _on_sigterm(self, signum, frame):
        self._terminating = True
        for pid in list(self.children):  # their supervisors record them interrupted and queue them again
            process.signal_group(pid, signal.SIGTERM)
        for ident in list(self.watched.values()):
            process.signal_group(ident["pgid"], signal.SIGTERM)

    def serve(self) -> int:
        state_dir = self.workspace.state_dir
        lock = self.lock = RunnerLock(state_dir)
        if not lock.acquire(WAIT_FOR_LOCK_S):
            return 0  # another runner is alive
        lock.write_pid()
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.queue = Queue(state_dir, durable=False)
        subreaper.load_prctl()
        self.lanes = self._lanes()
        self.gate = GpuGate(self.workspace, self.lanes, self.log)
        self.notifier = notify.Sender(self.workspace, self.log)
        self.log(f"runner {os.getpid()} started: {self.lanes.describe()}")
        code = 0
        try:
            while True:
                self.loop()
                lock.release(clear_pid=True)
                if self._terminating or self.queue.get_flag("stop") or not self.queue.has_queued():
                    break
                # Something was queued while we were leaving: carry on if no other runner took over.
                if not lock.acquire(WAIT_FOR_LOCK_S):
                    break
                lock.write_pid()
        except (DiskFull, OSError) as e:
            self.log(f"runner {os.getpid()} stops: {e}; nothing finished will run again (lab run resumes)")
            lock.release(clear_pid=True)
            code = 1
        stopped = self.queue.get_flag("stop")
        if not self._terminating and not stopped and code == 0 and self.summary:
            self.notifier.send(self.summary.event(self.workspace.root))
        if code == 0:
            self.log(f"runner {os.getpid()} exits" + (" (stopped)" if stopped else ""))
        return code

    def _lanes(self):
        try:
            lanes = gpus.lanes_for(self.workspace)
        except BadInput as e:  # lab.yaml changed since lab run checked it: one job at a time, no GPU handed out
            self.log(f"{e}; running one job at a time")
            lanes = gpus.Lanes()
        info.write_lanes(self.workspace.state_dir, os.getpid(), lanes)
        return lanes

    def loop(self) -> None:
        """Start what fits, wait for a change, until nothing runs and nothing more can start."""
        state_dir = self.workspace.state_dir
        while not self._terminating:
            busy = {job["id"] for job in self.children.values()}
            # Recovery also marks done the jobs whose supervisor has exited (it recorded their end).
            for setting_id in recover(self.workspace, self.queue, busy=busy):
                self._ended(*setting_id.split("/", 1))
            running = self.queue.jobs((State.RUNNING,), executor="local")
            for job in running:
                if job["id"] in busy or job["id"] in self.watched:
                    continue
                ident = identity(state_dir, job)
                if supervisor_alive(ident):
                    self.log(f"reattached to {job['experiment']}/{job['setting']} (job {job['id']}, supervisor {ident['pid']})")
                    self.watched[job["id"]] = ident
            started = 0
            if not self.queue.get_flag("stop"):
                started = self.start_what_fits(running)
            if not running and not started and not self.children and not (self.gate and self.gate.holding_back):
                return
            self.wait_for_change()

    def start_what_fits(self, running: list[QueueRow]) -> int:
        queued = self.queue.jobs((State.QUEUED,), executor="local")
        if not queued:
            return 0
        started = 0
        for _ in range(3):  # again at once when another lab took a GPU this round's look saw free
            n, taken = self._start_round(running, queued)
            started += n
            if not taken:
                break
            running = self.queue.jobs((State.RUNNING,), executor="local")
            queued = self.queue.jobs((State.QUEUED,), executor="local")
        return started

    def _start_round(self, running: list[dict], queued: list[dict]) -> tuple[int, bool]:
        plan = gpus.plan(self.workspace, self.lanes, running, queued)
        looked = False
        if self.gate and self.gate.active and (self.gate.holding_back or any(g for _, g in plan.start)):
            # A job would start on a GPU: first ask the machine what others hold (lab.runs.local.gpugate).
            plan, looked = gpus.plan(self.workspace, self.lanes, running, queued, self.gate.outside(running)), True
        rows = {job["id"]: job for job in queued}
        for job_id, reason in plan.impossible:
            self.refuse(rows[job_id], reason)
        begun: set = set()
        taken = False
        if plan.start:
            warm()  # the caches the supervisors inherit
        for job_id, gpu_ids in plan.start:
            need = plan.needs[job_id]
            lease = self.gate.lease(gpu_ids, need.share) if self.gate else None
            if lease is TAKEN:
                taken = True
                continue
            lane = gpus.lane_json(need, gpu_ids, gpus.job_env(self.lanes, gpu_ids))
            job = self.queue.claim(job_id, uuid.uuid4().hex, lane)
            if job is None:
                if lease is not None:
                    lease.close()
                continue  # cancelled meanwhile
            kill_point("runner-claimed", self.workspace.state_dir)
            self.fork(job, lease, need.share)
            begun.add(job_id)
        if self.gate:
            self.gate.waiting(plan, begun, looked)
        return len(begun) + len(plan.impossible), taken

    def refuse(self, job: QueueRow, reason: str) -> None:
        """A queued job that can never run on these lanes fails at once, with the reason (it holds no lane)."""
        setting = job_setting(self.workspace, job)
        self.log(f"could not start {setting.id}: {reason}")
        with self.queue.transaction():
            if (self.queue.job(job["id"]) or {}).get("state") != State.QUEUED:
                return  # cancelled meanwhile
            records.write_record(setting, records.failed_to_start(
                setting, attempt=records.next_attempt(records.read_record(setting, strict=False)), executor="local",
                resolved=json.loads(job["settings"]), hash_=job["settings_hash"],
                reason=f"could not start: {reason}", extra={"job_id": job["id"]}))
            self.queue.finish(job["id"], State.FAILED)
            if job["stop_on_failure"]:
                self.queue.set_flag("stop", f"stopped after {setting.id} failed (--stop-on-failure)")
        self._ended(job["experiment"], job["setting"], job["id"])

    def fork(self, job: QueueRow, lease=None, share=None) -> None:
        """Prepare the attempt and fork the job's supervisor (it starts the program and records its end); the
        runner does not wait here (see `wait_for_change`). The supervisor inherits the job's GPU `lease` with the
        fork and hands it on to the program, so that it lasts as long as any process of the job."""
        prepared = prepare(self.workspace, job)
        if lease is not None and prepared[0] is not None:
            prepared[0].pass_fds = tuple(lease.fds)
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # the supervisor shares this process's memory: no collection may copy all of it
        pid = os.fork()
        if pid == 0:
            Supervisor(self.workspace, job, self.lock.fd, os.getppid(), prepared).run()  # never returns (no SQLite)
        gc.unfreeze()
        if lease is not None:
            self.gate.started(lease, job, pid, share)
        self.children[pid] = job
        try:
            self.exits[pid] = os.pidfd_open(pid)  # readable once the supervisor ends (Linux 5.3 and later)
        except (AttributeError, OSError):
            pass
        if self._terminating:
            process.signal_group(pid, signal.SIGTERM)
        kill_point("runner-forked", self.workspace.state_dir)

    def wait_for_change(self) -> None:
        """Sleep until a supervisor ends, another process changes the queue (a job queued or cancelled,
        `lab stop`) or RESCAN_S passed; then the runner looks at the queue again."""
        version = self._queue_version()
        deadline = time.monotonic() + self.RESCAN_S
        while not self._terminating:
            if (self._reap() or self._queue_version() != version or time.monotonic() >= deadline
                    or (self.gate and self.gate.changed())):
                return
            self._pause()

    def _pause(self) -> None:
        """Sleep POLL_S, or less: a supervisor that ends wakes the runner at once (its pidfd becomes readable),
        so the next job starts without waiting out the poll."""
        if self.exits:
            try:
                select.select(list(self.exits.values()), [], [], self.POLL_S)
                return
            except (OSError, ValueError):
                pass
        time.sleep(self.POLL_S)

    def _queue_version(self) -> int:
        # SQLite's data_version changes whenever another connection commits: a cheap "did anything happen?".
        return self.queue.db.execute("PRAGMA data_version").fetchone()[0]

    def _reap(self) -> bool:
        """Whether a supervisor ended (this runner's, or one it reattached to); recovery then marks its job."""
        changed = False
        for pid, job in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if not done:
                continue
            del self.children[pid]
            fd = self.exits.pop(pid, None)
            if fd is not None:
                os.close(fd)
            changed = True
            kill_point("runner-reaped", self.workspace.state_dir)
            if os.waitstatus_to_exitcode(status) == DISK_FULL:
                raise DiskFull(f"the disk is full ({job['experiment']}/{job['setting']} could not be recorded)")
        for job_id, ident in list(self.watched.items()):
            if not supervisor_alive(ident):
                del self.watched[job_id]
                changed = True
        return changed

    def _ended(self, experiment: str, setting: str, job_id: int | None = None) -> None:
        """Count a job that ended in the summary, and send word if it failed or was interrupted."""
        try:
            rec = records.read_record(records.setting_of(self.workspace, experiment, setting), strict=False)
        except Exception:  # an unreadable record is the status's business, not the notifier's
            return
        if not rec or (job_id is not None and rec.get("job_id") != job_id):
            return
        state = rec.get("state")
        if state not in records.FINISHED and state != State.INTERRUPTED:
            return
        self.summary.add(rec)
        if state in (State.FAILED, State.INTERRUPTED):
            self.notifier.send(notify.job_event(state, rec, self.workspace.root))

    def log(self, message: str) -> None:
        diary.write(self.workspace.state_dir, message)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lab.core.workspace import Workspace

    parser = argparse.ArgumentParser(prog="python -m lab.runner", description="The background runner of a lab root (started by lab run).")
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    return Runner(Workspace(args.root)).serve()


if __name__ == "__main__":
    sys.exit(main())
