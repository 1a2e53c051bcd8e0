"""The per-job supervisor: a fork of the runner that starts one job's program in its own process group and records
its end.

It makes itself a new session (its pid is the job's process group), writes its identity to `.lab/jobs/ID.json`
while still holding the runner's lock (inherited with the fork, so no recovery can look in between), lets the lock
go and starts the program; when the program ends it writes the exit file, then the final record, and exits (see
`lab.runs.local.runner` for the four steps). It does not depend on the runner: a job that ends while the runner is
dead is recorded by its supervisor and never run again. It uses no SQLite: it inherits the runner's connection
with the fork, and SQLite's bookkeeping of its file locks with it (POSIX locks are not inherited), so a connection
opened here could write unlocked.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import sys
import time
from typing import NoReturn

from lab.core import process
from lab.runs import gpus
from lab.runs import record as records
from lab.runs.local import diary, jobfiles, subreaper
from lab.runs.local.faults import kill_point
from lab.runs.local.recovery import job_setting
from lab.runs.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow

STRAGGLER_GRACE_S = 5.0  # children left behind by a finished job get this long after SIGTERM
DISK_FULL = 75  # the supervisor's exit status when the disk is too full to record the job


class DiskFull(Exception):
    pass


class _Stop(Exception):
    """Raised by the stop signal's handler to break the wait for the program."""


def prepare(workspace: Workspace, job: QueueRow):
    """The attempt of a claimed job, prepared up to its program's start (`Attempt.prepare`), or the reason it
    cannot be: (attempt, None) or (None, why). Done by the runner before it forks the supervisor."""
    from lab.runs.attempt import Attempt

    setting = job_setting(workspace, job)
    attempt = records.next_attempt(records.read_record(setting, strict=False))
    try:
        lane = gpus.lane_of(job.get("lane"))
        extra = {"job_id": job["id"]}
        if job.get("command"):  # queued with its command: it runs that one, as it runs its queued settings
            extra["fixed_when_queued"] = records.FIXED_WHEN_QUEUED
        if lane.get("env"):  # lab hands out GPUs: the record says which this job got
            extra["gpus"] = lane.get("gpus") or []
        att = Attempt(setting, json.loads(job["settings"]), attempt=attempt, executor="local",
                      base_env={**json.loads(job["env"]), **(lane.get("env") or {})}, extra=extra, own_group=False, fork_capture=True,
                      template=job.get("command") or None)
        att.prepare()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"the disk is full ({setting.id} could not be prepared)") from None
        return None, f"could not start: {e}"
    except Exception as e:  # the report's command became invalid, a directory cannot be made, ...
        return None, f"could not start: {e}"
    return att, None


def warm() -> None:
    """Fill, in the runner, the caches that every supervisor would otherwise fill anew after its fork: package
    versions, the platform string (`uname -p` is a subprocess) and the modules that each supervisor imports to
    record a run (its inputs, the capture of its metrics)."""
    import platform

    from lab.runs import inputs  # noqa: F401
    from lab.runs.attempt import package_versions
    from lab.runs.capture import live, merge, tfevents  # noqa: F401

    package_versions()
    platform.platform()


