"""Run records and metrics: the files a run leaves in its experiment directory.

For setting S of experiment E:
- `experiments/E/runs/S.json`: the run record (latest run, earlier attempts in `history`), written atomically.
- `experiments/E/runs/S.settings.json`: the resolved settings the program received (`{settings}`).
- `experiments/E/logs/S.log`: stdout and stderr, each attempt appended under a header line.
- `experiments/E/logs/S.metrics.jsonl`: metrics of the latest attempt, one JSON object per line (`LAB_METRICS`).

A record is a JSON object with at least: `experiment`, `setting`, `state` (one of STATES), `attempt`,
`exit_code`, `signal`, `started_at`, `ended_at` (UTC ISO 8601), `duration_s`, `argv`, `settings`,
`settings_hash`, `metrics` (final value of each key), `metrics_path` and `log_path` (relative to the experiment
directory), `executor` (`local` or `slurm`) and `history` (earlier attempts, each a record without `history`).
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.core.clock import now_iso  # noqa: F401  (re-exported: the clock lives in lab.core.clock)
from lab.core.fsutil import atomic_write_json, read_jsonl
from lab.core.settings import Setting

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED = ("succeeded", "failed", "cancelled")


def record_path(setting: Setting) -> Path:
    return setting.experiment.runs_dir / f"{setting.name}.json"


def resolved_settings_path(setting: Setting) -> Path:
    return setting.experiment.runs_dir / f"{setting.name}.settings.json"


def log_path(setting: Setting) -> Path:
    return setting.experiment.logs_dir / f"{setting.name}.log"


def metrics_path(setting: Setting) -> Path:
    return setting.experiment.logs_dir / f"{setting.name}.metrics.jsonl"


def read_record(setting: Setting) -> dict | None:
    return read_record_file(record_path(setting))


def read_record_file(path: Path) -> dict | None:
    """A record, or None when there is none (or it cannot be read: records are rewritten whole, atomically)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_record(setting: Setting, record: dict) -> None:
    """Write the record atomically and bring the search index up to date with it (when the lab has one)."""
    from lab.search.index import refresh_paths

    path = record_path(setting)
    atomic_write_json(path, record)
    refresh_paths(setting.experiment.workspace.root, [path])


def next_attempt(record: dict | None) -> int:
    """1 + the highest attempt of the setting that started (queued or cancelled-before-start ones do not count)."""
    if not record:
        return 1
    started = [r.get("attempt") or 0 for r in [record, *record.get("history", [])] if r.get("started_at")]
    return max(started, default=0) + 1


def history_after(previous: dict | None) -> list[dict]:
    """The history of the record that replaces `previous`: its history, plus `previous` itself unless it was only
    a queued placeholder (a job that never started is no attempt)."""
    if previous is None:
        return []
    history = list(previous.get("history", []))
    if previous.get("state") not in (None, "queued"):
        history.append({k: v for k, v in previous.items() if k != "history"})
    return history


def read_metrics(path: Path) -> list[dict]:
    """The metrics rows of a run; lines that are not JSON objects are skipped, never fatal."""
    return read_jsonl(path)


def final_metrics(rows: list[dict]) -> dict:
    """The last value of each key."""
    final: dict = {}
    for row in rows:
        final.update(row)
    return final
