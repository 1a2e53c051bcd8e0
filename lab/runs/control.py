"""Queueing and steering runs: what `lab run`, `lab stop`, `lab cancel` and `lab run --wait` do.

`submit` checks every target first (settings resolve, the command template is valid and its program exists,
lab's own training program accepts the keys) and queues nothing if one is bad. Then, in one queue
transaction, each setting is queued unless a job for it is already queued or running, or its last run
succeeded with the same resolved settings and the same command (`rerun` forces it). The check of the run
record happens inside the same transaction as the insert, and the runner writes a finished record before it
marks the job done, so concurrent `lab run`s can never run a setting twice.

A queued setting gets a record in state `queued` (the previous record moves into its history), so the files
alone tell what is waiting; `lab cancel` turns it into `cancelled`.

Executors: `submit(..., executor="local")` hands the jobs to the local runner (`start_executor`); another
executor plugs in there.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass

from lab.runs import record as records
from lab.core.command import build_argv, is_default_program, template_for
from lab.errors import BadInput, LabError
from lab.runs.local.queue import Queue
from lab.core.settings import Setting, select, settings_hash


@dataclass
class Planned:
    """A setting checked and ready to queue."""

    setting: Setting
    resolved: dict
    template: str
    argv: list[str]

    @property
    def hash(self) -> str:
        return settings_hash(self.resolved)


def check(workspace, targets: list[str], env: dict | None = None) -> list[Planned]:
    """Resolve and check every setting of the targets; raise BadInput naming the first bad one (and how many)."""
    settings = select(workspace, targets)
    planned, errors = [], []
    for setting in settings:
        try:
            planned.append(check_setting(setting, env))
        except BadInput as e:
            errors.append(str(e))
    if errors:
        more = f" (and {len(errors) - 1} more bad setting{'s' if len(errors) > 2 else ''}; nothing was queued)" if len(errors) > 1 else " (nothing was queued)"
        raise BadInput(errors[0] + more)
    return planned


def check_setting(setting: Setting, env: dict | None = None) -> Planned:
    resolved = setting.resolve()
    template = template_for(setting)
    argv = build_argv(setting, records.resolved_settings_path(setting), template)
    program = argv[0]
    if os.sep not in program:
        path = (env if env is not None else os.environ).get("PATH", os.defpath)
        if shutil.which(program, path=path) is None:
            raise BadInput(f"{setting.experiment.report_path}: command: program {program!r} not found on PATH")
    elif not os.access(program if os.path.isabs(program) else setting.experiment.workspace.root / program, os.X_OK):
        raise BadInput(f"{setting.experiment.report_path}: command: {program!r} is not an executable file")
    if is_default_program(template):
        _require_training_stack(setting)
        validate = _train_validator()
        if validate is not None:
            try:
                validate(resolved, setting.where())
            except (ValueError, TypeError, KeyError) as e:  # BadInput passes through as it is
                raise BadInput(f"{setting.where()}: {e}") from None
    return Planned(setting, resolved, template, argv)


def _require_training_stack(setting: Setting) -> None:
    """The default program needs the `train` extra: say so when queueing, not in a failed job's log."""
    import importlib.util

    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise LabError(
                f"{setting.experiment.report_path}: no command, so lab's training program runs it, and that "
                f"needs the training stack ({module} is not installed): pip install torch, then pip install 'lab[train]'"
            )


def _train_validator():
    """`lab.train.validate_settings(resolved, where)` when the training module provides it (imported lazily)."""
    try:
        from lab import train
    except ImportError:
        return None
    return getattr(train, "validate_settings", None)


def last_started(record: dict | None) -> dict | None:
    """The latest attempt that actually started (a job cancelled while queued is not a run)."""
    if not record:
        return None
    for rec in [record, *reversed(record.get("history", []))]:
        if rec.get("started_at"):
            return rec
    return None


