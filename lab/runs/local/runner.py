"""The background runner: one process per lab root takes queued jobs one at a time (`python -m lab.runner`).

Exactly one runner: the runner holds an exclusive `flock` on `.lab/runner.lock` for its whole life and writes
its pid there. The kernel drops the lock when the process dies in any way (kill -9, out of memory, reboot), so
"the lock is free" reliably means "no runner". Other lab commands take the same lock for a moment to do crash
recovery, so recovery never races a live runner.

Starting: `lab run` queues its jobs, then `ensure_runner` starts a runner unless one holds the lock. The runner
is a new session (no terminal, so closing the shell does not end it, as with `nohup`) whose stdin is
/dev/null and whose output goes to `.lab/runner.log`. A runner that finds the queue empty releases the lock,
then looks once more: a job queued while it was leaving saw the lock held, so this last look is what picks it
up (and a job queued after the release starts its own runner).

Crash recovery (`recover`, run under the lock by the runner at start-up and by `lab run` / `lab status` when
no runner holds it): a job still marked running has lost its runner. Its exit status cannot be learned (it
was the dead runner's child), so it is not reattached: its process group is ended (SIGTERM, then SIGKILL),
its record becomes `interrupted` (kept in the history once the next attempt starts) and it is queued again
at its old place, so exactly one copy of it runs to completion. A job whose record already says it finished
is only marked done: finished jobs never run again.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

from lab.core import process
from lab.runs import record as records
from lab.runs.local.queue import Queue

LOCK_NAME = "runner.lock"
LOG_NAME = "runner.log"
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
            recover(workspace, queue)
        finally:
            queue.close()
    finally:
        lock.release()
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


def recover(workspace, queue: Queue, grace: float = 5.0) -> list[str]:
    """Settle jobs marked running whose runner is gone (call with the runner lock held); return their ids."""
    settled = []
    for job in queue.jobs(("running",), executor="local"):
        setting = job_setting(workspace, job)
        rec = records.read_record(setting)
        mine = rec is not None and rec.get("job_id") == job["id"]
        if mine and rec.get("state") in records.FINISHED:
            queue.finish(job["id"], rec["state"], rec.get("exit_code"))
            settled.append(setting.id)
            continue
        pgid = job["pgid"] or (rec.get("pgid") if mine and rec.get("state") == "running" else None)
        if pgid and process.is_our_group(pgid, job["proc_start"], job["boot_id"]):
            process.terminate_group(pgid, grace)
        cancelled = bool(job["cancel_requested"])
        state = "cancelled" if cancelled else "interrupted"
        if mine and rec.get("state") == "running":
            rec.update(
                state=state,
                ended_at=records.now_iso(),
                duration_s=_seconds_since(rec.get("started_at")),
                exit_code=None,
                reason="cancelled by lab stop --now" if cancelled else "the runner died while the job ran; it was stopped and queued again",
                metrics=records.final_metrics(records.read_metrics(records.metrics_path(setting))),
            )
            rec.pop("pid", None)
            rec.pop("pgid", None)
            records.write_record(setting, rec)
        with queue.transaction():
            if cancelled:
                queue.finish(job["id"], "cancelled")
            else:
                queue.requeue(job["id"])
        settled.append(setting.id)
    return settled


def recover_if_needed(workspace) -> list[str]:
    """Crash recovery for `lab run` and `lab status`: only when jobs are marked running and no runner lives."""
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        if not queue.jobs(("running",), executor="local"):
            return []
        lock = RunnerLock(workspace.state_dir)
        if not lock.try_acquire():
            return []  # a live runner (which recovers at start-up) or another command doing it now
        try:
            return recover(workspace, queue)
        finally:
            lock.release()
    finally:
        queue.close()


def _seconds_since(iso: str | None) -> float | None:
    if not iso:
        return None
    from datetime import datetime, timezone

    try:
        return round((datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds(), 3)
    except ValueError:
        return None


# -- the runner process -----------------------------------------------------------------------------------


def job_setting(workspace, job: dict):
    """The Setting of a queued job, even when its file was renamed since (the resolved settings were kept)."""
    from lab.core.settings import SUFFIXES, Setting

    exp = workspace.experiment(job["experiment"], must_exist=False)
    if "[" in job["setting"]:  # issue 18 hook: an element of a sweep file
        from lab.core.settings import sweep_member

        return sweep_member(exp, job["setting"])
    for suffix in SUFFIXES:
        path = exp.settings_dir / f"{job['setting']}{suffix}"
        if path.exists():
            return Setting(exp, job["setting"], path)
    return Setting(exp, job["setting"], exp.settings_dir / f"{job['setting']}.json")


class _Terminated(Exception):
    pass


class Runner:
    """The loop of the background process: take the next job, run it, record it, until the queue is empty."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.queue: Queue | None = None
        self._waiting = False
        self._terminating = False

    def _on_sigterm(self, signum, frame):
        self._terminating = True
        if self._waiting:
            raise _Terminated()

    def serve(self) -> int:
        lock = RunnerLock(self.workspace.state_dir)
        if not lock.acquire(WAIT_FOR_LOCK_S):
            return 0  # another runner is alive
        lock.write_pid()
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.queue = Queue(self.workspace.state_dir, durable=False)
        self.log(f"runner {os.getpid()} started")
        try:
            while True:
                for job_id in recover(self.workspace, self.queue):
                    self.log(f"recovered {job_id} after a crash; queued again")
                while not self._terminating and not self.queue.get_flag("stop"):
                    job = self.queue.claim_next()
                    if job is None:
                        break
                    self.run_job(job)
                lock.release(clear_pid=True)
                if self._terminating or self.queue.get_flag("stop") or not self.queue.has_queued():
                    break
                # Something was queued while we were leaving: carry on if no other runner took over.
                if not lock.acquire(WAIT_FOR_LOCK_S):
                    break
                lock.write_pid()
        except _Terminated:
            lock.release(clear_pid=True)
        self.log(f"runner {os.getpid()} exits" + (" (stopped)" if self.queue.get_flag("stop") else ""))
        return 0

    def run_job(self, job: dict) -> None:
        from lab.runs.attempt import Attempt

        ws, queue = self.workspace, self.queue
        setting = job_setting(ws, job)
        attempt = records.next_attempt(records.read_record(setting))
        try:
            att = Attempt(setting, json.loads(job["settings"]), attempt=attempt, executor="local",
                          base_env=json.loads(job["env"]), extra={"job_id": job["id"], "queued_at": job["queued_at"]},
                          # The queue knows the process group before anything else happens, for crash recovery.
                          on_spawn=lambda p: queue.set_process(job["id"], attempt, process.identity(p.pid)))
            proc = att.start()
        except Exception as e:  # the report's command became invalid, a directory cannot be made, ...
            self.log(f"could not start {setting.id}: {e}")
            _record_unstarted(setting, job, attempt, f"could not start: {e}")
            with queue.transaction():
                queue.finish(job["id"], "failed")
            return
        if proc is None:
            with queue.transaction():
                queue.finish(job["id"], "failed", 127)
                if job["stop_on_failure"]:
                    queue.set_flag("stop", f"stopped after {setting.id} failed (--stop-on-failure)")
            return
        self.log(f"started {setting.id} (job {job['id']}, attempt {attempt}, pid {proc.pid})")
        if (queue.job(job["id"]) or {}).get("cancel_requested"):
            # `lab stop --now` came while the job was starting, before its process group was known.
            process.signal_group(proc.pid, signal.SIGTERM)
        try:
            self._waiting = True
            if self._terminating:
                raise _Terminated()
            returncode = proc.wait()
            self._waiting = False
        except _Terminated:
            self._waiting = False
            process.terminate_group(proc.pid, STRAGGLER_GRACE_S, is_gone=lambda: proc.poll() is not None and process.group_gone(proc.pid))
            att.finish(proc.returncode, state="interrupted", reason="the runner was stopped (SIGTERM); queued again")
            with queue.transaction():
                queue.requeue(job["id"])
            self.log(f"interrupted {setting.id}; queued again")
            raise
        # No process of the job may outlive it unsupervised (a forgotten data loader, a background helper).
        process.terminate_group(proc.pid, STRAGGLER_GRACE_S)
        cancelled = bool((queue.job(job["id"]) or {}).get("cancel_requested"))
        rec = att.finish(returncode, state="cancelled" if cancelled else None, reason="cancelled by lab stop --now" if cancelled else None)
        with queue.transaction():
            queue.finish(job["id"], rec["state"], rec.get("exit_code"))
            if rec["state"] == "failed" and job["stop_on_failure"]:
                queue.set_flag("stop", f"stopped after {setting.id} failed (--stop-on-failure)")
        self.log(f"{rec['state']} {setting.id} (exit {rec.get('exit_code')}, {rec.get('duration_s')} s)")

    def log(self, message: str) -> None:
        # The runner's own diary (.lab/runner.log); the jobs' output goes to their logs/SETTING.log.
        print(f"{records.now_iso()} {message}", flush=True)


def _record_unstarted(setting, job: dict, attempt: int, reason: str) -> None:
    """A failed record for a job whose program never started."""
    history = records.history_after(records.read_record(setting))
    now = records.now_iso()
    records.write_record(setting, {
        "experiment": setting.experiment.name, "setting": setting.name, "state": "failed", "attempt": attempt,
        "executor": "local", "job_id": job["id"], "exit_code": None, "signal": None, "started_at": now,
        "ended_at": now, "duration_s": 0.0, "reason": reason, "settings": json.loads(job["settings"]),
        "settings_hash": job["settings_hash"], "metrics": {}, "history": history,
    })


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lab.core.workspace import Workspace

    parser = argparse.ArgumentParser(prog="python -m lab.runner", description="The background runner of a lab root (started by lab run).")
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    return Runner(Workspace(args.root)).serve()


if __name__ == "__main__":
    sys.exit(main())