class Supervisor:
    """One job's supervisor, in the forked child. `stop_at` is when a stop signal (SIGTERM, SIGINT) came;
    `waiting` says the supervisor is blocked waiting for the program, where the signal must break the wait."""

    def __init__(self, workspace: Workspace, job: QueueRow, lock_fd: int | None, runner: int, prepared=None):
        self.workspace = workspace
        self.state_dir = workspace.state_dir
        self.job = job
        self.lock_fd = lock_fd
        self.runner = runner
        self.prepared = prepared
        self.setting = None
        self.stop_at: float | None = None
        self.waiting = False

    def run(self) -> NoReturn:
        """Supervise the job, then exit (never returns)."""
        gc.disable()  # short of memory it never is; a collection would copy the runner's pages it shares
        code = 0
        try:
            self._supervise()
        except OSError as e:
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            what = self.setting.id if self.setting else self.job["id"]
            self.log(f"could not {'record' if full else 'supervise'} {what}: {e}")
            code = DISK_FULL if full else 1
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

    def on_stop(self, signum, frame) -> None:
        if self.stop_at is None:
            self.stop_at = time.monotonic()
            if self.waiting:
                raise _Stop()

    def log(self, message: str) -> None:
        diary.write(self.state_dir, message)

    def _kill_point(self, name: str) -> None:
        kill_point(name, self.state_dir, self.runner)

    def _supervise(self) -> None:
        job, state_dir = self.job, self.state_dir
        os.setsid()  # a new session: this process's pid is the job's process group from now on
        subreaper.become_subreaper()  # the job's orphans become this process's children
        signal.signal(signal.SIGTERM, self.on_stop)
        signal.signal(signal.SIGINT, self.on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        att, failure = self.prepared if self.prepared is not None else prepare(self.workspace, job)
        setting = self.setting = job_setting(self.workspace, job) if att is None else att.setting
        attempt = records.next_attempt(records.read_record(setting, strict=False)) if att is None else att.attempt
        jobfiles.make_exit_room(state_dir, job)
        jobfiles.write_identity(state_dir, job, attempt, os.getpid())
        self._kill_point("supervisor-identity")
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # from here on .lab/jobs/ID.json names this process group; recovery may look
        if jobfiles.stop_request(state_dir, job) is not None:  # lab stop --now came before the program started
            rec = records.read_record(setting, strict=False)
            if rec and rec.get("state") == State.QUEUED:
                records.write_record(setting, records.cancelled_before_start(rec, "cancelled by lab stop --now before it started"))
            return
        proc = None
        if att is not None:
            att.on_spawn = lambda: self._kill_point("supervisor-spawned")
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
                self.log(f"could not start {setting.id}: {failure}")
                records.write_record(setting, records.failed_to_start(
                    setting, attempt=attempt, executor="local", resolved=json.loads(job["settings"]),
                    hash_=job["settings_hash"], reason=failure, extra={"job_id": job["id"]}))
            return
        self.log(f"started {setting.id} (job {job['id']}, attempt {attempt}, process group {os.getpid()})")
        self._kill_point("supervisor-started")
        returncode = self._wait(proc)
        jobfiles.write_exit(state_dir, job, returncode, att.duration())
        self._kill_point("supervisor-exited")
        # No process of the job may outlive it unsupervised (a forgotten data loader, a background helper).
        subreaper.end_others(STRAGGLER_GRACE_S if self.stop_at is None else 0.5)
        if self.stop_at is not None and jobfiles.stop_request(state_dir, job) is not None:
            rec = att.finish(returncode, state=State.CANCELLED, reason="cancelled by lab stop --now")
        elif self.stop_at is not None:
            rec = att.finish(returncode, state=State.INTERRUPTED, reason="the runner was stopped (SIGTERM); queued again")
        else:
            rec = att.finish(returncode)
        self._kill_point("supervisor-recorded")
        # The job's row is marked done by whoever settles it next: the runner as soon as this process exits, or
        # crash recovery (the record says how it ended).
        ended = rec.get("exit_code") if rec.get("signal") is None else rec["signal"]
        self.log(f"{rec['state']} {setting.id} (exit {ended}, {rec.get('duration_s')} s)")
        self._kill_point("supervisor-done")

    def _wait(self, proc) -> int:
        """The program's exit status. Waits without reaping it (WNOWAIT), so that a stop signal arriving at any
        moment (its handler breaks this wait) can never lose the exit status; once stopping, the program got
        SIGTERM with its group, and what is left gets SIGKILL after the grace period."""
        if self.stop_at is None:
            try:
                try:
                    self.waiting = True
                    if self.stop_at is None:
                        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                finally:
                    self.waiting = False
            except (_Stop, ChildProcessError, InterruptedError):
                pass
            if self.stop_at is None:
                return proc.wait()
        request = jobfiles.stop_request(self.state_dir, self.job)
        grace = request["grace"] if request is not None else STRAGGLER_GRACE_S
        left = max(0.0, grace - (time.monotonic() - self.stop_at))  # the stop may have come before the program started
        process.terminate_group(os.getpid(), left, members=subreaper.others, is_gone=lambda: proc.poll() is not None)
        return proc.wait()
