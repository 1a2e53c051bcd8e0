"""A lab root's Slurm jobs: submit settings, reconcile their records with Slurm, cancel them, wait for them.

The cluster side (options, batch scripts, squeue/sacct, state mapping) is in `lab.slurm`; the node side in
`lab.slurmjob`. See `lab.slurm` for the design.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from lab.runs import record as records
from lab.runs.slurm import cluster as slurm
from lab.core.command import build_argv, template_for
from lab.errors import LabError
from lab.core.fsutil import atomic_write_json, atomic_write_text
from lab.runs.attempt import record_paths
from lab.core.settings import Setting, settings_hash

POLL_S = 1.0


@dataclass
class Submitted:
    """What `submit` did with one setting: `queued` (with its job id), `skipped` or `already` (queued/running)."""

    setting: Setting
    action: str
    slurm_job_id: str | None = None
    reason: str = ""


def decide(setting: Setting, resolved: dict, rerun: bool) -> tuple[str, str]:
    """('run', '') or ('skipped'|'already', why) for one setting, as the local runner decides (`lab.runs`)."""
    rec = records.read_record(setting)
    if rec is None:
        return "run", ""
    if rec.get("state") in ("queued", "running"):
        where = f" as Slurm job {rec['slurm_job_id']}" if rec.get("slurm_job_id") else " by the local runner"
        return "already", f"already {rec['state']}{where}"
    last = _last_started(rec)
    if (not rerun and last and last.get("state") == "succeeded" and last.get("settings_hash") == settings_hash(resolved)
            and last.get("argv") == build_argv(setting, records.resolved_settings_path(setting))
            and not _inputs_changed(setting, last)):
        return "skipped", "succeeded before with the same settings and command (--rerun runs it again)"
    return "run", ""


def _inputs_changed(setting: Setting, last: dict) -> bool:  # issue 18 hook: stale runs run again
    from lab.runs.inputs import changed_inputs

    return bool(changed_inputs(setting.experiment.workspace.root, last))


def _last_started(record: dict) -> dict | None:
    """The latest attempt that actually started (a job cancelled while queued is not a run)."""
    for rec in [record, *reversed(record.get("history", []))]:
        if rec.get("started_at"):
            return rec
    return None


def active_on_slurm(setting: Setting) -> dict | None:
    """The setting's record when it is queued or running as a Slurm job (so the local runner does not queue it too)."""
    rec = records.read_record(setting)
    if rec and rec.get("executor") == "slurm" and rec.get("state") in ("queued", "running") and rec.get("slurm_job_id"):
        return rec
    return None


def _local_active(workspace, setting: Setting) -> dict | None:
    """The local runner's queued or running job for the setting, if it has one."""
    try:
        from lab.runs.local.queue import Queue
    except ImportError:
        return None
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return None
    try:
        return queue.active(setting.experiment.name, setting.name)
    finally:
        queue.close()


def submit_planned(workspace, plans, rerun: bool = False, stop_on_failure: bool = False, parallel: bool = False,
                   env: dict | None = None) -> list[dict]:
    """`lab.runs.submit`'s Slurm branch: submit checked plans, answer in the local runner's result format."""
    done = submit(workspace, [(p.setting, p.resolved) for p in plans], parallel=parallel, rerun=rerun,
                  stop_on_failure=stop_on_failure, env=env)
    out = []
    for d in done:
        s = d.setting
        action = d.action if d.action != "already" else d.reason.split(" as ")[0].split(" by ")[0]
        out.append({"id": s.id, "experiment": s.experiment.name, "setting": s.name, "action": action, "job_id": None,
                    "executor": "slurm", "slurm_job_id": d.slurm_job_id, "reason": d.reason,
                    "log": str(records.log_path(s).relative_to(workspace.root))})
    return out


