"""One attempt of one setting: prepare its files, start its process, and record how it ended.

Shared by every executor: the local runner's per-job supervisor runs one; on a Slurm cluster the node entry point
(`python -m lab.runs.slurm.node SPEC`) runs it on the compute node, so the record is written next to the experiment
whoever submitted it. The records themselves are built by `lab.runs.record`.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from lab.runs import record as records
from lab.core.command import build_argv, lab_env, output_dir, template_for
from lab.core.fsutil import atomic_write_json
from lab.core.settings import Setting, settings_hash

# Versions recorded with every run (read from package metadata: nothing is imported).
KEY_PACKAGES = ("lab", "torch", "transformers", "accelerate", "datasets", "numpy")


@dataclass
class Attempt:
    """One attempt of a setting, from its resolved settings to its record (written through `lab.runs.record`)."""

    setting: Setting
    resolved: dict
    attempt: int = 1
    executor: str = "local"
    base_env: dict | None = None
    extra: dict = field(default_factory=dict)  # executor fields kept in the record (job_id, slurm_job_id)
    own_group: bool = True  # the program leads its own process group (False: it joins its supervisor's)
    fork_capture: bool = False  # the live capture is a fork of this process (a supervisor), not a new interpreter
    template: str | None = None  # the command template fixed when the job was queued (None: the report's now)
    pass_fds: tuple = ()  # descriptors the program inherits (the local runner's GPU lease)
    on_spawn: Callable[[], None] | None = None  # called once the program runs, before its record (a test's kill)
    argv: list[str] = field(init=False)
    record: dict = field(init=False)
    log_offset: int = field(init=False, default=0)
    _started: float = field(init=False, default=0.0)
    _capturer: subprocess.Popen | None = field(init=False, default=None)

    def __post_init__(self):
        self.settings_path = records.resolved_settings_path(self.setting)
        self.template = self.template or template_for(self.setting)
        self.argv = build_argv(self.setting, self.settings_path, self.template, resolved=self.resolved)
        _warm_environment(self)  # the package scan for the record (once per runner), done before the program starts

    def start(self) -> subprocess.Popen | None:
        """Write the resolved settings and the log header, start the program, write the `running` record.

        Returns None when the program could not be started at all (the attempt is then recorded as failed).
        """
        self.prepare()
        return self.spawn()

    def prepare(self) -> None:
        """Everything before the program starts: directories, the resolved settings, the metrics file of the
        previous attempt moved aside, the log header, the environment (the local runner does this before it forks
        the job's supervisor, so the supervisor only has to start the program)."""
        setting = self.setting
        exp = setting.experiment
        for d in (exp.logs_dir, exp.runs_dir, output_dir(setting)):
            d.mkdir(parents=True, exist_ok=True)
        # The program's copy of the resolved settings (the record keeps them too, fsynced): no wait for the disk
        # here, where it would delay the program's start.
        atomic_write_json(self.settings_path, self.resolved, fsync=False)
        metrics = records.metrics_path(setting)
        _rotate_metrics(metrics, self.attempt)
        _forget_capture(metrics)
        log = records.log_path(setting)
        started_at = records.now_iso()
        header = f"===== lab: attempt {self.attempt} of {setting.id} at {started_at}: {subprocess.list2cmdline(self.argv)}\n"
        with open(log, "a", encoding="utf-8") as f:
            f.write(header)
            self.log_offset = f.tell()
        self.env = lab_env(setting, self.settings_path, metrics, base=self.base_env)
        self.started_at = started_at
        self._since = time.time()
        self.capture = capture_options(setting)
        # The code's hashes before the program starts (cached: a few stats), so that the `running` record, written
        # once it runs, follows at once: a supervisor that dies in between leaves a job that never said it ran.
        self.code = _code_fields(self)

    def spawn(self) -> subprocess.Popen | None:
        """Start the prepared program and write the `running` record."""
        setting, exp, env, started_at = self.setting, self.setting.experiment, self.env, self.started_at
        log = records.log_path(setting)
        self._started = time.monotonic()
        out = open(log, "ab")
        try:
            proc = subprocess.Popen(
                self.argv,
                cwd=exp.workspace.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_group,
                pass_fds=self.pass_fds,  # the job's GPU lease (lab.runs.gpulease): held while any of its processes lives
            )
        except (OSError, ValueError) as e:
            why = getattr(e, "strerror", None) or str(e)
            out.write(f"lab: could not start {self.argv[0]!r}: {why}\n".encode())
            out.close()
            self.record = self._running(started_at)
            self.finish(127, reason=f"could not start {self.argv[0]!r}: {why}")
            return None
        out.close()
        if self.on_spawn is not None:
            self.on_spawn()
        if self.fork_capture:
            self._start_capture()  # forked before the record's writer thread starts: a fork copies no thread
        # The record (provenance includes git calls) is written once the program runs, so that collecting it
        # never delays the program's start.
        try:
            self.record = self._running(started_at)
            self.record.update(pid=proc.pid, pgid=proc.pid if self.own_group else os.getpgid(0))
            records.write_record(setting, self.record)
        except BaseException:
            # No record, no supervision: the program must not run on (a full disk, a broken record file).
            try:
                os.killpg(proc.pid, signal.SIGKILL) if self.own_group else proc.kill()
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        if not self.fork_capture:
            self._start_capture()
        return proc

    def _capture_spec(self) -> dict:
        from lab.runs.capture.live import spec
        from lab.runs.capture.merge import output_dirs

        return spec(records.log_path(self.setting), self.log_offset, output_dirs(output_dir(self.setting), self.env),
                    self.capture, self._since, records.metrics_path(self.setting))

    def _start_capture(self) -> None:
        """The live capture beside the program (lab.runs.capture.live): it reads the log the program writes."""
        if not self.capture.enabled:
            return
        import json

        if self.fork_capture:
            from lab.runs.capture.live import Forked

            self._capturer = Forked(self._capture_spec(), close=self.pass_fds)  # type: ignore[assignment]
            return
        try:
            self._capturer = subprocess.Popen(
                [sys.executable, "-m", "lab.runs.capture.live", json.dumps(self._capture_spec())],
                cwd=self.setting.experiment.workspace.root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, env=_capture_env(self.env))
        except OSError:
            self._capturer = None  # finish() captures in-process instead

    def end_capture(self) -> None:
        """Let the live capture read the rest and write its result; capture here when it could not."""
        if not getattr(self, "capture", None) or not self.capture.enabled:
            return
        from lab.runs.capture import read_summary, write_result

        proc, self._capturer = self._capturer, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=CAPTURE_WAIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        summary = read_summary(records.metrics_path(self.setting))
        if summary is not None and summary.get("done"):
            return
        from lab.runs.capture.live import capture_from

        cap = capture_from(self._capture_spec())
        cap.poll(final=True)
        write_result(records.metrics_path(self.setting), cap.result())

    def _running(self, started_at: str) -> dict:
        info = provenance(self.setting.experiment.workspace.root)
        drift = _drift_fields(self)
        if drift.get("untracked") and info.get("git"):
            info["git"]["dirty"] = True  # it ran files the commit does not hold (kept with the record: lab.runs.code)
        return records.running(self.setting, attempt=self.attempt, executor=self.executor, resolved=self.resolved,
                               hash_=settings_hash(self.resolved), template=self.template, argv=self.argv,
                               started_at=started_at, provenance=info, extra=self.extra, drift=drift)

    def duration(self) -> float | None:
        return round(time.monotonic() - self._started, 3) if self._started else None

    def finish(self, returncode: int | None, state: str | None = None, reason: str | None = None) -> dict:
        """Record the end of the attempt: state, exit code or signal, duration, final metrics."""
        duration = self.duration()  # the program's time, not the capture's last reading after it
        try:
            self.end_capture()
        except Exception as e:  # a capture that fails costs the captured metrics, never the record
            _capture_failed(self.setting, e)
        self.record = records.ended(self.setting, self.record, returncode, duration_s=duration, state=state,
                                    reason=reason, log_offset=self.log_offset)
        records.write_record(self.setting, self.record)
        return self.record


CAPTURE_WAIT_S = 300.0  # how long a job's end waits for its live capture to read the rest of the log


def _capture_failed(setting: Setting, error: Exception) -> None:
    from lab.runs.capture import write_result

    try:
        write_result(records.metrics_path(setting), {"notes": [f"capture failed: {type(error).__name__}: {error}"]})
    except OSError:
        pass


def capture_options(setting: Setting):
    from lab.runs.capture.patterns import options_for

    return options_for(setting.experiment)


def _capture_env(env: dict) -> dict:
    """The capture process's environment: the job's, less what would make it slow or loud."""
    return {k: v for k, v in env.items() if not k.startswith(("PYTHONPROFILE", "CUDA_"))}


def _warm_environment(attempt: Attempt) -> None:  # the environment's scan, cached, so the record is written fast
    from lab.runs.environment import current

    try:
        current(attempt.argv, attempt.base_env)
    except OSError:
        pass


def _drift_fields(attempt: Attempt) -> dict:  # inputs and environment, to tell later whether the run is stale
    from lab.runs.environment import record_fields

    return record_fields(attempt.setting, attempt.resolved, attempt.argv, attempt.base_env,
                         code=getattr(attempt, "code", None))


def _code_fields(attempt: Attempt) -> dict:
    from lab.runs.code import code_fields

    return code_fields(attempt.setting, attempt.argv)


def provenance(root: Path) -> dict:
    """Where and with what a run ran: host, Python, key package versions, and the lab root's git state."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "packages": package_versions(),
        "git": git_state(root),
    }


_versions_cache: tuple | None = None


def package_versions() -> dict:
    """Versions of KEY_PACKAGES. Reading package metadata is slow (an email parser per package), so a
    long-lived runner keeps the answer until a directory on sys.path changes (an install or upgrade does)."""
    global _versions_cache
    stamp = []
    for entry in sys.path:
        try:
            stamp.append(os.stat(entry or ".").st_mtime_ns)
        except OSError:
            stamp.append(None)
    stamp = tuple(stamp)
    if _versions_cache is not None and _versions_cache[0] == stamp:
        return dict(_versions_cache[1])
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    _versions_cache = (stamp, packages)
    return dict(packages)


# The whole repository except lab's own bookkeeping (records and logs, which lab rewrites as jobs are queued and
# run): a run is "dirty" when the code or data differ from the commit, not because its own record was written.
# `lab reproduce` applies this diff to rebuild the code a run had.
CODE_PATHSPEC = (":(top)", ":(exclude,glob)experiments/*/runs/**", ":(exclude,glob)experiments/*/logs/**")


def git_state(root: Path, max_diff: int = 200_000) -> dict | None:
    """The lab root's commit, dirty flag and diff (lab's records and logs left out), or None when it is not a git
    repository."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)

    try:
        # One call gives both the commit and whether tracked files changed.
        status = git("status", "--porcelain=v2", "--branch", "--untracked-files=no", "--", *CODE_PATHSPEC)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if status.returncode != 0:
        return None
    commit, dirty = None, False
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split()[2]
        elif not line.startswith("#"):
            dirty = True
    if commit is None or commit == "(initial)":
        return None
    try:
        diff = git("diff", "HEAD", "--", *CODE_PATHSPEC).stdout if dirty else ""
    except (OSError, subprocess.TimeoutExpired):
        diff = ""
    if len(diff) > max_diff:
        diff = diff[:max_diff] + f"\n... (diff cut at {max_diff} characters)\n"
    return {"commit": commit, "dirty": dirty, "diff": diff}


def _forget_capture(metrics: Path) -> None:
    """An earlier attempt's capture is not this one's (`lab recapture` can derive it again from its log)."""
    from lab.runs.capture import rows_path, summary_path

    for path in (rows_path(metrics), summary_path(metrics)):
        path.unlink(missing_ok=True)


def _rotate_metrics(path: Path, attempt: int) -> None:
    """Keep an earlier attempt's metrics beside the new attempt's, so the latest file holds one attempt."""
    if path.exists() and path.stat().st_size > 0 and attempt > 1:
        os.replace(path, path.with_name(f"{path.name.removesuffix('.metrics.jsonl')}.attempt{attempt - 1}.metrics.jsonl"))


def run(setting: Setting, resolved: dict | None = None, attempt: int | None = None, executor: str = "local", extra: dict | None = None) -> dict:
    """Run one attempt in the foreground and return its record (by default, the setting's next attempt)."""
    attempt = records.next_attempt(records.read_record(setting)) if attempt is None else attempt
    att = Attempt(setting, setting.resolve() if resolved is None else resolved, attempt=attempt, executor=executor, extra=extra or {})
    proc = att.start()
    if proc is None:
        return att.record
    return att.finish(proc.wait())
