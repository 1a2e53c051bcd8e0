"""Run records: the files a run leaves in its experiment directory, and the one owner of their life.

Only this module creates or changes a run record. Every executor (the local runner's per-job supervisor, the
Slurm node entry point, crash recovery, `lab run`/`lab cancel`) asks it for the record of a moment:
`queued` (waiting), `running` (started), `ended` (exit status or signal, final metrics, the reason of a
failure), `settled` (ended by someone else: interrupted or cancelled), and `should_run` is the one decision
"run it, or skip it because it already succeeded" for every executor.

For setting S of experiment E:
- `experiments/E/runs/S.json`: the run record (latest run, earlier attempts in `history`), written atomically.
  A record that is not JSON is never overwritten: it is kept beside the new one as `S.json.corrupt-TIME`.
- `experiments/E/runs/S.settings.json`: the resolved settings the program received (`{settings}`).
- `experiments/E/logs/S.log`: stdout and stderr, each attempt appended under a header line.
- `experiments/E/logs/S.metrics.jsonl`: metrics of the latest attempt, one JSON object per line (`LAB_METRICS`).

A record is a JSON object with at least: `experiment`, `setting`, `state` (one of STATES), `attempt`,
`exit_code`, `signal`, `queued_at`, `started_at`, `ended_at` (UTC ISO 8601), `duration_s`, `command` (the
report's template), `argv`, `settings`, `settings_hash`, `metrics` (final value of each key; NaN and
infinities as the strings "NaN", "Infinity", "-Infinity", so the record stays strict JSON), the paths of its
files (relative to the experiment directory), `executor` (`local` or `slurm`), `job_id` (local) or
`slurm_job_id`, and `history` (earlier attempts, each a record without `history`). A failed run has a
`reason`: the program's last error line from its log.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timezone
from pathlib import Path
from types import EllipsisType

from lab.core.clock import now_iso as now_iso  # re-exported: the clock lives in lab.core.clock
from lab.core.fsutil import atomic_write_json
from lab.core.settings import Setting
from lab.errors import BadInput
from lab.runs.outputs import ERROR_WORDS as ERROR_WORDS, final_metrics as final_metrics, finite as finite
from lab.runs.outputs import last_error_line as last_error_line, latest_metrics as latest_metrics
from lab.runs.outputs import read_metrics as read_metrics
from lab.runs.state import ACTIVE as ACTIVE, FINISHED as FINISHED, STATES as STATES, State  # the first three re-exported

TYPE_CHECKING = False  # not typing's: `lab status` imports this module, and importing typing costs it a millisecond
if TYPE_CHECKING:
    from typing import Any, TypedDict

    from lab.core.workspace import Workspace

    class Record(TypedDict, total=False):
        """A run record, `runs/S.json`: what every executor writes through this module and every reader gets back.
        Any key may be missing from a file written by an older lab or edited by hand, so readers use `.get`."""

        experiment: str
        setting: str
        state: str  # a State
        attempt: int | None
        executor: str  # local | slurm
        job_id: int  # the local queue's job id
        slurm_job_id: str
        slurm_node: str
        slurm_state: str  # as Slurm shows it now, and why (in answers, never written)
        slurm_reason: str | None
        exit_code: int | None
        signal: str | int | None  # the name of the signal that ended it
        queued_at: str | None  # UTC ISO 8601, as the times below
        started_at: str | None
        ended_at: str | None
        duration_s: float | None
        command: str | None  # the report's command template (None: lab's own training program)
        argv: list[str] | None
        settings: dict[str, Any]
        settings_hash: str
        settings_file: str  # these four relative to the experiment directory
        log_path: str
        metrics_path: str
        output_dir: str
        host: str
        platform: str
        python: str
        python_executable: str
        packages: dict[str, str]
        git: dict[str, Any] | None
        inputs: dict[str, str] | None  # lab.runs.inputs
        environment: str | None  # lab.runs.environment
        gpus: list[str]
        pid: int  # while it runs
        pgid: int
        reason: str
        metrics: dict[str, Any]  # the final value of each key
        code: dict[str, str]  # the program files' hashes (lab.runs.code), and the untracked ones kept
        untracked: list[str]
        reproduction: dict[str, Any]  # the last `lab reproduce` of it (lab.runs.reproduce)
        reproduces: int  # the attempt a reproduction's record reproduces
        history: list[Record]  # earlier attempts, each without a history
        metrics_sources: dict[str, str]  # where each final metric came from (lab_metrics, trainer_state, ...)
        capture_notes: list[str]  # what capture could not read, said once each
        hparams: dict[str, Any]  # hyperparameters a program wrote (Lightning's hparams.yaml)


def as_record(data: dict[str, Any]) -> Record:
    """A JSON object read from a record file, or built field by field here, as a `Record` (the one place where a
    plain dict becomes one: records are JSON, and a file holds what it holds)."""
    return data  # type: ignore[return-value]

# What a queued job keeps as it was when queued (the local executor): its later edits do not change the job.
FIXED_WHEN_QUEUED = ["settings", "command"]


def seconds_since(iso: str | None) -> float | None:
    if not iso or not isinstance(iso, str):
        return None
    try:
        return round((datetime.now(timezone.utc) - datetime.fromisoformat(iso)).total_seconds(), 3)
    except (ValueError, TypeError):
        return None


# -- where a run's files are ---------------------------------------------------------------------------------


def setting_of(workspace: Workspace, experiment: str, name: str) -> Setting:
    """The Setting `experiment/name` of a job or record, even when its file was renamed or removed since (the
    resolved settings were kept)."""
    from lab.core.layout import SETTING_SUFFIXES as SUFFIXES

    exp = workspace.experiment(experiment, must_exist=False)
    if "[" in name:  # an element of a sweep file (lab.core.settings)
        from lab.core.settings import sweep_member

        return sweep_member(exp, name)
    for suffix in SUFFIXES:
        path = exp.settings_dir / f"{name}{suffix}"
        if path.exists():
            return Setting(exp, name, path)
    return Setting(exp, name, exp.settings_dir / f"{name}.json")


def record_path(setting: Setting) -> Path:
    return setting.experiment.runs_dir / f"{setting.name}.json"


def resolved_settings_path(setting: Setting) -> Path:
    return setting.experiment.runs_dir / f"{setting.name}.settings.json"


def log_path(setting: Setting) -> Path:
    return setting.experiment.logs_dir / f"{setting.name}.log"


def metrics_path(setting: Setting) -> Path:
    return setting.experiment.logs_dir / f"{setting.name}.metrics.jsonl"


def record_paths(setting: Setting) -> dict[str, str]:
    """Where the run's files are, relative to the experiment directory (every executor's records carry them)."""
    from lab.core.command import output_dir

    exp_dir = setting.experiment.dir
    return {
        "settings_file": str(setting.path.relative_to(exp_dir)),
        "log_path": str(log_path(setting).relative_to(exp_dir)),
        "metrics_path": str(metrics_path(setting).relative_to(exp_dir)),
        "output_dir": str(output_dir(setting).relative_to(exp_dir)),
    }


# -- reading and writing -------------------------------------------------------------------------------------


def read_record(setting: Setting, strict: bool = True) -> Record | None:
    """The setting's record, or None when there is none or it is not a JSON object (see `write_record`).

    `strict`: a record whose `history` or `attempt` has the wrong type is bad input (BadInput, one line naming
    the file), since deciding what to run from it would be a guess; otherwise those fields are dropped.
    """
    path = record_path(setting)
    rec = read_record_file(path)
    if rec is None:
        return None
    problem = shape_problem(rec)
    if problem:
        if strict:
            root = setting.experiment.workspace.root
            raise BadInput(f"{_shown(path, root)}: {problem}; fix the file or move it away")
        rec = as_record(dict(rec))
        if not isinstance(rec.get("history"), list) or not all(isinstance(h, dict) for h in rec["history"]):
            rec["history"] = []
        if not _is_int(rec.get("attempt")):
            rec["attempt"] = None
    return rec


def read_record_file(path: Path) -> Record | None:
    """A record, or None when there is none (or it cannot be read: records are rewritten whole, atomically)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError):
        return None
    return as_record(data) if isinstance(data, dict) else None


