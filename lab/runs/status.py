"""What `lab status` shows: every run record of the lab (or of some targets), merged with the queue.

The records' summaries come from the status cache (`lab.runs.statuscache`). The queue then overrides what it
knows better: a job waiting in the queue shows as `queued`; the running job shows its live progress; active Slurm
runs show as Slurm sees them now. Last, a succeeded run whose recorded inputs changed since it ran shows as
`stale`, with `changed_inputs` (lab.runs.inputs: each input path is hashed once per call, through the hash cache).

Three shapes of one answer, one function each: `entries` (summaries), `entries_json` (the JSON text of that list,
joined from the cached JSON texts without decoding them: an unchanged lab costs no JSON decoding or encoding) and
`table_rows` (the table's text cells, cached too).

This module must stay light: `lab status --json` imports neither rich nor anything heavy.
"""

from __future__ import annotations

import json

from lab.core.fsutil import natural_key
from lab.runs import record as records
from lab.runs import statuscache as cache
from lab.runs.table import table_cells
from lab.runs.state import State

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.local.queue import QueueRow
    from lab.runs.record import Record
    from lab.runs.statuscache import Summary


def entries(workspace: Workspace, targets: list[str] | None = None, recover: bool = True) -> list[Summary]:
    """One summary per setting that has a record or a queued job, sorted by experiment and setting."""
    return [json.loads(e[1]) if isinstance(e, tuple) else e for e in _gather(workspace, targets, recover)]


def entries_json(workspace: Workspace, targets: list[str] | None = None, recover: bool = True) -> str:
    """The JSON text of `entries`, joined from the cached JSON texts without decoding them."""
    out = _gather(workspace, targets, recover)
    if not out:
        return "[]"
    return "[\n" + ",\n".join(e[1] if isinstance(e, tuple) else json.dumps(e, ensure_ascii=False) for e in out) + "\n]"


def table_rows(workspace: Workspace, targets: list[str] | None = None, recover: bool = True) -> list[list[str]]:
    """The rows of the `lab status` table (run, state, started, duration, exit, metrics), one per entry."""
    return [cache.cells_of(e[0]) if isinstance(e, tuple) else table_cells(e) for e in _gather(workspace, targets, recover)]


def _gather(workspace: Workspace, targets: list[str] | None, recover: bool) -> list:
    """The entries in order: cached (meta, json) pairs, and summaries where the queue or Slurm knows better."""
    from lab.errors import BadInput
    from lab.runs.local.info import active_jobs

    parsed = cache.parse_targets(targets)
    if parsed is not None:
        for exp, setting in parsed:
            if not (workspace.experiments_dir / exp).is_dir():
                workspace.experiment(exp)  # raises: no such experiment, did you mean, the experiments there are
                raise BadInput(f"no experiment {exp!r} in {workspace.experiments_dir}")
            if setting is not None and not (workspace.experiments_dir / exp / "runs" / f"{setting}.json").exists():
                from lab.core.settings import find_settings

                find_settings(workspace.experiment(exp), setting)  # raises when there is no such setting either
    jobs = active_jobs(workspace)
    if recover and any(j["state"] == State.RUNNING and j["executor"] == "local" for j in jobs):
        from lab.runs.local.recovery import recover_if_needed

        if recover_if_needed(workspace):
            jobs = active_jobs(workspace)
    blocks = cache.read(workspace, parsed)  # [(experiment, metas, jsons)], in natural order
    slurm_live: dict = {}
    if recover and cache.active_in(blocks, "slurm"):
        slurm_live = _refresh_slurm(workspace, blocks)
        blocks = cache.read(workspace, parsed)  # again: the reconciliation may have rewritten records
    by_exp: dict = {}
    for job in jobs:
        if cache.wanted(parsed, job["experiment"], job["setting"]):
            by_exp.setdefault(job["experiment"], {})[job["setting"]] = job
    known = {b[0] for b in blocks}
    if any(exp not in known for exp in by_exp):
        blocks += [(exp, [], []) for exp in by_exp if exp not in known]
        blocks.sort(key=lambda b: natural_key(b[0]))
    out: list = []  # cached (meta, json) pairs, and dicts where the queue knows better
    waits = _gpu_waits(workspace, jobs)
    for exp, metas, jsons in blocks:
        exp_jobs = by_exp.get(exp)
        exp_slurm = slurm_live.get(exp) if slurm_live else None
        filtered = parsed is not None and any(e == exp and s is not None for e, s in parsed)
        if not exp_jobs and not exp_slurm and not filtered:
            out.extend(zip(metas, jsons))  # the fast path: nothing is split or decoded
            continue
        items: dict[str, tuple[str, str] | Summary] = {cache.name_of(meta): (meta, text) for meta, text in zip(metas, jsons)}
        if filtered:
            items = {name: item for name, item in items.items() if cache.wanted(parsed, exp, name)}
        for name, job in (exp_jobs or {}).items():
            item = items.get(name)
            summary = json.loads(item[1]) if isinstance(item, tuple) else cache.summarize({}, exp, name)
            items[name] = _merge_job(workspace, summary, job, waits)
        for name, rec in (exp_slurm or {}).items():  # Slurm jobs as Slurm sees them now
            if cache.wanted(parsed, exp, name):
                items[name] = _slurm_entry(workspace, rec)
        out.extend(items[name] for name in sorted(items, key=natural_key))
    return _mark_stale(workspace, out)


