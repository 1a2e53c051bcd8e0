"""A lab root's Slurm jobs: submit settings, reconcile their records with Slurm, cancel them, wait for them.

The cluster side (options, batch scripts, squeue/sacct, state mapping) is in `lab.slurm`; the node side in
`lab.slurmjob`. See `lab.slurm` for the design.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.runs import record as records
from lab.runs import statuscache
from lab.runs.slurm import cluster as slurm
from lab.core import layout
from lab.core.command import build_argv, template_for
from lab.errors import LabError
from lab.core.fsutil import atomic_write_json, atomic_write_text
from lab.runs.executor import CancelResult, Executor, Plan, StopResult, SubmitEntry, View, ActiveRun, decide, entry
from lab.core.settings import Setting, settings_hash
from lab.runs.state import State

if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.record import Record

POLL_S = 1.0


@dataclass
class Submitted:
    """What `submit` did with one setting: `queued` (with its job id), `skipped` or `already` (queued/running)."""

    setting: Setting
    action: str
    slurm_job_id: str | None = None
    reason: str = ""


def _plan(setting: Setting, resolved: dict):
    """A checked setting in the shape `lab.runs.executor.decide` takes."""
    from types import SimpleNamespace

    return SimpleNamespace(setting=setting, resolved=resolved, hash=settings_hash(resolved), template=template_for(setting),
                           argv=build_argv(setting, records.resolved_settings_path(setting), resolved=resolved))


def active_on_slurm(setting: Setting) -> Record | None:
    """The setting's record when it is queued or running as a Slurm job (so the local runner does not queue it too)."""
    rec = records.read_record(setting)
    if rec and rec.get("executor") == "slurm" and rec.get("state") in (State.QUEUED, State.RUNNING) and rec.get("slurm_job_id"):
        return rec
    return None


def queued_record(setting: Setting, resolved: dict, attempt: int, job_id: str, previous: Record | None) -> Record:
    """The record of a submitted job that has not started (`record.queued`, the keys of every executor)."""
    rec = records.queued(setting, executor="slurm", resolved=resolved, hash_=settings_hash(resolved),
                         template=template_for(setting), argv=build_argv(setting, records.resolved_settings_path(setting), resolved=resolved),
                         extra={"slurm_job_id": job_id, "fixed_when_queued": records.FIXED_WHEN_QUEUED}, previous=previous)
    rec["attempt"] = attempt
    return rec


def _job_id(stdout: str) -> str:
    job_id = stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LabError(f"sbatch answered {stdout.strip()!r}, not a job id")
    return job_id


def _sbatch(workspace: Workspace, tasks: list[tuple[Setting, dict, int]], options: dict, dependency: str | None,
            array: bool, kill_on_invalid_dep: bool, env: dict | None = None) -> list[str]:
    """Submit one held job (or a held job array) running `tasks`; return the job id of each task."""
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    spec_path = workspace.state_dir / layout.SLURM_JOBS / f"{name}.json"
    script_path = workspace.state_dir / layout.SLURM_JOBS / f"{name}.sh"
    out_dir = workspace.state_dir / layout.SLURM_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec_path, {
        "root": str(workspace.root),
        "array": array,
        "tasks": [{"experiment": s.experiment.name, "setting": s.name, "settings_file": str(s.path.relative_to(s.experiment.dir)),
                   "attempt": attempt, "resolved": resolved, "command": template_for(s)} for s, resolved, attempt in tasks],
    })
    atomic_write_text(script_path, slurm.batch_script(workspace.root, spec_path, options))
    first = tasks[0][0]
    label = f"lab:{first.id}" if not array else f"lab:{first.experiment.name}[{len(tasks)}]"
    args = ["sbatch", "--parsable", "--hold", f"--job-name={label}", f"--chdir={workspace.root}",
            f"--output={out_dir / ('%A_%a.out' if array else '%j.out')}", "--open-mode=append"]
    if dependency:
        args.append(f"--dependency={dependency}")
        if kill_on_invalid_dep:
            args.append("--kill-on-invalid-dep=yes")
    if array:
        limit = f"%{options['max_parallel']}" if options.get("max_parallel") else ""
        args.append(f"--array=0-{len(tasks) - 1}{limit}")
    args.append(str(script_path))
    job_id = _job_id(slurm.tool(args, env=env).stdout)  # the job gets this environment (--export=ALL)
    return [f"{job_id}_{i}" for i in range(len(tasks))] if array else [job_id]


def _chain_tail(workspace: Workspace) -> str | None:
    """The last job of the lab root's one-after-another chain, if Slurm still has it queued or running."""
    path = slurm.state_dir(workspace) / "chain"
    try:
        tail = path.read_text().strip()
    except FileNotFoundError:
        return None
    info = slurm.query([tail]).get(tail) if tail else None
    return tail if info and slurm.lab_state(info["state"])[0] in (State.QUEUED, State.RUNNING) else None