def is_done(plan: Planned) -> bool:
    """Whether the setting's last run succeeded with the same resolved settings and command, and the files it read
    (its `inputs`, lab.runs.inputs) are unchanged since.

    The command is compared as the report's template, not as the argv: the argv holds absolute paths, and a lab
    root that was moved or cloned elsewhere has not changed what its settings ran.
    """
    last = last_started(records.read_record(plan.setting))
    done = bool(last and last.get("state") == "succeeded" and last.get("settings_hash") == plan.hash and last.get("command") == plan.template)
    from lab.runs.inputs import changed_inputs  # issue 18 hook: a run whose inputs changed since is stale

    return done and not changed_inputs(plan.setting.experiment.workspace.root, last)


def submit(workspace, targets: list[str], *, rerun: bool = False, stop_on_failure: bool = False,
           env: dict | None = None, executor: str | None = None, parallel: bool = False) -> list[dict]:
    """Check and queue the targets' settings, then make sure they run. Returns one entry per setting:
    `{"id", "experiment", "setting", "action" (queued | skipped | already queued | already running), "job_id", "log"}`.
    With no targets, resumes the queue (after `lab stop`) and returns [].

    `executor` (`local` or `slurm`; None: each experiment's configured one, see `lab.slurm.executor_for`) picks
    who runs them; Slurm jobs are submitted by `lab.slurmqueue` (their entries add `executor` and `slurm_job_id`).
    """
    env = dict(os.environ if env is None else env)
    planned = check(workspace, targets, env) if targets else []
    # -- Slurm executor: settings that run on the cluster leave here (lab.slurmqueue); the rest queue locally.
    on_slurm: list[dict] = []
    if planned:
        from lab.runs.slurm.cluster import executor_for

        remote = [p for p in planned if executor_for(p.setting, executor) == "slurm"]
        if remote:
            from lab.runs.slurm.executor import submit_planned

            on_slurm = submit_planned(workspace, remote, rerun=rerun, stop_on_failure=stop_on_failure, parallel=parallel, env=env)
            planned = [p for p in planned if p not in remote]
            if not planned:
                return on_slurm
    executor = "local"
    from lab.runs.local.runner import recover_if_needed

    recover_if_needed(workspace)
    queue = Queue(workspace.state_dir)
    batch = uuid.uuid4().hex[:12]
    results = []
    try:
        with queue.transaction():
            for plan in planned:
                results.append(_enqueue(queue, plan, rerun, stop_on_failure, env, executor, batch))
            queue.set_flag("stop", None)  # `lab run` means: run (it lifts `lab stop` and --stop-on-failure)
    finally:
        queue.close()
    start_executor(workspace, executor, env)
    return results + on_slurm


def _enqueue(queue: Queue, plan: Planned, rerun: bool, stop_on_failure: bool, env: dict, executor: str, batch: str) -> dict:
    setting = plan.setting
    entry = {
        "id": setting.id, "experiment": setting.experiment.name, "setting": setting.name,
        "log": str(records.log_path(setting).relative_to(setting.experiment.workspace.root)),
    }
    active = queue.active(setting.experiment.name, setting.name)
    if active is not None:
        return {**entry, "action": f"already {active['state']}", "job_id": active["id"]}
    from lab.runs.slurm.executor import active_on_slurm  # queued or running as a Slurm job: not queued here too

    remote = active_on_slurm(setting)
    if remote is not None:
        return {**entry, "action": f"already {remote['state']}", "job_id": None, "executor": "slurm", "slurm_job_id": remote["slurm_job_id"]}
    if not rerun and is_done(plan):
        return {**entry, "action": "skipped", "job_id": None}
    job_id = queue.insert(setting.experiment.name, setting.name, plan.resolved, plan.hash, env,
                          executor=executor, stop_on_failure=stop_on_failure, batch=batch)
    _write_waiting_record(setting, plan, job_id, "queued", executor=executor)
    return {**entry, "action": "queued", "job_id": job_id}


