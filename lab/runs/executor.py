"""The executor interface: who runs a lab's jobs, chosen by name and imported only when needed.

An executor is a module (`lab.runs.local.executor`, `lab.runs.slurm.executor`) whose `EXECUTOR` object has:
- `submit(workspace, plans, *, rerun, stop_on_failure, env, parallel) -> [entry]`: queue checked settings
  (`lab.runs.control.Planned`), each decided by `lab.runs.control.decide` (the one skip decision), and make sure
  they run; one entry a setting (`entry()`);
- `active(workspace, settings=None) -> [record-like dict]`: its queued and running runs (of `settings`);
- `reconcile(workspace, settings=None) -> [dict]`: bring records up to date with reality (local: crash recovery,
  answering what it settled; Slurm: squeue/sacct, answering the records of its active runs as Slurm sees them);
- `stop(workspace, now, grace) -> {"runner", "running", "cancelled", "queued"}`;
- `cancel(workspace, targets) -> {"cancelled", "running"}`;
- `wait(workspace, entries) -> [view]`: one look at the runs of `submit`'s entries: `{"id", "experiment",
  "setting", "executor", "state", "exit_code", "signal", "reason", "progress", "started_at", "held"}` (`held`: still
  queued, but nothing will run it until the next `lab run`). `lab.runs.control.wait` is the one loop over them.

The modules are found by name (`MODULES`), so this module imports neither, and `lab status` on a lab that has
never used Slurm imports no Slurm code (`in_use`).
"""

from __future__ import annotations

import importlib

from lab.errors import BadInput

MODULES = {"local": "lab.runs.local.executor", "slurm": "lab.runs.slurm.executor"}
NAMES = tuple(MODULES)


def get(name: str):
    """The executor called `name`, imported now."""
    if name not in MODULES:
        raise BadInput(f"unknown executor {name!r} (use one of: {', '.join(NAMES)})")
    return importlib.import_module(MODULES[name]).EXECUTOR


def in_use(workspace) -> list[str]:
    """The executors this lab has used: local always; Slurm once it has submitted a job (`.lab/slurm/`)."""
    return ["local", *(["slurm"] if (workspace.state_dir / "slurm").is_dir() else [])]


def executor_name(setting, on: str | None = None) -> str:
    """Where a setting runs: `on` if given, else `executor` in the report's front matter, else in lab.yaml, else local."""
    if on is not None:
        value, where = on, "--on"
    else:
        exp = setting.experiment
        meta = exp.meta()
        if "executor" in meta:
            value, where = meta["executor"], f"{exp.report_path}: executor"
        else:
            value, where = exp.workspace.config.get("executor", "local"), f"{exp.workspace.root / 'lab.yaml'}: executor"
    if value not in MODULES:
        raise BadInput(f"{where}: unknown executor {value!r} (use one of: {', '.join(NAMES)})")
    return value


def active_elsewhere(workspace, setting, but_not: str | None = None) -> dict | None:
    """The setting's queued or running run on an executor other than `but_not`, with `why`, or None."""
    for name in in_use(workspace):
        if name == but_not:
            continue
        for rec in get(name).active(workspace, [setting]):
            return rec
    return None


def entry(setting, action: str, executor: str, **more) -> dict:
    """One setting's line of `submit`'s answer."""
    from lab.runs import record as records

    return {"id": setting.id, "experiment": setting.experiment.name, "setting": setting.name, "action": action,
            "executor": executor, "job_id": None,
            "log": str(records.log_path(setting).relative_to(setting.experiment.workspace.root)), **more}


def decide(workspace, plan, rerun: bool, executor: str) -> tuple[str, str, dict | None]:
    """The one decision for every executor: ("run", "", None) or ("skipped" | "already queued" | "already running",
    why, the other executor's active run or None). Skipped: `record.should_run`; a setting queued or running on
    another executor is not queued here too."""
    from lab.runs import record as records

    action, why = records.should_run(plan.setting, plan.hash, plan.template, rerun)
    if action == "skipped":
        return action, why, None
    busy = active_elsewhere(workspace, plan.setting, but_not=executor)
    if busy is not None:
        return f"already {busy['state']}", busy.get("why", ""), busy
    return "run", "", None