def submit(workspace: Workspace, chosen: list[tuple[Setting, dict]], parallel: bool = False, rerun: bool = False,
           stop_on_failure: bool = False, env: dict | None = None) -> list[Submitted]:
    """Submit resolved settings as Slurm jobs: one after another (after the lab root's earlier chain), or at once.

    `chosen` is (setting, resolved settings), all checked already. Nothing is written if a submission fails.
    """
    options = {s.id: slurm.options_for_setting(s) for s, _ in chosen}  # gpus_per_run may differ per setting
    reason = slurm.available()
    if reason:
        raise LabError(f"cannot submit to Slurm: {reason}")
    with slurm.locked(workspace):
        _refresh_locked(workspace, [s for s, _ in chosen])  # a job that ended unrecorded is not "already queued"
        results: list[Submitted] = []
        todo: list[tuple[Setting, dict, int, Record | None]] = []
        for setting, resolved in chosen:
            rec = records.read_record(setting) or {}
            if rec.get("executor") == "slurm" and rec.get("state") in records.ACTIVE and rec.get("slurm_job_id"):
                results.append(Submitted(setting, "already", rec["slurm_job_id"], f"already {rec['state']} as Slurm job {rec['slurm_job_id']}"))
                continue
            action, why, _ = decide(workspace, _plan(setting, resolved), rerun, "slurm")
            if action != "run":
                results.append(Submitted(setting, "already" if action.startswith("already") else action, rec.get("slurm_job_id"), why or action))
                continue
            previous = records.read_record(setting)
            todo.append((setting, resolved, records.next_attempt(previous), previous))
            results.append(Submitted(setting, State.QUEUED))
        if not todo:
            return results
        ids: list[str] = []
        written: list[tuple[Setting, Record | None]] = []
        by_setting: dict[str, str] = {}
        try:
            if parallel:
                groups: dict[str, list] = {}
                for item in todo:  # one array per distinct set of options
                    key = repr(sorted(options[item[0].id].items()))
                    groups.setdefault(key, []).append(item)
                for group in groups.values():
                    opts = options[group[0][0].id]
                    ids += _sbatch(workspace, [(s, r, a) for s, r, a, _ in group], opts, None, array=True,
                                   kill_on_invalid_dep=False, env=env)
                order = [item for group in groups.values() for item in group]
            else:
                prev = _chain_tail(workspace)
                kind = "afterok" if stop_on_failure else "afterany"
                for setting, resolved, attempt, _ in todo:
                    dep = f"{kind}:{prev}" if prev else None
                    [job] = _sbatch(workspace, [(setting, resolved, attempt)], options[setting.id], dep,
                                    array=False, kill_on_invalid_dep=stop_on_failure, env=env)
                    ids.append(job)
                    prev = job
                order = todo
            for (setting, resolved, attempt, previous), job_id in zip(order, ids):
                written.append((setting, previous))
                records.write_record(setting, queued_record(setting, resolved, attempt, job_id, previous))
                by_setting[setting.id] = job_id
            if not parallel:
                atomic_write_text(slurm.state_dir(workspace) / "chain", ids[-1] + "\n")
            slurm.tool(["scontrol", "release", ",".join(sorted({j.split("_")[0] for j in ids}))])
        except BaseException:
            slurm.scancel(sorted({j.split("_")[0] for j in ids}))
            for setting, previous in written:  # put the records back as they were
                if previous is None:
                    records.record_path(setting).unlink(missing_ok=True)
                else:
                    records.write_record(setting, previous)
            raise
        for r in results:
            if r.action == State.QUEUED:
                r.slurm_job_id = by_setting[r.setting.id]
        return results


def refresh(workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[Record]:
    """Reconcile the records of active Slurm runs with Slurm; return those records as Slurm sees them now.

    Writes only what the job could not write itself (it ended before starting, or was killed); a job Slurm has
    started but that has not written `running` yet is shown `running` without writing.
    """
    if settings is None:
        settings = active_settings(workspace)
    with slurm.locked(workspace):
        return _refresh_locked(workspace, settings)


def _refresh_locked(workspace: Workspace, settings: Sequence[Setting]) -> list[Record]:
    active = slurm.active_records(workspace, settings)
    if not active:
        return []
    info = slurm.query([rec["slurm_job_id"] for _, rec in active])
    shown: list[Record] = []
    for setting, rec in active:
        got = info.get(rec["slurm_job_id"])
        if got is None:
            shown.append(rec)
            continue
        state, reason = slurm.lab_state(got["state"])
        rec = records.as_record(dict(rec, slurm_state=got["state"].split()[0], slurm_reason=got.get("reason")))
        if state == State.QUEUED and rec["state"] == State.RUNNING:
            rec = _requeued(setting, rec, "Slurm requeued the job")
        elif state == State.RUNNING:
            rec["state"] = State.RUNNING
        elif state in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.INTERRUPTED):
            current = records.read_record(setting)
            if current is None or current.get("state") not in (State.QUEUED, State.RUNNING) or current.get("slurm_job_id") != rec["slurm_job_id"]:
                shown.append(current or rec)
                continue
            rec = _ended(setting, current, got, state, reason)
        shown.append(rec)
    return shown