def queued_record(setting: Setting, resolved: dict, attempt: int, job_id: str, previous: dict | None) -> dict:
    """The record of a submitted job that has not started; the previous run moves into its history."""
    history = records.history_after(previous)
    return {
        "experiment": setting.experiment.name,
        "setting": setting.name,
        "state": "queued",
        "attempt": attempt,
        "executor": "slurm",
        "slurm_job_id": job_id,
        "queued_at": records.now_iso(),
        "exit_code": None,
        "signal": None,
        "started_at": None,
        "ended_at": None,
        "duration_s": None,
        "command": template_for(setting),
        "argv": build_argv(setting, records.resolved_settings_path(setting)),
        "settings": resolved,
        "settings_hash": settings_hash(resolved),
        **record_paths(setting),
        "metrics": {},
        "history": history,
    }


def _job_id(stdout: str) -> str:
    job_id = stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise LabError(f"sbatch answered {stdout.strip()!r}, not a job id")
    return job_id


def _sbatch(workspace, tasks: list[tuple[Setting, dict, int]], options: dict, dependency: str | None,
            array: bool, kill_on_invalid_dep: bool, env: dict | None = None) -> list[str]:
    """Submit one held job (or a held job array) running `tasks`; return the job id of each task."""
    d = slurm.state_dir(workspace)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    spec_path = d / "jobs" / f"{name}.json"
    script_path = d / "jobs" / f"{name}.sh"
    (d / "out").mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec_path, {
        "root": str(workspace.root),
        "array": array,
        "tasks": [{"experiment": s.experiment.name, "setting": s.name, "settings_file": str(s.path.relative_to(s.experiment.dir)),
                   "attempt": attempt, "resolved": resolved} for s, resolved, attempt in tasks],
    })
    atomic_write_text(script_path, slurm.batch_script(workspace.root, spec_path, options))
    first = tasks[0][0]
    label = f"lab:{first.id}" if not array else f"lab:{first.experiment.name}[{len(tasks)}]"
    args = ["sbatch", "--parsable", "--hold", f"--job-name={label}", f"--chdir={workspace.root}",
            f"--output={d / 'out' / ('%A_%a.out' if array else '%j.out')}", "--open-mode=append"]
    if dependency:
        args.append(f"--dependency={dependency}")
        if kill_on_invalid_dep:
            args.append("--kill-on-invalid-dep=yes")
    if array:
        limit = f"%{options['max_parallel']}" if options.get("max_parallel") else ""
        args.append(f"--array=0-{len(tasks) - 1}{limit}")
    args.append(str(script_path))
    job_id = _job_id(slurm._tool(args, env=env).stdout)  # the job gets this environment (--export=ALL)
    return [f"{job_id}_{i}" for i in range(len(tasks))] if array else [job_id]


def _chain_tail(workspace) -> str | None:
    """The last job of the lab root's one-after-another chain, if Slurm still has it queued or running."""
    path = slurm.state_dir(workspace) / "chain"
    try:
        tail = path.read_text().strip()
    except FileNotFoundError:
        return None
    info = slurm.query([tail]).get(tail) if tail else None
    return tail if info and slurm.lab_state(info["state"])[0] in ("queued", "running") else None