def shape_problem(rec: Record) -> str | None:
    """What is wrong with the types of a record's `history` or `attempt`, or None."""
    history = rec.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return f"'history' must be a list of records, not {_kind(history)}"
    if rec.get("attempt") is not None and not _is_int(rec.get("attempt")):
        return f"'attempt' must be a whole number, not {_kind(rec.get('attempt'))}"
    for h in history:
        if h.get("attempt") is not None and not _is_int(h.get("attempt")):
            return f"'attempt' of an earlier run in 'history' must be a whole number, not {_kind(h.get('attempt'))}"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    return "a list with other things than records" if isinstance(value, list) else f"{type(value).__name__} {json.dumps(value)[:40]}"


def _shown(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def write_record(setting: Setting, record: Record) -> None:
    """Write the record atomically (the search index sees it on its next sync; writers never touch it).

    A file in the record's place that is not a JSON object (damaged by hand, by a tool) is kept beside it as
    `S.json.corrupt-TIME`, never overwritten.
    """
    path = record_path(setting)
    keep_corrupt(path)
    atomic_write_json(path, finite(record))


def keep_corrupt(path: Path) -> Path | None:
    """Move a record file that cannot be read as a JSON object aside (`NAME.corrupt-TIME`); return where."""
    try:
        raw = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        if isinstance(json.loads(raw.decode("utf-8")), dict):
            return None
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = Path(path).with_name(f"{Path(path).name}.corrupt-{stamp}")
    os.replace(path, aside)
    return aside


# -- attempts and history ------------------------------------------------------------------------------------


def next_attempt(record: Record | None) -> int:
    """1 + the highest attempt of the setting that started (queued or cancelled-before-start ones do not count)."""
    if not record:
        return 1
    started = [r.get("attempt") or 0 for r in [record, *_history(record)] if r.get("started_at") and _is_int(r.get("attempt") or 0)]
    return max(started, default=0) + 1


def _history(record: Record) -> list[Record]:
    history = record.get("history", [])
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def history_after(previous: Record | None) -> list[Record]:
    """The history of the record that replaces `previous`: its history, plus `previous` itself unless it was only
    a queued placeholder (a job that never started is no attempt)."""
    if previous is None:
        return []
    history = _history(previous)
    if previous.get("state") not in (None, State.QUEUED):
        history.append(as_record({k: v for k, v in previous.items() if k != "history"}))
    return history


def last_started(record: Record | None) -> Record | None:
    """The latest attempt that actually started (a job cancelled while queued is not a run)."""
    if not record:
        return None
    attempts: list[Record] = [record, *reversed(_history(record))]
    for rec in attempts:
        if rec.get("started_at"):
            return rec
    return None


# -- the one decision ----------------------------------------------------------------------------------------


def should_run(setting: Setting, hash_: str, template: str | None, rerun: bool = False) -> tuple[str, str]:
    """("run", "") or ("skipped" | "already", why) for a setting about to be queued, on any executor.

    Skipped: its last run succeeded with the same resolved settings (`hash_`) and the same command, and the files it
    read (its `inputs`, lab.runs.inputs) are unchanged since; otherwise the run is stale and runs again. The command
    is compared as the report's template, never as the argv: the argv holds absolute paths, and a lab root that
    was moved or cloned has not changed what its settings ran. "already": the record says a job is queued or
    running (the executor that runs it confirms; see `lab.runs.control`).
    """
    rec = read_record(setting)
    if rec is None:
        return "run", ""
    if rec.get("state") in ACTIVE:
        where = f" as Slurm job {rec['slurm_job_id']}" if rec.get("slurm_job_id") else ""
        return "already", f"already {rec['state']}{where}"
    last = last_started(rec)
    if not rerun and last and last.get("state") == State.SUCCEEDED and last.get("settings_hash") == hash_ and last.get("command") == template:
        from lab.runs.inputs import changed_inputs, describe_changes

        changed = changed_inputs(setting.experiment.workspace.root, dict(last))
        if changed:
            return "run", f"stale: {describe_changes(changed, setting.experiment.name)} since its last run"
        return "skipped", "its last run succeeded with the same settings and command (--rerun runs it again)"
    return "run", ""


# -- the records of a run's moments --------------------------------------------------------------------------


def queued(setting: Setting, *, executor: str, resolved: dict[str, Any], hash_: str, template: str | None,
           argv: list[str] | None, extra: dict[str, Any] | None = None, previous: Record | None | EllipsisType = ...,
           queued_at: str | None = None) -> Record:
    """The record of a job that waits (the same keys on every executor); the previous run moves into history.
    `extra`: the executor's job id (`job_id` or `slurm_job_id`)."""
    if isinstance(previous, EllipsisType):
        previous = read_record(setting, strict=False)
    return _record(setting, State.QUEUED, next_attempt(previous), executor, extra, queued_at or now_iso(), None,
                   template, argv, resolved, hash_, {}, previous)


def running(setting: Setting, *, attempt: int, executor: str, resolved: dict[str, Any], hash_: str, template: str | None,
            argv: list[str], started_at: str, provenance: dict[str, Any], extra: dict[str, Any] | None = None,
            drift: dict[str, Any] | None = None) -> Record:
    """The record of an attempt that started; earlier attempts of the setting move into its history. `drift`: its
    `inputs` and `environment` (lab.runs.environment.record_fields)."""
    previous = read_record(setting, strict=False)
    queued_at = (previous or {}).get("queued_at") if (previous or {}).get("state") == State.QUEUED else None
    return _record(setting, State.RUNNING, attempt, executor, extra, queued_at, started_at, template, argv, resolved,
                   hash_, {**provenance, **(drift or {})}, previous)


def _record(setting: Setting, state: State, attempt: int, executor: str, extra: dict[str, Any] | None,
            queued_at: str | None, started_at: str | None, template: str | None, argv: list[str] | None,
            resolved: dict[str, Any], hash_: str, more: dict[str, Any], previous: Record | None) -> Record:
    """A record's fields in their one order (`more`: the started run's provenance and drift, after the paths)."""
    return as_record({
        "experiment": setting.experiment.name,
        "setting": setting.name,
        "state": state,
        "attempt": attempt,
        "executor": executor,
        **(extra or {}),
        "exit_code": None,
        "signal": None,
        "queued_at": queued_at,
        "started_at": started_at,
        "ended_at": None,
        "duration_s": None,
        "command": template,
        "argv": argv,
        "settings": resolved,
        "settings_hash": hash_,
        **record_paths(setting),
        **more,
        "metrics": {},
        "history": history_after(previous),
    })


def ended(setting: Setting, rec: Record, returncode: int | None, *, duration_s: float | None, state: str | None = None,
          reason: str | None = None, log_offset: int | None = None) -> Record:
    """The record of an attempt whose program ended: state, exit code or signal, duration, final metrics.
    A failed run's `reason` is the program's last error line from its log (from `log_offset`, where this
    attempt's part of the log begins), unless one is given."""
    rec = as_record(dict(rec))
    rec["ended_at"] = now_iso()
    rec["duration_s"] = duration_s
    if returncode is not None and returncode < 0:
        rec["signal"] = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else -returncode
        rec["exit_code"] = None
    else:
        rec["exit_code"] = returncode
    rec["state"] = state or (State.SUCCEEDED if returncode == 0 else State.FAILED)
    if reason is None and rec["state"] == State.FAILED:
        what = f"exit code {returncode}" if returncode is not None and returncode >= 0 else f"killed by {rec['signal']}"
        line = last_error_line(log_path(setting), log_offset)
        reason = f"{what}: {line}" if line else what
    if reason:
        rec["reason"] = reason
    rec.update(metrics_fields(setting))
    return _without_process(rec)


def settled(setting: Setting, rec: Record, state: str, reason: str, exit_code: int | None = None) -> Record:
    """The record of an attempt ended by someone else than its supervisor (recovery, Slurm): `interrupted`,
    `cancelled`, or as Slurm says, with the metrics it had written."""
    rec = as_record(dict(rec))
    rec["state"] = state
    rec["ended_at"] = now_iso()
    rec["duration_s"] = seconds_since(rec.get("started_at")) if rec.get("started_at") else None
    rec["exit_code"] = exit_code if exit_code is not None else rec.get("exit_code")
    rec["reason"] = reason
    rec.update(metrics_fields(setting))
    return _without_process(rec)


def recaptured(setting: Setting, rec: Record) -> Record:
    """The record of an ended attempt with its metrics derived again (`lab recapture`), written."""
    rec = as_record(dict(rec))
    rec.pop("metrics_sources", None)
    rec.pop("capture_notes", None)
    rec.pop("hparams", None)
    rec["metrics_path"] = str(metrics_path(setting).relative_to(setting.experiment.dir))
    rec.update(metrics_fields(setting))
    write_record(setting, rec)
    return rec


def metrics_fields(setting: Setting) -> Record:
    """The record's `metrics` of an ended attempt, and `metrics_sources`: what the program wrote to LAB_METRICS,
    exactly, when it wrote anything there; else what lab captured (lab.runs.capture), whose rows then are the
    run's `metrics_path`."""
    own = metrics_path(setting)
    metrics = final_metrics(read_metrics(own))
    if metrics:
        return {"metrics": metrics, "metrics_sources": {k: "lab_metrics" for k in metrics if k != "step"}}
    from lab.runs.capture import read_summary, rows_path

    summary = read_summary(own) or {}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    if not final:
        return {"metrics": {}}
    fields: Record = {"metrics": finite(final), "metrics_sources": summary.get("sources") or {}}
    if rows_path(own).exists():
        fields["metrics_path"] = str(rows_path(own).relative_to(setting.experiment.dir))
    if summary.get("notes"):
        fields["capture_notes"] = summary["notes"][:20]
    if summary.get("hparams"):
        fields["hparams"] = summary["hparams"]
    return fields


def _without_process(rec: Record) -> Record:
    """An ended attempt has no process: its `pid` and `pgid` go (the one place they are dropped)."""
    rec.pop("pid", None)
    rec.pop("pgid", None)
    return rec


def cancelled_before_start(rec: Record, reason: str) -> Record:
    """The record of a job removed from a queue before it started."""
    return as_record(dict(rec, state=State.CANCELLED, ended_at=now_iso(), reason=reason))


def failed_to_start(setting: Setting, *, attempt: int, executor: str, resolved: dict[str, Any], hash_: str, reason: str,
                    extra: dict[str, Any] | None = None) -> Record:
    """A failed record for a job whose program could not be started."""
    previous = read_record(setting, strict=False)
    now = now_iso()
    return as_record({
        "experiment": setting.experiment.name, "setting": setting.name, "state": State.FAILED, "attempt": attempt,
        "executor": executor, **(extra or {}), "exit_code": None, "signal": None, "started_at": now,
        "ended_at": now, "duration_s": 0.0, "reason": reason, "settings": resolved,
        "settings_hash": hash_, **record_paths(setting), "metrics": {}, "history": history_after(previous),
    })