def _ended(setting: Setting, rec: Record, got: dict, state: str, reason: str | None) -> Record:
    """Record the end of a job that could not record it itself."""
    exit_code = rec.get("exit_code")
    if exit_code is None and got.get("exit_code") is not None and state != State.CANCELLED:
        exit_code = got["exit_code"]
    if state == State.FAILED and exit_code not in (None, 0) and got["state"].startswith("FAILED"):
        reason = f"exit code {exit_code}"
        line = records.last_error_line(records.log_path(setting))
        if line and rec.get("started_at"):
            reason += f": {line}"
    out = f"{layout.STATE}/{layout.SLURM_OUT}/{rec['slurm_job_id']}.out"
    if "DependencyNeverSatisfied" in (got.get("reason") or ""):
        reason = "not started: the job before it did not succeed (--stop-on-failure)"
    elif state == State.CANCELLED and not rec.get("started_at"):
        reason = "cancelled before it started"
    elif state == State.FAILED and not rec.get("started_at"):
        reason = f"{reason}; lab did not start on the node (see {out})"
    rec = records.settled(setting, rec, state, f"{reason} (Slurm state {got['state']})", exit_code=exit_code)
    records.write_record(setting, rec)
    if state == State.INTERRUPTED:
        return _resubmit(setting, rec)
    return rec


def _requeued(setting: Setting, rec: Record, reason: str) -> Record:
    """The running attempt died and Slurm queued the same job again: keep it as interrupted, show it queued."""
    rec = records.settled(setting, rec, State.INTERRUPTED, reason)
    new = queued_record(setting, rec["settings"], records.next_attempt(rec), rec["slurm_job_id"], rec)
    records.write_record(setting, new)
    return new


def _resubmit(setting: Setting, rec: Record) -> Record:
    """Queue an interrupted run again as a new Slurm job (Slurm did not requeue it)."""
    ws = setting.experiment.workspace
    [job_id] = _sbatch(ws, [(setting, rec["settings"], records.next_attempt(rec))], slurm.options_for_setting(setting), None,
                       array=False, kill_on_invalid_dep=False)
    new = queued_record(setting, rec["settings"], records.next_attempt(rec), job_id, rec)
    records.write_record(setting, new)
    slurm.tool(["scontrol", "release", job_id])
    return new


def drained_event(workspace: Workspace) -> dict | None:
    """The `drained` notification once the lab's Slurm jobs have all ended: a summary of the runs that ended since
    the last one (`.lab/slurm/drained` keeps when that was), or None while any is queued or running. Called by each
    job's entry point as it ends, under the Slurm lock, so two array tasks that end together send it once."""
    from lab.runs import notify

    with slurm.locked(workspace):
        runs = statuscache.summaries(workspace, "slurm")
        if any(r.get("state") in records.ACTIVE for r in runs):
            return None
        stamp = slurm.state_dir(workspace) / "drained"
        try:
            since = stamp.read_text().strip()
        except OSError:
            since = ""
        ended = [r for r in runs if (r.get("ended_at") or "") > since]
        if not ended:
            return None
        atomic_write_text(stamp, max(r.get("ended_at") or "" for r in ended) + "\n")
    summary = notify.Summary()
    for r in ended:
        summary.add(dict(r))
    return summary.event(workspace.root)


def active_settings(workspace: Workspace, targets: list[str] | None = None) -> list[Setting]:
    """The settings with a queued or running Slurm job, found through the status cache (no full scan)."""
    return [records.setting_of(workspace, exp, name) for exp, name in statuscache.active_runs(workspace, "slurm", targets)]


