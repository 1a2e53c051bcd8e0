"""What `lab status` shows: every run record of the lab (or of some targets), merged with the queue.

Speed: a lab with 10,000 past runs has 10,000 record files, and parsing them all on every `lab status` takes
too long (records carry settings, argv and git diffs). So a summary of each record is cached in
`.lab/status-cache.json`, keyed on the file's (mtime_ns, size, inode): `lab status` lists the `runs/`
directories, stats each record (cheap), and re-reads only the records that changed. Records are replaced
atomically (new inode), so a changed record is never missed. The cache is derived: delete it and it is
rebuilt. The queue then overrides what it knows better: a job waiting in the queue shows as `queued`.

This module must stay light: `lab status --json` imports neither rich nor anything heavy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import records
from .fsutil import atomic_write_text, natural_key

CACHE_NAME = "status-cache.json"
CACHE_VERSION = 2
SUMMARY_KEYS = ("state", "attempt", "exit_code", "signal", "queued_at", "started_at", "ended_at", "duration_s",
                "metrics", "executor", "job_id", "reason", "slurm_job_id")


def summarize(record: dict, experiment: str, setting: str) -> dict:
    """The part of a record that status shows."""
    out = {"experiment": record.get("experiment") or experiment, "setting": record.get("setting") or setting}
    for key in SUMMARY_KEYS:
        out[key] = record.get(key)
    if not isinstance(out["metrics"], dict):
        out["metrics"] = {}
    return out


def _parse_targets(targets: list[str] | None) -> list[tuple[str, str | None]] | None:
    if not targets:
        return None
    from .workspace import check_name

    parsed = []
    for target in targets:
        exp, _, setting = target.strip().rstrip("/").partition("/")
        check_name(exp)
        if setting:
            check_name(setting, "setting")
        parsed.append((exp, setting or None))
    return parsed


def _wanted(parsed, exp: str, setting: str | None = None) -> bool:
    if parsed is None:
        return True
    return any(e == exp and (s is None or setting is None or s == setting) for e, s in parsed)


def collect(workspace, targets: list[str] | None = None, recover: bool = True) -> list[dict]:
    """One entry per setting that has a record or a queued job, sorted by experiment and setting."""
    from .errors import BadInput

    parsed = _parse_targets(targets)
    if parsed is not None:
        for exp, _ in parsed:
            if not (workspace.experiments_dir / exp).is_dir():
                raise BadInput(f"no experiment {exp!r} in {workspace.experiments_dir}")
    if recover:
        from .runner import recover_if_needed

        recover_if_needed(workspace)
    entries = _records(workspace, parsed)
    if recover:
        _refresh_slurm(workspace, entries)
    for job in active_jobs(workspace):
        if not _wanted(parsed, job["experiment"], job["setting"]):
            continue
        key = (job["experiment"], job["setting"])
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = summarize({}, *key)
        if job["state"] == "queued":
            entry.update(state="queued", queued_at=job["queued_at"], job_id=job["id"], exit_code=None, signal=None,
                         started_at=None, ended_at=None, duration_s=None, metrics={})
        elif entry.get("state") != "running":
            entry.update(state="running", job_id=job["id"], started_at=job["started_at"])
    rows = sorted(entries.values(), key=lambda e: (natural_key(e["experiment"]), natural_key(e["setting"])))
    for entry in rows:
        if entry["state"] == "running":
            from .runs import latest_metrics

            exp_dir = workspace.experiments_dir / entry["experiment"]
            entry["progress"] = latest_metrics(exp_dir / "logs" / f"{entry['setting']}.metrics.jsonl") or {}
            if entry.get("started_at"):
                from .runner import _seconds_since

                entry["duration_s"] = _seconds_since(entry["started_at"])
    return rows


def _refresh_slurm(workspace, entries: dict) -> None:
    """Slurm runs the records call queued or running: ask Slurm how they are now (`lab.slurmqueue.refresh`)."""
    active = [key for key, e in entries.items() if e.get("executor") == "slurm" and e.get("state") in ("queued", "running")]
    if not active:
        return
    from .runner import job_setting
    from .slurmqueue import refresh

    settings = [job_setting(workspace, {"experiment": exp, "setting": name}) for exp, name in active]
    shown = {(r["experiment"], r["setting"]): r for r in refresh(workspace, settings)}
    for exp, name in active:
        record = shown.get((exp, name)) or records.read_record_file(workspace.experiments_dir / exp / "runs" / f"{name}.json")
        if record is not None:
            entries[(exp, name)] = dict(summarize(record, exp, name), slurm_state=record.get("slurm_state"))


def _records(workspace, parsed) -> dict:
    cache_path = workspace.state_dir / CACHE_NAME
    cache = _load_cache(cache_path)
    files = cache["files"]
    seen: set[str] = set()
    entries: dict = {}
    changed = False
    try:
        exps = os.scandir(workspace.experiments_dir)
    except FileNotFoundError:
        return entries
    with exps:
        for exp in exps:
            if not _wanted(parsed, exp.name) or not exp.is_dir():
                continue
            try:
                runs = os.scandir(os.path.join(exp.path, "runs"))
            except (FileNotFoundError, NotADirectoryError):
                continue
            with runs:
                for f in runs:
                    name = f.name
                    if not name.endswith(".json") or name.endswith(".settings.json") or name.startswith("."):
                        continue
                    setting = name[:-5]
                    if not _wanted(parsed, exp.name, setting):
                        continue
                    try:
                        st = f.stat()
                    except FileNotFoundError:
                        continue
                    key = f"{exp.name}/{name}"
                    seen.add(key)
                    stamp = [st.st_mtime_ns, st.st_size, st.st_ino]
                    hit = files.get(key)
                    if hit is not None and hit[0] == stamp:
                        summary = hit[1]
                    else:
                        record = records.read_record_file(Path(f.path))
                        if record is None:
                            continue  # unreadable: not cached, so it is read again next time
                        summary = summarize(record, exp.name, setting)
                        files[key] = [stamp, summary]
                        changed = True
                    entries[(exp.name, setting)] = dict(summary)
    if parsed is None:
        gone = [k for k in files if k not in seen]
        for k in gone:
            del files[k]
        changed = changed or bool(gone)
    if changed:
        try:
            atomic_write_text(cache_path, json.dumps(cache, separators=(",", ":")))
        except OSError:
            pass  # a read-only lab still gets its status
    return entries


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("version") == CACHE_VERSION and isinstance(data.get("files"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": CACHE_VERSION, "files": {}}


def active_jobs(workspace) -> list[dict]:
    """Queued and running jobs (all executors), without opening the queue when there is none."""
    from .queue import Queue

    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return []
    try:
        return [{k: j[k] for k in ("id", "experiment", "setting", "state", "executor", "queued_at", "started_at")}
                for j in queue.jobs(("queued", "running"))]
    finally:
        queue.close()


def queue_info(workspace) -> dict:
    """The runner and the queue: `{"runner_pid", "queued", "running", "stopped"}` (stopped: the reason, or None)."""
    from .queue import Queue
    from .runner import runner_pid

    info = {"runner_pid": runner_pid(workspace.state_dir), "queued": 0, "running": 0, "stopped": None}
    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return info
    try:
        for job in queue.jobs(("queued", "running"), executor="local"):
            info[job["state"]] += 1
        info["stopped"] = queue.get_flag("stop")
    finally:
        queue.close()
    return info


def key_metrics(metrics: dict, limit: int = 3) -> list[tuple[str, object]]:
    """The few metrics worth a column: evaluation ones first, then losses and the rest (no step/epoch)."""
    keys = [k for k in metrics if k not in ("step", "epoch") and not k.startswith("_")]
    keys.sort(key=lambda k: (0 if k.startswith(("eval", "test")) else 1 if "loss" in k else 2))
    return [(k, metrics[k]) for k in keys[:limit]]
