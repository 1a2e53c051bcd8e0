"""Queueing and steering runs: what `lab run`, `lab stop`, `lab cancel` and `lab run --wait` do.

`submit` checks every target first (settings resolve, the command template is valid and its program exists,
lab's own training program accepts the keys) and queues nothing if one is bad. Then, in one queue
transaction, each setting is queued unless a job for it is already queued or running, or its last run
succeeded with the same resolved settings and the same command (`rerun` forces it). The check of the run
record happens inside the same transaction as the insert, and the runner writes a finished record before it
marks the job done, so concurrent `lab run`s can never run a setting twice.

A queued setting gets a record in state `queued` (the previous record moves into its history), so the files
alone tell what is waiting; `lab cancel` turns it into `cancelled`.

Executors (`lab.runs.executor`): each setting goes to its executor by name (`local` or `slurm`), imported only
when a setting or a run of the lab needs it; `stop`, `cancel` and `wait` go through the same interface, so no
executor is special-cased here.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from lab.runs import record as records
from lab.core.command import build_argv, is_default_program, template_for
from lab.errors import BadInput, BadInputs, LabError
from lab.core.settings import Setting, select, settings_hash

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace


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


def check(workspace: Workspace, targets: list[str], env: dict | None = None) -> list[Planned]:
    """Resolve and check every setting of the targets; raise BadInput naming the bad one, or BadInputs naming
    every bad one, one line each."""
    from lab.core.keys import check_config, check_report

    settings = select(workspace, targets)
    check_config(workspace.config, workspace.root / "lab.yaml")
    from lab.runs.code import experiment_patterns

    for exp in dict.fromkeys(s.experiment for s in settings):
        meta = exp.meta()
        check_report(meta, exp.report_path)  # `comand:` would run the default program instead
        experiment_patterns(exp, meta)  # a bad `code:` is bad input now, not a run without its code recorded
    planned, errors = [], []
    for setting in settings:
        try:
            planned.append(check_setting(setting, env))
        except BadInput as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise BadInput(errors[0] + " (nothing was queued)")
    if errors:  # every bad setting, one line each
        raise BadInputs([*errors, f"{len(errors)} of {len(settings)} settings are bad; nothing was queued"])
    return planned


def check_setting(setting: Setting, env: dict | None = None) -> Planned:
    resolved = setting.resolve()
    template = template_for(setting)
    argv = build_argv(setting, records.resolved_settings_path(setting), template, resolved=resolved)
    from lab.runs.capture.patterns import options_for

    options_for(setting.experiment)  # a malformed `capture:` (a bad pattern) is refused before anything is queued
    program = argv[0]
    if os.sep not in program:
        path = (env if env is not None else os.environ).get("PATH", os.defpath)
        if shutil.which(program, path=path) is None:
            raise BadInput(f"{setting.experiment.report_path}: command: program {program!r} not found on PATH")
    elif not os.access(program if os.path.isabs(program) else setting.experiment.workspace.root / program, os.X_OK):
        raise BadInput(f"{setting.experiment.report_path}: command: {program!r} is not an executable file")
    from lab.runs.code import missing_program

    script = missing_program(setting.experiment.workspace.root, argv)
    if script is not None:
        raise BadInput(f"{setting.experiment.report_path}: command: {script!r} does not exist "
                       f"(paths are relative to the lab root, {setting.experiment.workspace.root})")
    if is_default_program(template):
        _require_training_stack(setting)
        validate = _train_validator()
        if validate is not None:
            try:
                validate(resolved, setting.where(), experiment_dir=setting.experiment.dir)  # paths checked too
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


def is_done(plan: Planned) -> bool:
    """Whether the setting's last run succeeded with the same resolved settings and command (`record.should_run`)."""
    return records.should_run(plan.setting, plan.hash, plan.template)[0] == "skipped"


def submit(workspace: Workspace, targets: list[str], *, rerun: bool = False, stop_on_failure: bool = False,
           env: dict | None = None, executor: str | None = None, parallel: bool = False) -> list[dict]:
    """Check and queue the targets' settings, then make sure they run. Returns one entry per setting:
    `{"id", "experiment", "setting", "action" (queued | skipped | already queued | already running), "executor",
    "job_id", "log"}` (Slurm entries add `slurm_job_id`). With no targets, resumes the queue (after `lab stop`).

    `executor` (`local` or `slurm`; None: each experiment's configured one) picks who runs them.
    """
    from lab.runs.executor import executor_name, get

    env = dict(os.environ if env is None else env)
    planned = check(workspace, targets, env) if targets else []
    groups: dict[str, list[Planned]] = {}
    for plan in planned:
        groups.setdefault(executor_name(plan.setting, executor), []).append(plan)
    if not planned:
        groups["local"] = []  # resume the local queue
    _check_lanes_and_notify(workspace, groups.get("local") or [], env)
    results: list[dict] = []
    for name, plans in groups.items():
        results += get(name).submit(workspace, plans, rerun=rerun, stop_on_failure=stop_on_failure, env=env, parallel=parallel)
    order = {p.setting.id: i for i, p in enumerate(planned)}
    results.sort(key=lambda r: order.get(r["id"], 0))
    return results


