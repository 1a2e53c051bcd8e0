"""What `lab status` shows: every run record of the lab (or of some targets), merged with the queue.

Speed: a lab with 10,000 past runs has 10,000 record files, and parsing them all on every `lab status` takes
too long (records carry settings, argv and git diffs). So a summary of each record is cached in
`.lab/status-cache` (derived: delete it and it is rebuilt). Its fields are separated by NUL and its entries by
NUL + newline: a file name may hold a tab or a newline but never a NUL, and JSON text never holds a raw NUL,
so no legal experiment or setting name can break it. One block per experiment:

    #<NUL>EXP<NUL>RUNS-DIR-MTIME:INODE<NUL>SETTLED<NUL>N
    SETTING<NUL>MTIME:SIZE:INODE<NUL>ACTIVE<NUL>TABLE-CELLS<NUL>INPUTS<NUL>SUMMARY-JSON   (N entries, natural order)

ACTIVE is the executor of a run the record says is queued or running (empty otherwise): that field, never the
shown text, tells `lab status`, `lab stop` and `lab cancel` which runs an executor must be asked about.
INPUTS: the recorded inputs of a succeeded run (JSON, lab.runs.inputs), or empty.

A record is re-read only when its (mtime_ns, size, inode) changed. Records are always replaced atomically (a
rename into `runs/`), which also changes the directory's mtime; so when `runs/` still has the mtime it had
when it was last seen *settled* (older than TRUST_AFTER_NS then, because file times have a coarse clock), none
of its records changed and not even their stats are needed. Loading the cache is splitting lines, and
`--json` output joins the cached JSON texts (the table, the cached cells): an unchanged lab costs no JSON
decoding or encoding. (A record
edited in place by hand, without a rename, shows once anything else in its `runs/` changes; delete the cache
to see it at once.) The queue then overrides what it knows better: a job waiting in the queue shows as
`queued`; the running job shows its live progress. Last, a succeeded run whose recorded inputs changed since it
ran shows as `stale`, with `changed_inputs` (lab.runs.inputs: each input path is hashed once per call, through
the hash cache).

This module must stay light: `lab status --json` imports neither rich nor anything heavy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lab.runs import record as records
from lab.core.fsutil import atomic_write_text, natural_key
from lab.runs.inputs import staleness_token

CACHE_NAME = "status-cache"
CACHE_VERSION = "lab status cache 6 gpus"
SEP = "\0"
END = "\0\n"
# A runs/ directory whose mtime is older than this is "settled": an unchanged mtime then proves that no record
# in it was added, replaced or removed (file times have a coarse clock, so a recent mtime proves nothing).
TRUST_AFTER_NS = 2_000_000_000
SUMMARY_KEYS = ("state", "attempt", "exit_code", "signal", "queued_at", "started_at", "ended_at", "duration_s",
                "metrics", "executor", "job_id", "reason", "slurm_job_id", "gpus")


def summarize(record: dict, experiment: str, setting: str) -> dict:
    """The part of a record that status shows (NaN and infinities as strings: the output is strict JSON)."""
    out = {"experiment": experiment, "setting": setting}
    for key in SUMMARY_KEYS:
        out[key] = records.finite(record.get(key))
    if not isinstance(out["metrics"], dict):
        out["metrics"] = {}
    return out


def _parse_targets(targets: list[str] | None) -> list[tuple[str, str | None]] | None:
    if not targets:
        return None
    from lab.core.settings import parse_target

    return [parse_target(target) for target in targets]


def _wanted(parsed, exp: str, setting: str | None = None) -> bool:
    if parsed is None:
        return True
    return any(e == exp and (s is None or setting is None or s == setting) for e, s in parsed)


def collect(workspace, targets: list[str] | None = None, recover: bool = True, form: str = "dicts"):
    """One entry per setting that has a record or a queued job, sorted by experiment and setting.

    `form`: "dicts" (a list of summaries), "json" (the JSON text of that list, joined from cached JSON without
    decoding it) or "cells" (a list of table rows: run, state, started, duration, exit, metrics).
    """
    from lab.errors import BadInput

    parsed = _parse_targets(targets)
    if parsed is not None:
        for exp, _ in parsed:
            if not (workspace.experiments_dir / exp).is_dir():
                raise BadInput(f"no experiment {exp!r} in {workspace.experiments_dir}")
    jobs = active_jobs(workspace)
    if recover and any(j["state"] == "running" and j["executor"] == "local" for j in jobs):
        from lab.runs.local.runner import recover_if_needed

        if recover_if_needed(workspace):
            jobs = active_jobs(workspace)
    blocks = _records(workspace, parsed)  # [(experiment, metas, jsons)], in natural order (see _records)
    slurm_live: dict = {}
    if recover and _active_in(blocks, "slurm"):
        slurm_live = _refresh_slurm(workspace, blocks)
        blocks = _records(workspace, parsed)  # again: the reconciliation may have rewritten records
    by_exp: dict = {}
    for job in jobs:
        if _wanted(parsed, job["experiment"], job["setting"]):
            by_exp.setdefault(job["experiment"], {})[job["setting"]] = job
    known = {b[0] for b in blocks}
    if any(exp not in known for exp in by_exp):
        blocks += [(exp, [], []) for exp in by_exp if exp not in known]
        blocks.sort(key=lambda b: natural_key(b[0]))
    out: list = []  # cached (meta, json) pairs, and dicts where the queue knows better
    for exp, metas, jsons in blocks:
        exp_jobs = by_exp.get(exp)
        exp_slurm = slurm_live.get(exp) if slurm_live else None
        filtered = parsed is not None and any(e == exp and s is not None for e, s in parsed)
        if not exp_jobs and not exp_slurm and not filtered:
            out.extend(zip(metas, jsons))  # the fast path: nothing is split or decoded
            continue
        items = {meta.partition(SEP)[0]: (meta, text) for meta, text in zip(metas, jsons)}
        if filtered:
            items = {name: item for name, item in items.items() if _wanted(parsed, exp, name)}
        for name, job in (exp_jobs or {}).items():
            summary = json.loads(items[name][1]) if name in items else summarize({}, exp, name)
            items[name] = _merge_job(workspace, summary, job)
        for name, rec in (exp_slurm or {}).items():  # Slurm jobs as Slurm sees them now (lab.slurmqueue)
            if _wanted(parsed, exp, name):
                items[name] = _slurm_entry(workspace, rec)
        out.extend(items[name] for name in sorted(items, key=natural_key))
    out = _mark_stale(workspace, out)  # succeeded runs whose inputs changed since are shown `stale`
    if form == "json":
        if not out:
            return "[]"
        return "[\n" + ",\n".join(e[1] if isinstance(e, tuple) else json.dumps(e, ensure_ascii=False) for e in out) + "\n]"
    if form == "cells":
        return [e[0].split(SEP, 4)[3].split("\x1f") if isinstance(e, tuple) else table_cells(e) for e in out]
    return [json.loads(e[1]) if isinstance(e, tuple) else e for e in out]


def _mark_stale(workspace, out: list) -> list:
    """Cached entries of succeeded runs whose recorded inputs changed become `stale` summaries: their result no longer
    describes the code and data now."""
    checker = None
    answers: dict[str, list] = {}  # runs of one experiment mostly share their inputs: one check per distinct set
    for i, e in enumerate(out):
        if not isinstance(e, tuple):
            continue
        token = e[0].split(SEP, 4)[4] if e[0].count(SEP) >= 4 else ""
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
            summary.update(state="stale", changed_inputs=changed)
            out[i] = summary
    if checker is not None:
        checker.close()
    return out


def _merge_job(workspace, entry: dict, job: dict) -> dict:
    """A record's summary as the queue knows it better: waiting jobs are `queued`; a running one shows progress."""
    if job["state"] == "queued":
        entry.update(state="queued", queued_at=job["queued_at"], job_id=job["id"], exit_code=None, signal=None,
                     started_at=None, ended_at=None, duration_s=None, metrics={})
        return entry
    if entry.get("state") != "running":
        entry.update(state="running", job_id=job["id"], started_at=job["started_at"])
    if entry.get("gpus") is None and job.get("lane"):  # started, its running record not written yet
        from lab.runs.gpus import lane_of

        lane = lane_of(job["lane"])
        if lane.get("env"):
            entry["gpus"] = lane.get("gpus") or []
    exp_dir = workspace.experiments_dir / entry["experiment"]
    entry["progress"] = records.latest_metrics(exp_dir / "logs" / f"{entry['setting']}.metrics.jsonl") or {}
    if entry.get("started_at"):
        entry["duration_s"] = records.seconds_since(entry["started_at"])
    return entry