def _write_waiting_record(setting: Setting, plan_or_job, job_id: int, state: str, reason: str | None = None,
                          executor: str | None = None) -> None:
    """A record for a job that has not started: `queued`, or `cancelled` before it started."""
    previous = records.read_record(setting)
    attempt = records.next_attempt(previous)
    history = records.history_after(previous)
    rec = {
        "experiment": setting.experiment.name, "setting": setting.name, "state": state,
        "attempt": attempt,
        "executor": executor or (plan_or_job.get("executor") if isinstance(plan_or_job, dict) else None) or "local",
        "job_id": job_id, "exit_code": None, "signal": None,
        "queued_at": records.now_iso(), "started_at": None, "ended_at": None, "duration_s": None,
        "metrics": {}, "history": history,
    }
    if isinstance(plan_or_job, Planned):
        rec.update(command=plan_or_job.template, argv=plan_or_job.argv, settings=plan_or_job.resolved, settings_hash=plan_or_job.hash)
    else:
        import json

        rec.update(settings=json.loads(plan_or_job["settings"]), settings_hash=plan_or_job["settings_hash"], queued_at=plan_or_job["queued_at"])
    if reason:
        rec["reason"] = reason
    records.write_record(setting, rec)


def start_executor(workspace, executor: str, env: dict) -> None:
    """Make sure someone runs the queued jobs of `executor`."""
    if executor == "local":
        from lab.runs.local.runner import ensure_runner

        ensure_runner(workspace, env)
    else:
        raise BadInput(f"unknown executor {executor!r}")


# -- waiting ---------------------------------------------------------------------------------------------


def wait(workspace, job_ids: list[int], on_progress=None, poll: float = 0.2) -> list[dict]:
    """Block until the jobs end; return their queue rows. `on_progress(jobs, live)` is called after each poll
    (`live`: the latest metrics row of the running job, or None).

    If the runner dies meanwhile, it is recovered and restarted, unless the queue was stopped (`lab stop`,
    `--stop-on-failure`): then waiting ends with the remaining jobs still queued.
    """
    from lab.runs.local.runner import ensure_runner, job_setting, runner_alive

    queue = Queue(workspace.state_dir)
    last_check = time.monotonic()
    misses = 0
    try:
        while True:
            jobs = [queue.job(i) for i in job_ids]
            jobs = [j for j in jobs if j is not None]
            running = next((j for j in jobs if j["state"] == "running"), None)
            live = None
            if running is not None:
                live = latest_metrics(records.metrics_path(job_setting(workspace, running)))
            if on_progress is not None:
                on_progress(jobs, live)
            pending = [j for j in jobs if j["state"] in ("queued", "running")]
            if not pending:
                return jobs
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                if runner_alive(workspace.state_dir):
                    misses = 0
                elif queue.get_flag("stop"):
                    return jobs
                else:
                    # Twice in a row, so that a runner still starting up is not taken for a dead one.
                    misses += 1
                    if misses >= 2:
                        ensure_runner(workspace)  # recovers a crashed runner's job and starts a new runner
                        misses = 0
            time.sleep(poll)
    finally:
        queue.close()


