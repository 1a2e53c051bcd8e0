"""The executor interface: who runs a lab's jobs, chosen by name and imported only when needed.

An executor is a module (`lab.runs.local.executor`, `lab.runs.slurm.executor`) whose `EXECUTOR` object is an
`Executor` (the Protocol below, checked by mypy where each module assigns its `EXECUTOR`):
- `submit` queues checked settings (`Plan`, such as `lab.runs.control.Planned`), each decided by `decide` (the one
  skip decision), and makes sure they run: one `SubmitEntry` a setting (`entry()`);
- `active` answers its queued and running runs (of some settings);
- `reconcile` brings records up to date with reality (local: crash recovery; Slurm: squeue/sacct) and answers the
  records it looked at (local: those it settled; Slurm: those of its active runs, as Slurm sees them);
- `stop` and `cancel` (`StopResult`, `CancelResult`);
- `wait` takes one look at the runs of `submit`'s entries (`View`; `held`: still queued, but nothing will run
  it until the next `lab run`). `lab.runs.control.wait` is the one loop over them.

The modules are found by name (`MODULES`), so this module imports neither, and `lab status` on a lab that has
never used Slurm imports no Slurm code (`in_use`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

from lab.core import layout
from lab.errors import BadInput

if TYPE_CHECKING:
    from lab.core.settings import Setting
    from lab.core.workspace import Workspace
    from lab.runs.record import Record

MODULES = {"local": "lab.runs.local.executor", "slurm": "lab.runs.slurm.executor"}
NAMES = tuple(MODULES)


class Plan(Protocol):
    """A setting checked and ready to queue (`lab.runs.control.Planned`)."""

    @property
    def setting(self) -> Setting: ...

    @property
    def resolved(self) -> dict[str, Any]: ...

    @property
    def hash(self) -> str: ...

    @property
    def template(self) -> str | None: ...

    @property
    def argv(self) -> list[str]: ...


class SubmitEntry(TypedDict):
    """One setting's line of `submit`'s answer."""

    id: str  # EXP/SETTING
    experiment: str
    setting: str
    action: str  # queued | skipped | already queued | already running
    executor: str
    job_id: int | None  # the local queue's job id
    log: str  # relative to the lab root
    slurm_job_id: NotRequired[str | None]
    reason: NotRequired[str]


class ActiveRun(TypedDict):
    """A run an executor has queued or running (`active`), with `why` for the line that says it is already there."""

    experiment: str
    setting: str
    state: str
    executor: str
    why: str
    job_id: NotRequired[int | None]
    slurm_job_id: NotRequired[str | None]


class View(TypedDict):
    """One look at a submitted run (`wait`)."""

    id: str
    experiment: str
    setting: str
    executor: str
    job_id: int | None
    state: str
    exit_code: int | None
    signal: str | int | None
    reason: str | None
    progress: dict[str, Any] | None
    started_at: str | None
    held: bool
    slurm_job_id: NotRequired[str | None]


class StopResult(TypedDict):
    runner: int | None  # the local runner's pid
    running: list[str]  # EXP/SETTING of the runs that were running
    cancelled: list[str]  # those ended and recorded cancelled (with now)
    queued: int  # jobs left queued
    ended: NotRequired[dict[str, str]]  # runs that ended on their own while the stop reached them: their result


class CancelResult(TypedDict):
    cancelled: list[str]
    running: list[str]  # running runs left alone


class Executor(Protocol):
    """Who runs a lab's jobs (see the module docstring)."""

    name: str

    def submit(self, workspace: Workspace, plans: Sequence[Plan], *, rerun: bool = False,
               stop_on_failure: bool = False, env: dict[str, str] | None = None,
               parallel: bool = False) -> list[SubmitEntry]: ...

    def active(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[ActiveRun]: ...

    def reconcile(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[Record]: ...

    def stop(self, workspace: Workspace, now: bool = False, grace: float = 10.0) -> StopResult: ...

    def cancel(self, workspace: Workspace, targets: list[str]) -> CancelResult: ...

    def wait(self, workspace: Workspace, entries: Sequence[SubmitEntry]) -> list[View]: ...


def get(name: str) -> Executor:
    """The executor called `name`, imported now."""
    if name not in MODULES:
        raise BadInput(f"unknown executor {name!r} (use one of: {', '.join(NAMES)})")
    executor: Executor = importlib.import_module(MODULES[name]).EXECUTOR
    return executor


def in_use(workspace: Workspace) -> list[str]:
    """The executors this lab has used: local always; Slurm once it has submitted a job (`.lab/slurm/`)."""
    return ["local", *(["slurm"] if (workspace.state_dir / layout.SLURM).is_dir() else [])]


def executor_name(setting: Setting, on: str | None = None) -> str:
    """Where a setting runs: `on` if given, else `executor` in the report's front matter, else in lab.yaml, else local."""
    value: object
    if on is not None:
        value, where = on, "--on"
    else:
        exp = setting.experiment
        meta = exp.meta()
        if "executor" in meta:
            value, where = meta["executor"], f"{exp.report_path}: executor"
        else:
            value, where = exp.workspace.config.get("executor", "local"), f"{exp.workspace.root / 'lab.yaml'}: executor"
    if not isinstance(value, str) or value not in MODULES:
        raise BadInput(f"{where}: unknown executor {value!r} (use one of: {', '.join(NAMES)})")
    return value


def active_elsewhere(workspace: Workspace, setting: Setting, but_not: str | None = None) -> ActiveRun | None:
    """The setting's queued or running run on an executor other than `but_not`, with `why`, or None."""
    for name in in_use(workspace):
        if name == but_not:
            continue
        for run in get(name).active(workspace, [setting]):
            return run
    return None


def entry(setting: Setting, action: str, executor: str, *, job_id: int | None = None, slurm_job_id: str | None = None,
          reason: str | None = None) -> SubmitEntry:
    """One setting's line of `submit`'s answer."""
    from lab.runs import record as records

    out: SubmitEntry = {"id": setting.id, "experiment": setting.experiment.name, "setting": setting.name,
                        "action": action, "executor": executor, "job_id": job_id,
                        "log": str(records.log_path(setting).relative_to(setting.experiment.workspace.root))}
    if slurm_job_id is not None or executor == "slurm":
        out["slurm_job_id"] = slurm_job_id
    if reason is not None:
        out["reason"] = reason
    return out


def decide(workspace: Workspace, plan: Plan, rerun: bool, executor: str) -> tuple[str, str, ActiveRun | None]:
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