def _check_lanes_and_notify(workspace: Workspace, local: list[Planned], env: dict) -> None:
    """Before anything is queued: lab.yaml's lanes and `notify:` are well formed, and every local setting fits on
    the lanes a runner started from this environment would have (one BadInput line otherwise)."""
    from lab.runs import notify
    from lab.runs import gpus

    notify.config_for(workspace)
    lanes = gpus.lanes_for(workspace, env)
    for plan in local:
        gpus.check_fits(plan.setting, lanes)


# -- waiting ---------------------------------------------------------------------------------------------


def wait(workspace: Workspace, entries: list[dict], on_progress=None, poll: float = 0.2) -> list[dict]:
    """Block until the runs of `submit`'s entries end, on whatever executors; return their views (see
    `lab.runs.executor.Executor.wait`). `on_progress(views)` is called after each poll. Waiting ends early, with
    jobs still queued, when the local queue was stopped (`lab stop`, `--stop-on-failure`)."""
    from lab.runs.executor import get

    by_executor: dict[str, list[dict]] = {}
    for e in entries:
        by_executor.setdefault(e.get("executor") or "local", []).append(e)
    while True:
        views = []
        for name, mine in by_executor.items():
            views += get(name).wait(workspace, mine)
        if on_progress is not None:
            on_progress(views)
        if all(v["state"] not in records.ACTIVE or v.get("held") for v in views):
            return views
        time.sleep(poll)


latest_metrics = records.latest_metrics


# -- stop and cancel -------------------------------------------------------------------------------------


def stop(workspace: Workspace, now: bool = False, grace: float = 10.0) -> dict:
    """Stop the queue: no other job starts. With `now`, also end the running jobs (SIGTERM to their process
    group, SIGKILL after `grace` seconds; Slurm: scancel) and record them `cancelled`.
    Returns `{"runner": pid or None, "running": [EXP/SETTING...], "cancelled": [...], "ended": {EXP/SETTING: state},
    "queued": n}`: `ended` are the running jobs whose program ended on its own before `now` reached it. What it
    says is what happens: no queued job starts once the queue is stopped (`Queue.claim`).
    """
    import math

    try:
        grace = float(grace)
    except (TypeError, ValueError):
        raise BadInput(f"--grace must be a number of seconds, not {grace!r}") from None
    if not math.isfinite(grace) or grace < 0:
        raise BadInput(f"--grace must be a finite number of seconds, 0 or more, not {grace}")
    from lab.runs.executor import get, in_use

    result = {"runner": None, "running": [], "cancelled": [], "ended": {}, "queued": 0}
    for name in in_use(workspace):
        got = get(name).stop(workspace, now=now, grace=grace)
        result["runner"] = result["runner"] or got.get("runner")
        for key in ("running", "cancelled"):
            result[key] += got.get(key, [])
        result["ended"].update(got.get("ended") or {})
        result["queued"] += got.get("queued", 0)
        if name != "local":
            result[f"{name}_cancelled"] = got.get("cancelled", [])
    return result


def cancel(workspace: Workspace, targets: list[str]) -> dict:
    """Remove the queued jobs of the targets (`EXP` or `EXP/SETTING`); their records say `cancelled`.
    Running local jobs are left alone (`lab stop --now` ends them); Slurm jobs are cancelled, queued or running.
    Returns `{"cancelled": [EXP/SETTING...], "running": [EXP/SETTING...]}`.
    """
    from lab.core.settings import parse_target
    from lab.runs.executor import get, in_use

    for target in targets:
        exp_name, _ = parse_target(target)
        if not (workspace.experiments_dir / exp_name).is_dir():
            raise BadInput(f"no experiment {exp_name!r} in {workspace.experiments_dir}")
    result = {"cancelled": [], "running": []}
    for name in in_use(workspace):
        got = get(name).cancel(workspace, targets)
        result["cancelled"] += got.get("cancelled", [])
        result["running"] += got.get("running", [])
        if name != "local":
            result[f"{name}_cancelled"] = got.get("cancelled", [])
    return result


def follow_state(workspace: Workspace, setting: Setting) -> bool:
    """Whether the setting still has a queued or running job (so `lab logs -f` keeps following)."""
    from lab.runs.executor import get, in_use

    return any(get(name).active(workspace, [setting]) for name in in_use(workspace))


__all__ = ["Planned", "check", "submit", "wait", "stop", "cancel", "latest_metrics", "LabError"]
