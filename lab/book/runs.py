"""The runs of an experiment as the book reads them: the latest record of each setting (`runs/S.json`) with its
final metrics (the last value of each key in its metrics file, else the record's `metrics`), the settings that
never ran, and the reproduced attempts beside their reproductions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lab.book.metrics import is_metric, is_number
from lab.core.fsutil import natural_key
from lab.core.settings import flatten, list_settings
from lab.errors import LabError
from lab.runs import record as records
from lab.runs.state import State


@dataclass
class Run:
    """The latest run of one setting (or a setting that never ran: state 'not run')."""

    setting: str
    state: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    settings: dict | None = None
    metrics: dict = field(default_factory=dict)
    metrics_file: Path | None = None
    changed_inputs: list = field(default_factory=list)  # a succeeded run whose inputs changed is `stale`
    attempt: int | None = None
    reproduces: int | None = None  # the attempt this run reproduces (lab reproduce)
    deltas: dict = field(default_factory=dict)  # with `reproduces`: metric - the reproduced attempt's metric
    reproduction: dict | None = None  # the last `lab reproduce` of this run, a side attempt (lab.runs.reproduce)
    _rows: list | None = field(default=None, repr=False)

    def rows(self) -> list[dict]:
        """The streamed metrics rows (read once)."""
        if self._rows is None:
            self._rows = records.read_metrics(self.metrics_file) if self.metrics_file else []
        return self._rows


def load_runs(exp, resolve_missing: bool = True) -> list[Run]:
    """The runs of an experiment, one per setting (records first, then settings that never ran), natural order."""
    from lab.runs.inputs import Checker

    runs: dict[str, Run] = {}
    checker = Checker(exp.workspace.root)
    if exp.runs_dir.is_dir():
        for path in exp.runs_dir.glob("*.json"):
            if path.name.endswith(".settings.json") or path.name.startswith("."):
                continue
            rec = records.read_record_file(path)
            if rec is None:
                continue
            runs[path.stem] = _run_from_record(exp, path.stem, rec, checker)
            original = _reproduced(rec)
            if original is not None:  # lab reproduce: the reproduced attempt is shown beside its reproduction
                run = runs[path.stem]
                old = _run_from_record(exp, f"{path.stem}@{original['attempt']}", original, checker, live=False)
                runs[old.setting] = old
                run.deltas = {k: v - old.metrics[k] for k, v in run.metrics.items()
                              if is_number(v) and is_number(old.metrics.get(k)) and is_metric(k)}
    checker.close()
    try:
        settings = list_settings(exp)
    except LabError:
        settings = []
    for setting in settings:
        if setting.name in runs:
            continue
        resolved = None
        if resolve_missing:
            try:
                resolved = setting.resolve()
            except LabError:
                resolved = None
        runs[setting.name] = Run(setting=setting.name, state="not run", settings=resolved)
    return [runs[name] for name in sorted(runs, key=natural_key)]


def _reproduced(rec: dict) -> dict | None:
    """The attempt (from the history) that the latest attempt of a record reproduces, if it reproduces one."""
    n = rec.get("reproduces")
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    return next((h for h in rec.get("history", []) if isinstance(h, dict) and h.get("attempt") == n), None)


def _run_from_record(exp, name: str, rec: dict, checker=None, live: bool = True) -> Run:
    metrics_file = None
    rel = rec.get("metrics_path") or f"logs/{name}.metrics.jsonl"
    if isinstance(rel, str) and live:
        candidate = (exp.dir / rel).resolve()
        if candidate.is_relative_to(exp.dir.resolve()) and candidate.is_file():
            metrics_file = candidate
    run = Run(
        setting=name,
        state=str(rec.get("state") or "unknown"),
        started_at=rec.get("started_at") if isinstance(rec.get("started_at"), str) else None,
        ended_at=rec.get("ended_at") if isinstance(rec.get("ended_at"), str) else None,
        duration_s=rec.get("duration_s") if is_number(rec.get("duration_s")) else None,
        exit_code=rec.get("exit_code") if isinstance(rec.get("exit_code"), int) else None,
        settings=rec.get("settings") if isinstance(rec.get("settings"), dict) else None,
        metrics=dict(rec.get("metrics")) if isinstance(rec.get("metrics"), dict) else {},
        metrics_file=metrics_file,
        attempt=rec.get("attempt") if isinstance(rec.get("attempt"), int) else None,
        reproduces=rec.get("reproduces") if isinstance(rec.get("reproduces"), int) else None,
        reproduction=rec.get("reproduction") if isinstance(rec.get("reproduction"), dict) else None,
    )
    if checker is not None and run.state == State.SUCCEEDED:
        from lab.runs.inputs import changed_inputs

        run.changed_inputs = changed_inputs(exp.workspace.root, rec, checker)
        if run.changed_inputs:
            run.state = "stale"
    if metrics_file is not None:
        # The streamed file is newer than the record while a run is going.
        run.metrics.update(records.final_metrics(run.rows()))
    return run


_MISSING = object()


def differing_settings(runs: list[Run]) -> list[str]:
    """The dotted setting keys whose values are not the same in every run that has settings."""
    flat = [flatten(r.settings) for r in runs if r.settings is not None]
    if len(flat) < 2:
        return []
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f))
    differ = []
    for key in keys:
        values = {json.dumps(f.get(key, _MISSING), sort_keys=True, default=lambda o: "<missing>") for f in flat}
        if len(values) > 1:
            differ.append(key)
    return differ

