"""The background runner: one process per lab root takes queued jobs one at a time, or several at once on lanes
(`python -m lab.runner`).

Lanes: the runner reads its lanes when it starts (`lab.runs.gpus.lanes_for`: GPUs to hand out, jobs per GPU, CPU
lanes) and writes them to `.lab/lanes.json` for `lab status`. Each round it asks `lab.runs.gpus.plan` which queued
jobs fit now and on which GPUs (`lab.runs.slots`: queue order, and no job is delayed by a later one), claims each
with what it holds (the row's `lane`: its GPUs, its share, the environment its supervisor gives the program), forks
its supervisor, and then waits for a supervisor to end or the queue to change. With no GPUs and `max_parallel: 1`
(the default) that is one job at a time, as before. Word of failed and interrupted jobs and of the drained queue
goes out through `lab.runs.notify`.

Exactly one runner: the runner holds an exclusive `flock` on `.lab/runner.lock` for its whole life and writes
its pid there. The kernel drops the lock when the process dies in any way (kill -9, out of memory, reboot), so
"the lock is free" reliably means "no runner". Other lab commands take the same lock for a moment to do crash
recovery, so recovery never races a live runner.

Starting: `lab run` queues its jobs, then `ensure_runner` starts a runner unless one holds the lock. The runner
is a new session (no terminal, so closing the shell does not end it, as with `nohup`) whose stdin is
/dev/null and whose output goes to `.lab/runner.log`. A runner that finds the queue empty releases the lock,
then looks once more: a job queued while it was leaving saw the lock held, so this last look is what picks it
up (and a job queued after the release starts its own runner).

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
At every moment either the program has not started, or a file names the process group that runs it. The
supervisor does not depend on the runner: a job that ends while the runner is dead is recorded
`succeeded`/`failed` by its supervisor and never run again. The supervisor uses no SQLite: it inherits the
runner's connection with the fork, and a connection opened in a forked child may write unlocked.

Crash recovery (`recover`, run under the lock by the runner at start-up and by `lab run` / `lab status` /
`lab stop` when no runner holds it), for each job marked running:
- its supervisor still lives: it is left alone and the new runner *reattaches* (waits for it to end before
  starting the next job); `lab status` shows it running;
- its supervisor is gone and its record or exit file says how it ended: that end is recorded, the job is done;
- its supervisor was killed while the program ran (only a kill of the supervisor itself does this): what is left
  of the process group is stopped (SIGTERM, SIGKILL after a grace period), the record becomes `interrupted`
  (kept in the history) and the job is queued again at its place;
- the program never started: the job is queued again at its place.
`LAB_TEST_KILL=POINT` (or `runner@POINT`) makes the runner or the supervisor kill itself (or the runner) with
SIGKILL at one named point of starting or finishing a job, once per lab (`KILL_POINTS`; for tests).
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from lab.core import process
from lab.core.fsutil import atomic_write_json
from lab.errors import BadInput
from lab.runs import gpus, notify
from lab.runs import record as records
from lab.runs.local.queue import Queue

LOCK_NAME = "runner.lock"
LOG_NAME = "runner.log"
LANES_NAME = "lanes.json"  # the live runner's lanes, for lab status
WAIT_FOR_LOCK_S = 30.0  # how long a new runner waits while another lab command holds the lock for a moment
STRAGGLER_GRACE_S = 5.0  # children left behind by a finished job get this long after SIGTERM


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


# -- starting a runner ------------------------------------------------------------------------------------


def ensure_runner(workspace, env: dict | None = None) -> int | None:
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
    _tell(workspace, settled)
    return spawn(workspace, env)


def spawn(workspace, env: dict | None = None) -> int:
    """Start `python -m lab.runner` detached from the terminal: new session, no stdin, output to the runner log."""
    state_dir = workspace.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / LOG_NAME
    try:
        if log.stat().st_size > 5_000_000:
            os.replace(log, log.with_name(LOG_NAME + ".1"))
    except FileNotFoundError:
        pass
    proc = process.spawn_detached([sys.executable, "-m", "lab.runs.local.runner", "--root", str(workspace.root)], log,
                                  cwd=workspace.root, env=env)
    return proc.pid


# -- crash recovery -------------------------------------------------------------------------------------


KILL_POINTS = ("runner-claimed", "runner-forked", "supervisor-identity", "supervisor-started", "supervisor-exited",
               "supervisor-recorded", "supervisor-done", "runner-reaped")


def kill_point(name: str, state_dir: Path, runner: int | None = None) -> None:
    """The test hook: SIGKILL at point `name` when LAB_TEST_KILL says so (once per lab)."""
    wanted = os.environ.get("LAB_TEST_KILL")
    if not wanted or wanted.rpartition("@")[2] != name:
        return
    try:
        os.close(os.open(Path(state_dir) / "test-kill-fired", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    victim = runner if wanted.startswith("runner@") and runner else os.getpid()
    os.kill(victim, signal.SIGKILL)
    if victim == os.getpid():
        time.sleep(60)


def exit_file(state_dir: Path, job_id: int) -> Path:
    return Path(state_dir) / "jobs" / f"{job_id}.exit"


EXIT_FILE_SIZE = 128


def identity_file(state_dir: Path, job_id: int) -> Path:
    return Path(state_dir) / "jobs" / f"{job_id}.json"


def stop_file(state_dir: Path, job_id: int) -> Path:
    return Path(state_dir) / "jobs" / f"{job_id}.stop"


def identity(state_dir: Path, job: dict) -> dict | None:
    """Who supervises this start of `job` (`.lab/jobs/ID.json`, written before its program starts): pid (its
    process group), start time, boot id, attempt; None when no supervisor said so."""
    try:
        data = json.loads(identity_file(state_dir, job["id"]).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and job.get("token") and data.get("token") == job["token"] else None


def request_stop(state_dir: Path, job: dict, grace: float) -> None:
    """`lab stop --now`: tell the job's supervisor to end it, SIGKILL after `grace` seconds, and record it cancelled."""
    path = stop_file(state_dir, job["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"token": job.get("token"), "grace": grace}, fsync=False)


def stop_request(state_dir: Path, job: dict) -> dict | None:
    try:
        data = json.loads(stop_file(state_dir, job["id"]).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("grace"), (int, float)):
        return None
    return data if data.get("token") in (None, job.get("token")) else None


def read_exit(state_dir: Path, job: dict) -> dict | None:
    """What a supervisor wrote when the program of `job` (this start of it) ended, or None."""
    try:
        text = exit_file(state_dir, job["id"]).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 3 or parts[0] != job.get("token"):
        return None
    try:
        return {"returncode": int(parts[1]), "duration_s": float(parts[2])}
    except ValueError:
        return None


def recover(workspace, queue: Queue, grace: float = 5.0, busy=()) -> list[str]:
    """Settle the jobs marked running whose supervisor is gone (call with the runner lock held); return their ids.

    The runner calls it after each job's supervisor exits (that is how a finished job is marked done), and at
    start-up; `lab run`, `lab status` and `lab stop` call it when no runner lives. Jobs whose supervisor still
    runs are left to it (the runner reattaches to them), and so are `busy` ones (the live runner's own supervisors, which may not
    have said who they are yet). A row is changed only if it is still as it was read."""
    settled = []
    state_dir = workspace.state_dir
    for job in queue.jobs(("running",), executor="local"):
        if job["id"] in busy:
            continue
        ident = identity(state_dir, job)
        if supervisor_alive(ident):
            continue
        setting = job_setting(workspace, job)
        rec = records.read_record(setting, strict=False)
        ours = rec is not None and rec.get("job_id") == job["id"]
        mine = ours and ident is not None and rec.get("attempt") == ident.get("attempt") and rec.get("started_at")
        if mine and rec.get("state") in ("succeeded", "failed", "cancelled", "interrupted") or (
                ours and ident is not None and rec.get("state") == "cancelled" and not rec.get("started_at")):
            # The supervisor recorded the end (or the cancel before the start) and exited: mark the job so.
            # (interrupted: the runner was stopped, SIGTERM, while it ran)
            if not _settle_row(queue, job, rec["state"], rec.get("exit_code"), setting.id):
                continue
            _forget(state_dir, job)
            settled.append(setting.id)
            continue
        cancelled = bool(job["cancel_requested"])
        if ident is None:
            # No supervisor ever said it runs this start: the program never started.
            if not _settle_row(queue, job, "cancelled" if cancelled else "interrupted", None, setting.id):
                continue
            _forget(state_dir, job)
            _diary(state_dir, f"{setting.id} had not started when its runner died; " + ("cancelled" if cancelled else "queued again"))
            settled.append(setting.id)
            continue
        if process.is_our_group(ident["pgid"], ident.get("proc_start"), ident.get("boot_id")):
            process.terminate_group(ident["pgid"], grace)  # what is left of it, unsupervised
        ended = read_exit(state_dir, job)
        if mine and rec.get("state") == "running" and ended is not None:  # it ended; its record was not written
            rec = records.ended(setting, rec, ended["returncode"], duration_s=ended["duration_s"],
                                state="cancelled" if cancelled and ended["returncode"] != 0 else None)
            records.write_record(setting, rec)
            if not _settle_row(queue, job, rec["state"], rec.get("exit_code"), setting.id):
                continue
            _forget(state_dir, job)
            _diary(state_dir, f"{rec['state']} {setting.id} (exit {rec.get('exit_code')}; recorded after its supervisor died)")
            settled.append(setting.id)
            continue
        state = "cancelled" if cancelled else "interrupted"
        if mine and rec.get("state") == "running":
            reason = "cancelled by lab stop --now" if cancelled else "its supervisor died while the job ran; it was stopped and queued again"
            records.write_record(setting, records.settled(setting, rec, state, reason))
        if not _settle_row(queue, job, state, None, setting.id):
            continue
        _forget(state_dir, job)
        _diary(state_dir, f"{setting.id}: its supervisor died; what was left of it was stopped and "
                          + ("recorded cancelled" if cancelled else "queued again"))
        settled.append(setting.id)
    running = {str(j["id"]) for j in queue.jobs(("running",), executor="local")}
    try:
        left = [p for p in (Path(state_dir) / "jobs").iterdir() if p.name.split(".")[0] not in running]
    except OSError:
        left = []
    for path in left:  # a supervisor killed after it marked its job done
        path.unlink(missing_ok=True)
    return settled


def _diary(state_dir: Path, message: str) -> None:
    """A line in the runner's diary (.lab/runner.log), from whichever lab process did something there."""
    try:
        with open(Path(state_dir) / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(f"{records.now_iso()} {message}\n")
    except OSError:
        pass


def supervisor_alive(job: dict | None) -> bool:
    """Whether the supervisor `job` names (pid, start time, boot id) still runs."""
    if not job:
        return False
    pid = job.get("pid")
    if not pid or not process.pid_alive(pid):
        return False
    boot = process.boot_id()
    if job.get("boot_id") and boot and job["boot_id"] != boot:
        return False
    return job.get("proc_start") is None or process.start_time(pid) == job["proc_start"]


def _forget(state_dir: Path, job: dict) -> None:
    for path in (exit_file(state_dir, job["id"]), identity_file(state_dir, job["id"]), stop_file(state_dir, job["id"])):
        try:
            path.unlink()
        except OSError:
            pass


def recover_if_needed(workspace) -> list[str]:
    """Crash recovery for `lab run` and `lab status`: only when jobs are marked running and no runner lives."""
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        jobs = queue.jobs(("running",), executor="local")
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
    _tell(workspace, settled)
    return settled


def _tell(workspace, settled: list[str]) -> None:
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
        if rec.get("state") in ("interrupted", "failed"):
            notify.send_detached(workspace, notify.job_event(rec["state"], rec, workspace.root), config=config)


# -- the runner process -----------------------------------------------------------------------------------


def _settle_row(queue, job: dict, state: str, exit_code: int | None, what: str) -> bool:
    """Mark a running job's queue row as its end says: `interrupted` queues it again at its place, any other state
    finishes it (a failure stops the queue under --stop-on-failure). One transaction, and only if the row is still
    as it was read: False when someone else settled it first."""
    with queue.transaction():
        if not queue.unchanged(job):
            return False
        if state == "interrupted":
            queue.requeue(job["id"])
        else:
            queue.finish(job["id"], state, exit_code)
            if state == "failed" and job["stop_on_failure"]:
                queue.set_flag("stop", f"stopped after {what} failed (--stop-on-failure)")
    return True


def job_setting(workspace, job: dict):
    """The Setting of a queued job, even when its file was renamed since (the resolved settings were kept)."""
    return records.setting_of(workspace, job["experiment"], job["setting"])


class DiskFull(Exception):
    pass


class _Stop(Exception):
    pass


class Runner:
    """The loop of the background process: start what fits on the lanes, each job under its own supervisor, until
    the queue is empty; with no GPUs and `max_parallel: 1` (the default), one job at a time."""

    POLL_S = 0.01  # how often a runner with jobs running looks for an ended supervisor or a changed queue
    RESCAN_S = 1.0  # and how often it looks at the queue at the latest

    def __init__(self, workspace):
        self.workspace = workspace
        self.queue: Queue | None = None
        self.lock: RunnerLock | None = None
        self._terminating = False
        self.children: dict[int, dict] = {}  # supervisor pid -> its job (this runner's forks)
        self.watched: dict[int, dict] = {}  # job id -> identity, for supervisors that outlived an earlier runner
        self.lanes = gpus.Lanes()
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
        _load_prctl()
        self.lanes = self._lanes()
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
        try:
            atomic_write_json(self.workspace.state_dir / LANES_NAME, {"pid": os.getpid(), **lanes.to_json()}, fsync=False)
        except OSError:
            pass
        return lanes

    def loop(self) -> None:
        """Start what fits, wait for a change, until nothing runs and nothing more can start."""
        state_dir = self.workspace.state_dir
        while not self._terminating:
            busy = {job["id"] for job in self.children.values()}
            # Recovery also marks done the jobs whose supervisor has exited (it recorded their end).
            for setting_id in recover(self.workspace, self.queue, busy=busy):
                self._ended(*setting_id.split("/", 1))
            running = self.queue.jobs(("running",), executor="local")
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
            if not running and not started and not self.children:
                return
            self.wait_for_change()

    def start_what_fits(self, running: list[dict]) -> int:
        queued = self.queue.jobs(("queued",), executor="local")
        if not queued:
            return 0
        plan = gpus.plan(self.workspace, self.lanes, running, queued)
        rows = {job["id"]: job for job in queued}
        for job_id, reason in plan.impossible:
            self.refuse(rows[job_id], reason)
        if not plan.start:
            return len(plan.impossible)
        from lab.runs.attempt import package_versions

        package_versions()  # warm the cache the supervisors inherit
        started = 0
        for job_id, gpu_ids in plan.start:
            lane = gpus.lane_json(plan.needs[job_id], gpu_ids, gpus.job_env(self.lanes, gpu_ids))
            job = self.queue.claim(job_id, uuid.uuid4().hex, lane)
            if job is None:
                continue  # cancelled meanwhile
            kill_point("runner-claimed", self.workspace.state_dir)
            self.fork(job)
            started += 1
        return started + len(plan.impossible)

    def refuse(self, job: dict, reason: str) -> None:
        """A queued job that can never run on these lanes fails at once, with the reason (it holds no lane)."""
        setting = job_setting(self.workspace, job)
        self.log(f"could not start {setting.id}: {reason}")
        with self.queue.transaction():
            if (self.queue.job(job["id"]) or {}).get("state") != "queued":
                return  # cancelled meanwhile
            records.write_record(setting, records.failed_to_start(
                setting, attempt=records.next_attempt(records.read_record(setting, strict=False)), executor="local",
                resolved=json.loads(job["settings"]), hash_=job["settings_hash"], reason=f"could not start: {reason}",
                extra={"job_id": job["id"]}))
            self.queue.finish(job["id"], "failed")
            if job["stop_on_failure"]:
                self.queue.set_flag("stop", f"stopped after {setting.id} failed (--stop-on-failure)")
        self._ended(job["experiment"], job["setting"], job["id"])

    def fork(self, job: dict) -> None:
        """Prepare the attempt and fork the job's supervisor (it starts the program and records its end); the
        runner does not wait here (see `wait_for_change`)."""
        prepared = prepare(self.workspace, job)
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # the supervisor shares this process's memory: no collection may copy all of it
        pid = os.fork()
        if pid == 0:
            supervise(self.workspace, job, self.lock.fd, os.getppid(), prepared)  # never returns (no SQLite)
        gc.unfreeze()
        self.children[pid] = job
        if self._terminating:
            process.signal_group(pid, signal.SIGTERM)
        kill_point("runner-forked", self.workspace.state_dir)

    def wait_for_change(self) -> None:
        """Sleep until a supervisor ends, another process changes the queue (a job queued or cancelled,
        `lab stop`) or RESCAN_S passed; then the runner looks at the queue again."""
        version = self._queue_version()
        deadline = time.monotonic() + self.RESCAN_S
        while not self._terminating:
            if self._reap() or self._queue_version() != version or time.monotonic() >= deadline:
                return
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
            changed = True
            kill_point("runner-reaped", self.workspace.state_dir)
            if os.waitstatus_to_exitcode(status) == SUPERVISOR_DISK_FULL:
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
        if state not in records.FINISHED and state != "interrupted":
            return
        self.summary.add(rec)
        if state in ("failed", "interrupted"):
            self.notifier.send(notify.job_event(state, rec, self.workspace.root))

    def log(self, message: str) -> None:
        # The runner's own diary (.lab/runner.log); the jobs' output goes to their logs/SETTING.log.
        try:
            print(f"{records.now_iso()} {message}", flush=True)
        except OSError:
            pass


SUPERVISOR_DISK_FULL = 75


def prepare(workspace, job: dict):
    """The attempt of a claimed job, prepared up to its program's start (`Attempt.prepare`), or the reason it
    cannot be: (attempt, None) or (None, why). Done by the runner before it forks the supervisor."""
    from lab.runs.attempt import Attempt

    setting = job_setting(workspace, job)
    attempt = records.next_attempt(records.read_record(setting, strict=False))
    try:
        lane = gpus.lane_of(job.get("lane"))
        extra = {"job_id": job["id"]}
        if lane.get("env"):  # lab hands out GPUs: the record says which this job got
            extra["gpus"] = lane.get("gpus") or []
        att = Attempt(setting, json.loads(job["settings"]), attempt=attempt, executor="local",
                      base_env={**json.loads(job["env"]), **(lane.get("env") or {})}, extra=extra, own_group=False)
        att.prepare()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"the disk is full ({setting.id} could not be prepared)") from None
        return None, f"could not start: {e}"
    except Exception as e:  # the report's command became invalid, a directory cannot be made, ...
        return None, f"could not start: {e}"
    return att, None


def supervise(workspace, job: dict, lock_fd: int | None, runner: int, prepared=None) -> None:
    """The per-job supervisor (a fork of the runner): start the program, record its end. Never returns."""
    gc.disable()  # short of memory it never is; a collection would copy the runner's pages it shares
    code = 0
    state_dir = workspace.state_dir
    setting = None
    try:
        os.setsid()  # a new session: this process's pid is the job's process group from now on
        _become_subreaper()  # the job's orphans become this process's children (see _descendants_left)
        stop = {"at": None, "waiting": False}

        def on_stop(signum, frame):
            if stop["at"] is None:
                stop["at"] = time.monotonic()
                if stop["waiting"]:
                    raise _Stop()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # No SQLite here: the runner's connection was inherited with the fork, and SQLite's bookkeeping of its
        # file locks with it (POSIX locks are not inherited), so a connection opened here could write unlocked.
        att, failure = prepared if prepared is not None else prepare(workspace, job)
        setting = job_setting(workspace, job) if att is None else att.setting
        attempt = records.next_attempt(records.read_record(setting, strict=False)) if att is None else att.attempt
        ending = exit_file(state_dir, job["id"])
        ending.parent.mkdir(parents=True, exist_ok=True)
        # Room for the exit status, made before anything runs (so writing it later needs no new disk space). No
        # fsync: what it guards against is a process killed, after which the page cache still holds it; a power
        # loss ends the program too.
        with open(ending, "w") as f:
            f.write(" " * EXIT_FILE_SIZE)
        atomic_write_json(identity_file(state_dir, job["id"]),
                          {"token": job["token"], "attempt": attempt, **process.identity(os.getpid())}, fsync=False)
        kill_point("supervisor-identity", state_dir, runner)
        if lock_fd is not None:
            os.close(lock_fd)  # from here on .lab/jobs/ID.json names this process group; recovery may look
        if stop_request(state_dir, job) is not None:  # lab stop --now came before the program started
            rec = records.read_record(setting, strict=False)
            if rec and rec.get("state") == "queued":
                records.write_record(setting, records.cancelled_before_start(rec, "cancelled by lab stop --now before it started"))
            os._exit(0)
        proc = None
        if att is not None:
            try:
                proc = att.spawn()
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                proc, att, failure = None, None, f"could not start: {e}"
            except Exception as e:
                proc, att, failure = None, None, f"could not start: {e}"
        if proc is None:
            if att is None:
                _log(f"could not start {setting.id}: {failure}")
                records.write_record(setting, records.failed_to_start(
                    setting, attempt=attempt, executor="local", resolved=json.loads(job["settings"]),
                    hash_=job["settings_hash"], reason=failure, extra={"job_id": job["id"]}))
            os._exit(0)
        _log(f"started {setting.id} (job {job['id']}, attempt {attempt}, process group {os.getpid()})")
        kill_point("supervisor-started", state_dir, runner)
        grace = None
        returncode = None
        while returncode is None:
            if stop["at"] is None:
                # Wait for the program's end without reaping it (WNOWAIT), so that a stop signal arriving at any
                # moment (its handler interrupts this wait) can never lose the exit status.
                try:
                    try:
                        stop["waiting"] = True
                        if stop["at"] is None:
                            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                    finally:
                        stop["waiting"] = False
                except (_Stop, ChildProcessError, InterruptedError):
                    pass
                if stop["at"] is None:
                    returncode = proc.wait()
                    break
            # Stopping: the program got SIGTERM with its group; SIGKILL what is left after the grace period.
            if grace is None:
                request = stop_request(state_dir, job)
                grace = request["grace"] if request is not None else STRAGGLER_GRACE_S
                _kill_others(signal.SIGTERM)  # the stop may have come before the program started
            returncode = proc.poll()
            if returncode is None:
                if time.monotonic() - stop["at"] > grace:
                    _kill_others(signal.SIGKILL)
                time.sleep(0.02)
        duration = att.duration()
        try:
            f = open(ending, "r+")  # in place: no new disk space needed
        except FileNotFoundError:
            f = open(ending, "w")
        with f:
            f.write(f"{job['token']} {returncode} {duration}".ljust(EXIT_FILE_SIZE))
        kill_point("supervisor-exited", state_dir, runner)
        # No process of the job may outlive it unsupervised (a forgotten data loader, a background helper).
        _end_others(STRAGGLER_GRACE_S if stop["at"] is None else 0.5)
        cancelled = stop["at"] is not None and stop_request(state_dir, job) is not None
        if cancelled:
            rec = att.finish(returncode, state="cancelled", reason="cancelled by lab stop --now")
        elif stop["at"] is not None:
            rec = att.finish(returncode, state="interrupted", reason="the runner was stopped (SIGTERM); queued again")
        else:
            rec = att.finish(returncode)
        kill_point("supervisor-recorded", state_dir, runner)
        # The job's row is marked done by whoever settles it next: the runner as soon as this process exits, or
        # crash recovery (the record says how it ended).
        _log(f"{rec['state']} {setting.id} (exit {rec.get('exit_code') if rec.get('signal') is None else rec['signal']}, {rec.get('duration_s')} s)")
        kill_point("supervisor-done", state_dir, runner)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        _log(f"could not {'record' if full else 'supervise'} {setting.id if setting else job['id']}: {e}")
        code = SUPERVISOR_DISK_FULL if full else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        os._exit(code)


def _log(message: str) -> None:
    try:
        print(f"{records.now_iso()} {message}", flush=True)
    except OSError:
        pass


_prctl = None


def _load_prctl() -> None:
    """Load prctl once in the runner (its supervisors inherit it: no ctypes import per job)."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _prctl = False


def _become_subreaper() -> None:
    """Linux: orphaned descendants of the program are re-parented to this process, not to init, so that "is
    anything of the job left?" is one read of this process's children instead of a scan of /proc."""
    _load_prctl()
    if _prctl:
        _prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _descendants_left() -> bool:
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
        return bool(_others())


def _others() -> list[int]:
    me = os.getpid()
    return [pid for pid in process.live_members(me) if pid != me]


def _kill_others(sig: int) -> None:
    for pid in _others():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _end_others(grace: float) -> None:
    """SIGTERM what is left of the job's process group (the supervisor excepted), SIGKILL after `grace`."""
    if not _descendants_left() or not _others():
        return
    _kill_others(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _others() and time.monotonic() < deadline:
        time.sleep(0.02)
    while _others():
        _kill_others(signal.SIGKILL)
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lab.core.workspace import Workspace

    parser = argparse.ArgumentParser(prog="python -m lab.runner", description="The background runner of a lab root (started by lab run).")
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    return Runner(Workspace(args.root)).serve()


if __name__ == "__main__":
    sys.exit(main())