def _active_in(blocks, executor: str) -> list[tuple[str, str]]:
    """(experiment, setting) of the records that say a job of `executor` is queued or running (the ACTIVE field)."""
    found = []
    for exp, metas, _ in blocks:
        for meta in metas:
            name, _, rest = meta.partition(SEP)
            if rest.split(SEP, 2)[1] == executor:
                found.append((exp, name))
    return found


def active_runs(workspace, executor: str, targets: list[str] | None = None) -> list[tuple[str, str]]:
    """(experiment, setting) of the runs whose record says `executor` has them queued or running."""
    parsed = _parse_targets(targets)
    return [(e, n) for e, n in _active_in(_records(workspace, parsed), executor) if _wanted(parsed, e, n)]


def _refresh_slurm(workspace, blocks) -> dict:
    """Reconcile active Slurm runs with Slurm: {exp: {setting: record as Slurm sees it}}."""
    active = _active_in(blocks, "slurm")
    if not active:
        return {}
    from lab.runs.executor import get

    live: dict = {}
    for rec in get("slurm").reconcile(workspace, [records.setting_of(workspace, e, n) for e, n in active]):
        if rec.get("state") in ("queued", "running"):
            live.setdefault(rec["experiment"], {})[rec["setting"]] = rec
    return live


def _slurm_entry(workspace, rec: dict) -> dict:
    entry = summarize(rec, rec["experiment"], rec["setting"])
    if rec.get("slurm_state"):
        entry["slurm_state"] = rec["slurm_state"]
    if entry["state"] == "running":
        exp_dir = workspace.experiments_dir / entry["experiment"]
        entry["progress"] = records.latest_metrics(exp_dir / "logs" / f"{entry['setting']}.metrics.jsonl") or {}
        if entry.get("started_at"):
            entry["duration_s"] = records.seconds_since(entry["started_at"])
    return entry