def cancel(workspace: Workspace, settings: list[Setting] | None = None, running: bool = True, grace_s: float = 60.0,
           targets: list[str] | None = None) -> list[Record]:
    """scancel the lab root's Slurm jobs (or those of `settings`/`targets`): queued ones, running ones if `running`.

    Jobs that never started are recorded `cancelled` at once; running ones record it themselves (their entry point
    forwards SIGTERM to the program); this waits up to `grace_s` for that. Returns the cancelled records.
    """
    if settings is None:
        settings = active_settings(workspace, targets)
        if not settings:
            return []
    with slurm.locked(workspace):
        active = _refresh_locked(workspace, settings)
        chosen = [rec for rec in active if rec["state"] == State.QUEUED or (running and rec["state"] == State.RUNNING)]
        slurm.scancel(sorted({rec["slurm_job_id"] for rec in chosen}))
        by_id = {}
        for rec in chosen:
            setting = slurm.setting_of(workspace.experiment(rec["experiment"]), rec["setting"], rec)
            by_id[rec["slurm_job_id"]] = setting
            current = records.read_record(setting)
            if current and current.get("state") == State.QUEUED and current.get("slurm_job_id") == rec["slurm_job_id"] and rec["state"] == State.QUEUED:
                records.write_record(setting, records.cancelled_before_start(current, "cancelled before it started"))
    settings_of = list(by_id.values())
    deadline = time.monotonic() + grace_s
    while settings_of and time.monotonic() < deadline:
        if not refresh(workspace, settings_of):
            break
        time.sleep(0.3)
    return [records.read_record(s) or {} for s in settings_of]


def wait(workspace: Workspace, settings: list[Setting], progress=None, poll_s: float = POLL_S) -> list[Record]:
    """Poll until none of `settings` has a queued or running Slurm job; `progress(records)` after each poll."""
    while True:
        active = refresh(workspace, settings)
        if progress is not None:
            progress([records.read_record(s) or {} for s in settings])
        if not active:
            return [records.read_record(s) or {} for s in settings]
        time.sleep(poll_s)


class SlurmExecutor:
    """The executor interface (`lab.runs.executor`) over this module."""

    name = "slurm"

    def submit(self, workspace: Workspace, plans: Sequence[Plan], *, rerun: bool = False, stop_on_failure: bool = False,
               env: dict[str, str] | None = None, parallel: bool = False) -> list[SubmitEntry]:
        done = submit(workspace, [(p.setting, p.resolved) for p in plans], parallel=parallel, rerun=rerun,
                      stop_on_failure=stop_on_failure, env=env)
        out = []
        for d in done:
            action = d.action if d.action != "already" else d.reason.split(" as ")[0].split(" by ")[0]
            out.append(entry(d.setting, action, "slurm", slurm_job_id=d.slurm_job_id, reason=d.reason))
        return out

    def active(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[ActiveRun]:
        if settings is None:
            settings = active_settings(workspace)
        out: list[ActiveRun] = []
        for setting in settings:
            rec = active_on_slurm(setting)
            if rec is not None:
                out.append({"experiment": rec.get("experiment", setting.experiment.name),
                            "setting": rec.get("setting", setting.name), "state": rec.get("state", State.QUEUED),
                            "executor": "slurm", "slurm_job_id": rec.get("slurm_job_id"),
                            "why": f"already {rec.get('state')} as Slurm job {rec.get('slurm_job_id')}"})
        return out

    def reconcile(self, workspace: Workspace, settings: Sequence[Setting] | None = None) -> list[Record]:
        return refresh(workspace, settings)

    def stop(self, workspace: Workspace, now: bool = False, grace: float = 10.0) -> StopResult:
        gone = [f"{r['experiment']}/{r['setting']}" for r in cancel(workspace, running=now) if r.get("state") == State.CANCELLED]
        return {"runner": None, "running": [], "cancelled": gone, "queued": 0}

    def cancel(self, workspace: Workspace, targets: list[str]) -> CancelResult:
        gone = [f"{r['experiment']}/{r['setting']}" for r in cancel(workspace, targets=targets) if r.get("state") == State.CANCELLED]
        return {"cancelled": gone, "running": []}

    def wait(self, workspace: Workspace, entries: Sequence[SubmitEntry]) -> list[View]:
        settings = [records.setting_of(workspace, e["experiment"], e["setting"]) for e in entries]
        refresh(workspace, settings)
        views: list[View] = []
        for e, setting in zip(entries, settings):
            rec = records.read_record(setting, strict=False) or records.as_record({})
            progress = None
            if rec.get("state") == State.RUNNING:
                progress = records.latest_metrics(records.metrics_path(setting))
            views.append({"id": e["id"], "experiment": e["experiment"], "setting": e["setting"], "executor": "slurm",
                          "slurm_job_id": rec.get("slurm_job_id") or e.get("slurm_job_id"), "job_id": None,
                          "state": rec.get("state") or State.QUEUED, "exit_code": rec.get("exit_code"), "signal": rec.get("signal"),
                          "reason": rec.get("reason"), "progress": progress, "started_at": rec.get("started_at"), "held": False})
        return views


EXECUTOR: Executor = SlurmExecutor()