def submit(workspace, chosen: list[tuple[Setting, dict]], parallel: bool = False, rerun: bool = False,
           stop_on_failure: bool = False, env: dict | None = None) -> list[Submitted]:
    """Submit resolved settings as Slurm jobs: one after another (after the lab root's earlier chain), or at once.

    `chosen` is (setting, resolved settings), all checked already. Nothing is written if a submission fails.
    """
    options = {s.experiment.name: slurm.options_for(s.experiment) for s, _ in chosen}
    reason = slurm.available()
    if reason:
        raise LabError(f"cannot submit to Slurm: {reason}")
    with slurm.locked(workspace):
        _refresh_locked(workspace, [s for s, _ in chosen])  # a job that ended unrecorded is not "already queued"
        results: list[Submitted] = []
        todo: list[tuple[Setting, dict, int, dict | None]] = []
        for setting, resolved in chosen:
            action, why = decide(setting, resolved, rerun)
            local = _local_active(workspace, setting) if action == "run" else None
            if local is not None:
                action, why = "already", f"already {local['state']} by the local runner"
            if action != "run":
                rec = records.read_record(setting) or {}
                results.append(Submitted(setting, action, rec.get("slurm_job_id"), why))
                continue
            previous = records.read_record(setting)
            todo.append((setting, resolved, records.next_attempt(previous), previous))
            results.append(Submitted(setting, "queued"))
        if not todo:
            return results
        ids: list[str] = []
        written: list[tuple[Setting, dict | None]] = []
        by_setting: dict[str, str] = {}
        try:
            if parallel:
                groups: dict[str, list] = {}
                for item in todo:  # one array per distinct set of options
                    key = repr(sorted(options[item[0].experiment.name].items()))
                    groups.setdefault(key, []).append(item)
                for group in groups.values():
                    opts = options[group[0][0].experiment.name]
                    ids += _sbatch(workspace, [(s, r, a) for s, r, a, _ in group], opts, None, array=True,
                                   kill_on_invalid_dep=False, env=env)
                order = [item for group in groups.values() for item in group]
            else:
                prev = _chain_tail(workspace)
                kind = "afterok" if stop_on_failure else "afterany"
                for setting, resolved, attempt, _ in todo:
                    dep = f"{kind}:{prev}" if prev else None
                    [job] = _sbatch(workspace, [(setting, resolved, attempt)], options[setting.experiment.name], dep,
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
            slurm._tool(["scontrol", "release", ",".join(sorted({j.split("_")[0] for j in ids}))])
        except BaseException:
            slurm.scancel(sorted({j.split("_")[0] for j in ids}))
            for setting, previous in written:  # put the records back as they were
                if previous is None:
                    records.record_path(setting).unlink(missing_ok=True)
                else:
                    records.write_record(setting, previous)
            raise
        for r in results:
            if r.action == "queued":
                r.slurm_job_id = by_setting[r.setting.id]
        return results


def refresh(workspace, settings: list[Setting] | None = None) -> list[dict]:
    """Reconcile the records of active Slurm runs with Slurm; return those records as Slurm sees them now.

    Writes only what the job could not write itself (it ended before starting, or was killed); a job Slurm has
    started but that has not written `running` yet is shown `running` without writing.
    """
    if settings is None:
        settings = active_settings(workspace)
    with slurm.locked(workspace):
        return _refresh_locked(workspace, settings)


def _refresh_locked(workspace, settings) -> list[dict]:
    active = slurm.active_records(workspace, settings)
    if not active:
        return []
    info = slurm.query([rec["slurm_job_id"] for _, rec in active])
    shown = []
    for setting, rec in active:
        got = info.get(rec["slurm_job_id"])
        if got is None:
            shown.append(rec)
            continue
        state, reason = slurm.lab_state(got["state"])
        rec = dict(rec, slurm_state=got["state"].split()[0], slurm_reason=got.get("reason"))
        if state == "queued" and rec["state"] == "running":
            rec = _requeued(setting, rec, "Slurm requeued the job")
        elif state == "running":
            rec["state"] = "running"
        elif state in ("succeeded", "failed", "cancelled", "interrupted"):
            current = records.read_record(setting)
            if current is None or current.get("state") not in ("queued", "running") or current.get("slurm_job_id") != rec["slurm_job_id"]:
                shown.append(current or rec)
                continue
            rec = _ended(setting, current, got, state, reason)
        shown.append(rec)
    return shown


def _ended(setting: Setting, rec: dict, got: dict, state: str, reason: str | None) -> dict:
    """Record the end of a job that could not record it itself."""
    rec = dict(rec)
    rec["state"] = state
    rec["ended_at"] = records.now_iso()
    if rec.get("exit_code") is None and got.get("exit_code") is not None and state != "cancelled":
        rec["exit_code"] = got["exit_code"]
    if state == "failed" and rec.get("exit_code") not in (None, 0) and got["state"].startswith("FAILED"):
        reason = f"exit code {rec['exit_code']}"
    out = f".lab/slurm/out/{rec['slurm_job_id']}.out"
    if "DependencyNeverSatisfied" in (got.get("reason") or ""):
        reason = "not started: the job before it did not succeed (--stop-on-failure)"
    elif state == "cancelled" and not rec.get("started_at"):
        reason = "cancelled before it started"
    elif state == "failed" and not rec.get("started_at"):
        reason = f"{reason}; lab did not start on the node (see {out})"
    rec["reason"] = f"{reason} (Slurm state {got['state']})"
    rec["metrics"] = records.final_metrics(records.read_metrics(records.metrics_path(setting)))
    rec.pop("pid", None)
    rec.pop("pgid", None)
    records.write_record(setting, rec)
    if state == "interrupted":
        return _resubmit(setting, rec)
    return rec


def _requeued(setting: Setting, rec: dict, reason: str) -> dict:
    """The running attempt died and Slurm queued the same job again: keep it as interrupted, show it queued."""
    rec = dict(rec, state="interrupted", ended_at=records.now_iso(), reason=reason)
    rec.pop("pid", None)
    rec.pop("pgid", None)
    new = queued_record(setting, rec["settings"], records.next_attempt(rec), rec["slurm_job_id"], rec)
    records.write_record(setting, new)
    return new


def _resubmit(setting: Setting, rec: dict) -> dict:
    """Queue an interrupted run again as a new Slurm job (Slurm did not requeue it)."""
    ws = setting.experiment.workspace
    [job_id] = _sbatch(ws, [(setting, rec["settings"], records.next_attempt(rec))], slurm.options_for(setting.experiment), None,
                       array=False, kill_on_invalid_dep=False)
    new = queued_record(setting, rec["settings"], records.next_attempt(rec), job_id, rec)
    records.write_record(setting, new)
    slurm._tool(["scontrol", "release", job_id])
    return new


def active_settings(workspace, targets: list[str] | None = None) -> list[Setting]:
    """The settings with a queued or running Slurm job, found through `lab status`'s summary cache (no full scan)."""
    from lab.runs.local.runner import job_setting
    from lab.runs.status import _parse_targets, _records, _slurm_active, _wanted

    parsed = _parse_targets(targets)
    return [job_setting(workspace, {"experiment": exp, "setting": name})
            for exp, name in _slurm_active(_records(workspace, parsed)) if _wanted(parsed, exp, name)]


def cancel(workspace, settings: list[Setting] | None = None, running: bool = True, grace_s: float = 60.0,
           targets: list[str] | None = None) -> list[dict]:
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
        chosen = [rec for rec in active if rec["state"] == "queued" or (running and rec["state"] == "running")]
        slurm.scancel(sorted({rec["slurm_job_id"] for rec in chosen}))
        by_id = {}
        for rec in chosen:
            setting = slurm._setting_of(workspace.experiment(rec["experiment"]), rec["setting"], rec)
            by_id[rec["slurm_job_id"]] = setting
            current = records.read_record(setting)
            if current and current.get("state") == "queued" and current.get("slurm_job_id") == rec["slurm_job_id"] and rec["state"] == "queued":
                current.update(state="cancelled", ended_at=records.now_iso(), reason="cancelled before it started")
                records.write_record(setting, current)
    settings_of = list(by_id.values())
    deadline = time.monotonic() + grace_s
    while settings_of and time.monotonic() < deadline:
        if not refresh(workspace, settings_of):
            break
        time.sleep(0.3)
    return [records.read_record(s) or {} for s in settings_of]


def wait(workspace, settings: list[Setting], progress=None, poll_s: float = POLL_S) -> list[dict]:
    """Poll until none of `settings` has a queued or running Slurm job; `progress(records)` after each poll."""
    while True:
        active = refresh(workspace, settings)
        if progress is not None:
            progress([records.read_record(s) or {} for s in settings])
        if not active:
            return [records.read_record(s) or {} for s in settings]
        time.sleep(poll_s)