def _records(workspace, parsed) -> list:
    """The cached summaries of the records, re-reading only what changed: [(exp, metas, jsons)] where
    metas[i] is "SETTING<NUL>STAMP<NUL>ACTIVE<NUL>CELLS" and jsons[i] the summary's JSON, in natural setting order."""
    cache_path = workspace.state_dir / CACHE_NAME
    cache = _load_cache(cache_path)  # exp -> (dir stamp, settled, metas, jsons)
    fresh: dict = {}
    changed = False
    recent = time.time_ns() - TRUST_AFTER_NS
    try:
        exps = os.scandir(workspace.experiments_dir)
    except FileNotFoundError:
        return []
    with exps:
        for exp in exps:
            ename = exp.name
            if parsed is not None and not _wanted(parsed, ename):
                if ename in cache:
                    fresh[ename] = cache[ename]
                continue
            runs_path = os.path.join(exp.path, "runs")
            try:
                dir_st = os.stat(runs_path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            dir_stamp = f"{dir_st.st_mtime_ns}:{dir_st.st_ino}"
            block = cache.get(ename)
            if block is not None and block[0] == dir_stamp and block[1]:
                fresh[ename] = block  # no record was added, replaced or removed since a settled look
                continue
            old = {meta.partition(SEP)[0]: (meta, text) for meta, text in zip(block[2], block[3])} if block else {}
            lines = []
            with os.scandir(runs_path) as runs:
                for f in runs:
                    name = f.name
                    if not name.endswith(".json") or name.endswith(".settings.json") or name[0] == ".":
                        continue
                    setting = name[:-5]
                    try:
                        st = f.stat()
                    except FileNotFoundError:
                        continue
                    stamp = f"{setting}{SEP}{st.st_mtime_ns}:{st.st_size}:{st.st_ino}{SEP}"
                    hit = old.get(setting)
                    if hit is not None and hit[0].startswith(stamp):
                        lines.append((setting, *hit))
                        continue
                    record = records.read_record_file(Path(f.path))
                    if record is None:
                        continue  # unreadable: not cached, so it is read again next time
                    summary = summarize(record, ename, setting)
                    cells = "\x1f".join(_printable(c) for c in table_cells(summary))
                    active = str(summary.get("executor") or "local") if summary.get("state") in records.ACTIVE else ""
                    inputs = staleness_token(record)
                    lines.append((setting, f"{stamp}{_printable(active)}{SEP}{cells}{SEP}{inputs}", json.dumps(summary, ensure_ascii=False)))
            lines.sort(key=lambda line: natural_key(line[0]))
            fresh[ename] = (dir_stamp, dir_st.st_mtime_ns < recent, [m for _, m, _ in lines], [j for _, _, j in lines])
            changed = changed or fresh[ename] != block
    if set(fresh) != set(cache):
        changed = True
    if changed:
        parts = [_cache_header() + END]
        for ename, (dir_stamp, settled, metas, jsons) in fresh.items():
            parts.append(f"#{SEP}{ename}{SEP}{dir_stamp}{SEP}{int(settled)}{SEP}{len(metas)}{END}")
            parts.extend(f"{m}{SEP}{j}{END}" for m, j in zip(metas, jsons))
        try:
            atomic_write_text(cache_path, "".join(parts), fsync=False)  # derived: rebuilt if ever lost
        except OSError:
            pass  # a read-only lab still gets its status
    blocks = [(e, fresh[e][2], fresh[e][3]) for e in fresh if parsed is None or _wanted(parsed, e)]
    blocks.sort(key=lambda b: natural_key(b[0]))
    return blocks


def _printable(text: str) -> str:
    """A table cell with control characters (a tab or newline in a name, a NUL in a value) shown as '?'."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _cache_header() -> str:
    # Table cells hold local times: another time zone makes another cache.
    return f"{CACHE_VERSION}\t{os.environ.get('TZ', '')}:{time.timezone}:{time.altzone}:{'/'.join(time.tzname)}"


def _load_cache(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    entries = text.split(END)
    if not entries or entries[0] != _cache_header():
        return {}
    cache = {}
    i = 1
    try:
        while i < len(entries) and entries[i].startswith("#" + SEP):
            _, ename, dir_stamp, settled, count = entries[i].split(SEP)
            n = int(count)
            metas, jsons = [], []
            for item in entries[i + 1:i + 1 + n]:
                meta, _, text = item.rpartition(SEP)
                if meta.count(SEP) != 4:
                    return {}
                metas.append(meta)
                jsons.append(text)
            if len(metas) != n:
                return {}
            cache[ename] = (dir_stamp, settled == "1", metas, jsons)
            i += 1 + n
    except ValueError:
        return {}
    return cache


def active_jobs(workspace) -> list[dict]:
    """Queued and running jobs (all executors), without opening the queue when there is none."""
    from lab.runs.local.queue import Queue

    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        return [{k: j[k] for k in ("id", "experiment", "setting", "state", "executor", "queued_at", "started_at", "lane")}
                for j in queue.jobs(("queued", "running"))]
    finally:
        queue.close()


def queue_info(workspace) -> dict:
    """The runner and the queue: `{"runner_pid", "queued", "running", "stopped", "lanes"}` (stopped: the reason, or
    None; lanes: the live runner's lanes and how many are busy, or None)."""
    info = {"runner_pid": None, "queued": 0, "running": 0, "stopped": None, "lanes": None}
    if not (workspace.state_dir / "runner.lock").exists() and not (workspace.state_dir / "queue.db").exists():
        return info  # this lab never ran anything
    from lab.runs.local.queue import Queue
    from lab.runs.local.runner import runner_pid

    info["runner_pid"] = runner_pid(workspace.state_dir)
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return info
    try:
        running = []
        for job in queue.jobs(("queued", "running"), executor="local"):
            info[job["state"]] += 1
            if job["state"] == "running":
                running.append(job)
        info["stopped"] = queue.get_flag("stop")
        if info["runner_pid"]:
            info["lanes"] = _lanes_busy(workspace, info["runner_pid"], running)
    finally:
        queue.close()
    return info


def _lanes_busy(workspace, pid: int, running: list[dict]) -> dict | None:
    """The live runner's lanes (`.lab/lanes.json`, written when it started) and what its running jobs hold."""
    try:
        lanes = json.loads((workspace.state_dir / "lanes.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(lanes, dict) or lanes.get("pid") != pid:
        return None
    from lab.runs.gpus import held_from
    from lab.runs.slots import Pool, busy

    pool = Pool(gpus=tuple(lanes.get("gpus") or ()), cpu=int(lanes.get("max_parallel") or 1))
    used = busy(pool, [held_from(job.get("lane")) for job in running])
    per_gpu = int(lanes.get("jobs_per_gpu") or 1)
    return {"gpus": list(pool.gpus), "jobs_per_gpu": per_gpu, "max_parallel": pool.cpu,
            "gpu_slots": len(pool.gpus) * per_gpu, "gpu_slots_busy": round(sum(used["gpus"].values()) * per_gpu),
            "busy_gpus": [g for g, share in used["gpus"].items() if share > 0],
            "cpu_busy": used["cpu_busy"]}


def lanes_text(lanes: dict | None) -> str:
    """`; 3 of 4 GPU slots busy (GPUs 0,1,2), 0 of 1 CPU lane` for the runner's line ('' for one plain lane)."""
    if not lanes or (not lanes["gpus"] and lanes["max_parallel"] == 1):
        return ""
    parts = []
    if lanes["gpus"]:
        which = f" (GPU{'s' if len(lanes['busy_gpus']) != 1 else ''} {','.join(lanes['busy_gpus'])})" if lanes["busy_gpus"] else ""
        parts.append(f"{lanes['gpu_slots_busy']} of {lanes['gpu_slots']} GPU slots busy{which}")
    parts.append(f"{lanes['cpu_busy']} of {lanes['max_parallel']} CPU lane{'s' if lanes['max_parallel'] != 1 else ''} busy")
    return "; " + ", ".join(parts)


def key_metrics(metrics: dict, limit: int = 3) -> list[tuple[str, object]]:
    """The few metrics worth a column: evaluation ones first, then losses and the rest (no step/epoch)."""
    keys = [k for k in metrics if k not in ("step", "epoch") and not k.startswith("_")]
    keys.sort(key=lambda k: (0 if k.startswith(("eval", "test")) else 1 if "loss" in k else 2))
    return [(k, metrics[k]) for k in keys[:limit]]


def table_cells(r: dict) -> list[str]:
    """One row of the `lab status` table: run, state, started (local time), duration, exit, key metrics (and why a
    failed or interrupted run ended: the program's last error line)."""
    exit_text = "" if r.get("exit_code") is None else str(r["exit_code"])
    if r.get("signal"):
        exit_text = str(r["signal"])
    running = r.get("state") == "running"
    metrics = (r.get("progress") if running else r.get("metrics")) or {}
    state = str(r.get("state")) + (f" (slurm {r['slurm_job_id']})" if r.get("slurm_job_id") else "")
    if running and r.get("gpus"):
        state += f" (GPU {','.join(map(str, r['gpus']))})"
    last = metrics_text(metrics, with_step=running)
    if r.get("state") in ("failed", "interrupted") and isinstance(r.get("reason"), str) and r["reason"]:
        why = r["reason"].split(": ", 1)[1] if r["reason"].startswith(("exit code ", "killed by ")) and ": " in r["reason"] else r["reason"]
        if why != f"exit code {r.get('exit_code')}":
            last = f"{last}  ({why})" if last else why
    if r.get("changed_inputs"):
        from lab.runs.inputs import describe_changes

        state += f" ({describe_changes(r['changed_inputs'], r.get('experiment'))})"
    return [f"{r['experiment']}/{r['setting']}", state, local_time(r.get("started_at")),
            duration_text(r.get("duration_s")), exit_text, last]


def local_time(iso: str | None) -> str:
    if not iso:
        return "-"
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def duration_text(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def metrics_text(metrics: dict, with_step: bool = False) -> str:
    parts = []
    if with_step and metrics.get("step") is not None:
        parts.append(f"step {metrics['step']}")
    for k, v in key_metrics(metrics):
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)