def _mark_stale(workspace: Workspace, out: list) -> list:
    """Cached entries of succeeded runs whose recorded inputs changed become `stale` summaries."""
    checker = None
    answers: dict[str, list] = {}  # runs of one experiment mostly share their inputs: one check per distinct set
    for i, e in enumerate(out):
        if not isinstance(e, tuple):
            continue
        token = cache.inputs_of(e[0])
        if not token:
            continue
        if checker is None:
            from lab.runs.inputs import Checker

            checker = Checker(workspace.root)
        changed = answers.get(token)
        if changed is None:
            changed = answers[token] = checker.changed(json.loads(token))
        if changed:
            summary = json.loads(e[1])
            summary.update(state=State.STALE, changed_inputs=changed)
            out[i] = summary
    if checker is not None:
        checker.close()
    return out


def _gpu_waits(workspace: Workspace, jobs: list[QueueRow]) -> dict[int, str]:
    """Why queued local jobs wait for a GPU that others hold (`lab.runs.local.gpugate`), by job id."""
    if not any(j["state"] == State.QUEUED and j["executor"] == "local" for j in jobs):
        return {}
    from lab.runs.local.gpugate import read_wait
    from lab.runs.local.lock import runner_pid

    wait = read_wait(workspace.state_dir, runner_pid(workspace.state_dir))
    return {job_id: wait["reason"] for job_id in wait.get("jobs", ())}


def _merge_job(workspace: Workspace, entry: Summary, job: QueueRow, waits: dict[int, str] | None = None) -> Summary:
    """A record's summary as the queue knows it better: waiting jobs are `queued` (with why, while a GPU that others
    hold keeps them waiting); a running one shows progress."""
    if job["state"] == State.QUEUED:
        entry.update({"state": State.QUEUED, "queued_at": job["queued_at"], "job_id": job["id"], "exit_code": None,
                      "signal": None, "started_at": None, "ended_at": None, "duration_s": None, "metrics": {}})
        if waits and job["id"] in waits:
            entry["waiting"] = waits[job["id"]]
        return entry
    if entry.get("state") != State.RUNNING:
        entry.update({"state": State.RUNNING, "job_id": job["id"], "started_at": job["started_at"]})
    if entry.get("gpus") is None and job.get("lane"):  # started, its running record not written yet
        from lab.runs.gpus import lane_of

        lane = lane_of(job["lane"])
        if lane.get("env"):
            entry["gpus"] = lane.get("gpus") or []
    _with_progress(workspace, entry)
    return entry


def _with_progress(workspace: Workspace, entry: Summary) -> None:
    """A running entry's live metrics and duration so far."""
    exp_dir = workspace.experiments_dir / entry["experiment"]
    entry["progress"] = records.latest_metrics(exp_dir / "logs" / f"{entry['setting']}.metrics.jsonl") or {}
    if entry.get("started_at"):
        entry["duration_s"] = records.seconds_since(entry["started_at"])


def _refresh_slurm(workspace: Workspace, blocks) -> dict:
    """Reconcile active Slurm runs with Slurm: {exp: {setting: record as Slurm sees it}}."""
    active = cache.active_in(blocks, "slurm")
    if not active:
        return {}
    from lab.runs.executor import get

    live: dict = {}
    for rec in get("slurm").reconcile(workspace, [records.setting_of(workspace, e, n) for e, n in active]):
        if rec.get("state") in (State.QUEUED, State.RUNNING):
            live.setdefault(rec["experiment"], {})[rec["setting"]] = rec
    return live


def _slurm_entry(workspace: Workspace, rec: Record) -> Summary:
    entry = cache.summarize(rec, rec["experiment"], rec["setting"])
    if rec.get("slurm_state"):
        entry["slurm_state"] = rec["slurm_state"]
    if entry["state"] == State.RUNNING:
        _with_progress(workspace, entry)
    return entry
