"""Runs as the Python API returns them: `Run` (one setting's latest run, from its record) and `Runs` (a list of them
with `to_pandas()`).

A run's files are the truth (lab.runs.record describes them): `experiments/E/runs/S.json` (the record, with its
earlier attempts), `logs/S.metrics.jsonl` (the metrics step by step) and `runs/env/HASH.txt` (the package set).
`Run` reads the record once; the metric history and the package set are read when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.core.settings import flatten

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class Git:
    """The code a run ran: its commit, whether the work tree had changes, and those changes (a diff)."""

    commit: str | None
    dirty: bool | None
    diff: str | None


@dataclass(frozen=True)
class Environment:
    """Where a run ran: host, platform, Python, the key packages' versions, and `id`, the hash of its whole
    package set (`Run.packages()` reads that set)."""

    id: str | None
    host: str | None
    platform: str | None
    python: str | None
    python_executable: str | None
    packages: dict[str, str]


@dataclass(frozen=True)
class Attempt:
    """An earlier attempt of a run (`Run.attempts`): its number, state, exit code, times and final metrics."""

    attempt: int | None
    state: str
    exit_code: int | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Run:
    """The latest run of one setting, read from its record.

    `state`: queued, running, succeeded, failed, cancelled or interrupted (a lab.runs.state.State, which is a
    str). `settings`: the resolved settings
    the program received. `metrics`: the final value of each metric. `inputs`: the files the settings name,
    with their SHA-256 when the run started. `git`, `environment`: the code and the packages it ran with.
    `attempts`: the earlier attempts, oldest first. `record`: the record itself (a dict), for anything else.
    """

    experiment: str
    setting: str
    state: str
    attempt: int | None
    exit_code: int | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    executor: str | None
    settings: dict[str, Any]
    metrics: dict[str, Any]
    inputs: dict[str, str]
    git: Git | None
    environment: Environment
    attempts: tuple[Attempt, ...]
    path: Path  # the record's file
    record: dict[str, Any] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.experiment}/{self.setting}"

    @property
    def log_path(self) -> Path:
        """The run's log (every attempt, each under a header line)."""
        return self._file("log_path", f"logs/{self.setting}.log")

    def history(self) -> list[dict[str, Any]]:
        """The metrics of the latest attempt step by step, as the program logged them (one dict a row)."""
        from lab.runs.record import read_metrics

        path = self._file("metrics_path", f"logs/{self.setting}.metrics.jsonl")
        return [dict(row) for row in read_metrics(path)] if path.is_file() else []

    def packages(self) -> dict[str, str] | None:
        """Every package of the run's environment with its version (what `pip freeze` lists), or None when the
        record names no package set."""
        from lab.runs.environment import read_environment

        found = read_environment(self.path.parent.parent, self.environment.id)
        return None if found is None else dict(found)

    def _file(self, key: str, default: str) -> Path:
        rel = self.record.get(key)
        return self.path.parent.parent / (rel if isinstance(rel, str) else default)

    @classmethod
    def from_record(cls, path: Path, rec: Mapping[str, Any]) -> Run:
        """The Run of the record `rec`, read from `path` (`experiments/E/runs/S.json`)."""
        history = rec.get("history")
        git = rec.get("git")
        return cls(
            experiment=_str(rec.get("experiment")) or path.parent.parent.name,
            setting=_str(rec.get("setting")) or path.stem,
            state=_state(rec.get("state")),
            attempt=_int(rec.get("attempt")),
            exit_code=_int(rec.get("exit_code")),
            started_at=_str(rec.get("started_at")),
            ended_at=_str(rec.get("ended_at")),
            duration_s=_float(rec.get("duration_s")),
            executor=_str(rec.get("executor")),
            settings=_dict(rec.get("settings")),
            metrics=_dict(rec.get("metrics")),
            inputs={str(k): str(v) for k, v in _dict(rec.get("inputs")).items()},
            git=Git(commit=_str(git.get("commit")), dirty=git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
                    diff=_str(git.get("diff"))) if isinstance(git, dict) else None,
            environment=Environment(id=_str(rec.get("environment")), host=_str(rec.get("host")),
                                    platform=_str(rec.get("platform")), python=_str(rec.get("python")),
                                    python_executable=_str(rec.get("python_executable")),
                                    packages={str(k): str(v) for k, v in _dict(rec.get("packages")).items()}),
            attempts=tuple(_attempt(h) for h in history if isinstance(h, dict)) if isinstance(history, list) else (),
            path=path,
            record=dict(rec),
        )


class Runs(list[Run]):
    """Runs, in the order of their experiments and settings; `to_pandas()` makes a table of them."""

    def to_pandas(self) -> pandas.DataFrame:
        """One row per run: `experiment`, `setting`, `state`, `attempt`, `started_at`, `ended_at` (UTC
        timestamps), `duration_s`, then every setting (nested ones as dotted names: `model.layers`) and every
        final metric as a column. A metric named like a setting (the scheduler's final `learning_rate`) is
        `metrics.NAME`, so the setting keeps its name. Needs pandas (`pip install 'lab[pandas]'`)."""
        try:
            import pandas as pd
        except ImportError:
            from lab.errors import LabError

            raise LabError("this needs pandas (pip install 'lab[pandas]')") from None
        rows = [_row(run) for run in self]
        frame = pd.DataFrame(rows, columns=_columns(rows))
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows of `to_pandas()` as plain dicts (no pandas needed)."""
        return [_row(run) for run in self]


FIXED = ("experiment", "setting", "state", "attempt", "started_at", "ended_at", "duration_s")


def _row(run: Run) -> dict[str, Any]:
    row: dict[str, Any] = {"experiment": run.experiment, "setting": run.setting, "state": run.state,
                           "attempt": run.attempt, "started_at": run.started_at, "ended_at": run.ended_at,
                           "duration_s": run.duration_s}
    for key, value in flatten(run.settings).items():
        row.setdefault(key, value)
    for key, value in run.metrics.items():
        row[f"metrics.{key}" if key in row else key] = _number(value)
    return row


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every column in first-seen order, the fixed ones first."""
    seen: dict[str, None] = dict.fromkeys(FIXED)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _number(value: Any) -> Any:
    """Records keep NaN and the infinities as strings (strict JSON); a table wants them as floats."""
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return value


def _attempt(h: Mapping[str, Any]) -> Attempt:
    return Attempt(attempt=_int(h.get("attempt")), state=_state(h.get("state")),
                   exit_code=_int(h.get("exit_code")), started_at=_str(h.get("started_at")),
                   ended_at=_str(h.get("ended_at")), duration_s=_float(h.get("duration_s")),
                   metrics=_dict(h.get("metrics")))


def _state(value: Any) -> str:
    """A recorded state as lab.runs.state.State (a str: `State.SUCCEEDED == "succeeded"`); "unknown" when the
    record holds none, and an unknown string as it is."""
    from lab.runs.state import State

    if not isinstance(value, str):
        return "unknown"
    try:
        return State(value)
    except ValueError:
        return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}
