"""Metrics of any program, unchanged: scraped from what it prints (`output`, `patterns`), read from the files
it writes (`files`, `tfevents`), merged by one rule (`merge`), live beside the job (`live`) and again by
`lab recapture` (`recapture`).

A run's capture leaves two files beside its log (derived: `lab recapture` writes them again):
- `logs/S.captured.jsonl`: the merged history, one `{"step": N, metric: value, ...}` row per step (the book's
  curves read it when the program wrote no `LAB_METRICS`);
- `logs/S.capture.json`: `final` (last value of each metric), `sources` (where each came from), `step`,
  `notes`, `hparams`, and `done` once the job ended (before that: the live progress `lab status` shows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from lab.core.fsutil import atomic_write_json, atomic_write_text


def rows_path(metrics_path) -> Path:
    """`logs/S.captured.jsonl`, beside the run's `logs/S.metrics.jsonl`."""
    p = Path(metrics_path)
    return p.with_name(p.name.removesuffix(".metrics.jsonl") + ".captured.jsonl")


def summary_path(metrics_path) -> Path:
    p = Path(metrics_path)
    return p.with_name(p.name.removesuffix(".metrics.jsonl") + ".capture.json")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def write_progress(metrics_path, result: dict) -> None:
    """The live capture's summary so far (no rows: `lab status` shows the latest values)."""
    if result.get("lab_metrics"):
        return
    atomic_write_json(summary_path(metrics_path), _summary(result, done=False), fsync=False)


def write_result(metrics_path, result: dict) -> None:
    """The capture of an ended attempt: its rows and its summary (`done: true`)."""
    rows = rows_path(metrics_path)
    if result.get("lab_metrics"):
        atomic_write_json(summary_path(metrics_path), {"lab_metrics": True, "done": True}, fsync=False)
        rows.unlink(missing_ok=True)
        return
    atomic_write_text(rows, rows_text(result.get("rows", ())), fsync=False)
    atomic_write_json(summary_path(metrics_path), _summary(result, done=True), fsync=False)


_PLAIN = {int, float, bool, type(None)}


def rows_text(rows) -> str:
    """The rows as JSON lines (non-finite numbers as the strings "NaN", "Infinity", "-Infinity").

    Rows of plain numbers under names without `}` (the common case) are encoded by one `json.dumps` of them all,
    cut into lines (`}, {` can then only fall between two rows): a long history costs no encoder per row."""
    rows = list(rows)
    if not rows:
        return ""
    names: set = set()
    kinds: set = set()
    for row in rows:
        names.update(row)
        kinds.update(map(type, row.values()))
    if kinds <= _PLAIN and not any("}" in name for name in names):
        text = json.dumps(rows, ensure_ascii=False)
        if "NaN" not in text and "Infinity" not in text:
            return text[1:-1].replace("}, {", "}\n{") + "\n"
    return "".join(json.dumps({k: _finite(v) for k, v in row.items()}, ensure_ascii=False) + "\n" for row in rows)


def _summary(result: dict, done: bool) -> dict:
    return {"final": {k: _finite(v) for k, v in result.get("final", {}).items()},
            "sources": result.get("sources", {}), "step": result.get("step"), "notes": result.get("notes", []),
            "hparams": result.get("hparams", {}), "done": done}


def read_summary(metrics_path) -> dict | None:
    try:
        data = json.loads(summary_path(metrics_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def progress(metrics_path) -> dict | None:
    """The latest captured values of a running job (`step` included), or None."""
    data = read_summary(metrics_path)
    if not data or not isinstance(data.get("final"), dict) or not data["final"]:
        return None
    out = dict(data["final"])
    if data.get("step") is not None and "step" not in out:
        out["step"] = data["step"]
    return out