def latest_metrics(path) -> dict | None:
    """The last metrics values of a running job (read from the end of its metrics file), or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    from lab.core.fsutil import json_objects

    lines = tail.splitlines()[1:] if size > 65536 else tail.splitlines()  # the first may be cut
    return records.final_metrics(list(json_objects(lines))) or None


# -- stop and cancel -------------------------------------------------------------------------------------


def stop(workspace, now: bool = False, grace: float = 10.0) -> dict:
    """Stop the queue: the runner starts no other job. With `now`, also end the running job (SIGTERM to its
    process group, SIGKILL after `grace` seconds) and record it `cancelled`.
    Returns `{"runner": pid or None, "running": [EXP/SETTING...], "cancelled": [...], "queued": n}`.

    Slurm jobs (`lab.slurmqueue`): the ones not started yet are cancelled (scancel), and with `now` the running
    ones too; they are listed in `cancelled` and in `slurm_cancelled`.
    """
    result = _stop_local(workspace, now=now, grace=grace)
    from lab.runs.slurm.executor import cancel as slurm_cancel

    gone = [f"{r['experiment']}/{r['setting']}" for r in slurm_cancel(workspace, running=now) if r.get("state") == "cancelled"]
    result["cancelled"] = result["cancelled"] + gone
    result["slurm_cancelled"] = gone
    return result


def _stop_local(workspace, now: bool = False, grace: float = 10.0) -> dict:
    from lab.core import process
    from lab.runs.local.runner import job_setting, recover_if_needed, runner_pid

    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return {"runner": None, "running": [], "cancelled": [], "queued": 0}
    try:
        with queue.transaction():
            queue.set_flag("stop", f"lab stop at {records.now_iso()}")
        running = queue.jobs(("running",), executor="local")
        cancelled = []
        if now:
            for job in running:
                with queue.transaction():
                    queue.request_cancel(job["id"])
                # The runner records the job as cancelled once it has reaped it: wait for that, signalling the
                # group as soon as it is known (or recovering the job ourselves if no runner is left).
                signalled = False
                deadline = time.monotonic() + grace + 30
                while time.monotonic() < deadline:
                    row = queue.job(job["id"])
                    if row is None or row["state"] != "running":
                        break
                    if not signalled and row["pgid"] and process.is_our_group(row["pgid"], row["proc_start"], row["boot_id"]):
                        process.terminate_group(row["pgid"], grace)
                        signalled = True
                    if not runner_pid(workspace.state_dir):
                        recover_if_needed(workspace)
                    time.sleep(0.02)
                cancelled.append(job_setting(workspace, job).id)
        queued = len(queue.jobs(("queued",), executor="local"))
        return {
            "runner": runner_pid(workspace.state_dir),
            "running": [job_setting(workspace, j).id for j in running],
            "cancelled": cancelled,
            "queued": queued,
        }
    finally:
        queue.close()


def cancel(workspace, targets: list[str]) -> dict:
    """Remove the queued jobs of the targets (`EXP` or `EXP/SETTING`); their records say `cancelled`.
    Running jobs are left alone (`lab stop --now` ends them).
    Returns `{"cancelled": [EXP/SETTING...], "running": [EXP/SETTING...]}`.

    Slurm jobs of the targets are cancelled through scancel, queued or running (`lab.slurmqueue`); they are
    listed in `cancelled` (and in `slurm_cancelled`).
    """
    result = _cancel_local(workspace, targets)
    from lab.runs.slurm.executor import cancel as slurm_cancel

    gone = [f"{r['experiment']}/{r['setting']}" for r in slurm_cancel(workspace, targets=targets) if r.get("state") == "cancelled"]
    result["cancelled"] = result["cancelled"] + gone
    result["slurm_cancelled"] = gone
    return result


def _cancel_local(workspace, targets: list[str]) -> dict:
    from lab.core.settings import parse_target

    wanted = [parse_target(target) for target in targets]

    def matches(job):
        return any(job["experiment"] == e and (s is None or job["setting"] == s) for e, s in wanted)

    queue = Queue.open_existing(workspace.state_dir)
    jobs = [j for j in queue.jobs(("queued", "running")) if matches(j)] if queue is not None else []
    for exp_name, _ in wanted:
        if not any(j["experiment"] == exp_name for j in jobs) and not (workspace.experiments_dir / exp_name).is_dir():
            if queue is not None:
                queue.close()
            raise BadInput(f"no experiment {exp_name!r} in {workspace.experiments_dir}")
    result = {"cancelled": [], "running": [f"{j['experiment']}/{j['setting']}" for j in jobs if j["state"] == "running"]}
    if queue is None:
        return result
    from lab.runs.local.runner import job_setting

    try:
        with queue.transaction():
            for job in jobs:
                if job["state"] == "queued" and queue.cancel_queued(job["id"]):
                    setting = job_setting(workspace, job)
                    _write_waiting_record(setting, job, job["id"], "cancelled", reason="cancelled by lab cancel before it started")
                    result["cancelled"].append(setting.id)
    finally:
        queue.close()
    return result


def follow_state(workspace, setting: Setting) -> bool:
    """Whether the setting still has a queued or running job (so `lab logs -f` keeps following)."""
    from lab.runs.slurm.executor import active_on_slurm

    if active_on_slurm(setting) is not None:
        return True
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return False
    try:
        return queue.active(setting.experiment.name, setting.name) is not None
    finally:
        queue.close()


__all__ = ["Planned", "check", "submit", "wait", "stop", "cancel", "latest_metrics", "LabError"]
