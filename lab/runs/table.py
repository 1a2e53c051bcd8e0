"""A run's row of the `lab status` table, as text cells: run, state, started (local time), duration, exit, key
metrics. The status cache keeps each record's row beside its summary (`lab.runs.statuscache`), so the table of a
large lab needs no JSON decoding; that is why this text is made here and not in `lab.cli`."""

from __future__ import annotations

from collections.abc import Mapping

from lab.runs.state import State

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from typing import Any


def key_metrics(metrics: dict, limit: int = 3) -> list[tuple[str, object]]:
    """The few metrics worth a column: evaluation ones first, then losses and the rest (no step/epoch)."""
    keys = [k for k in metrics if k not in ("step", "epoch") and not k.startswith("_")]
    keys.sort(key=lambda k: (0 if k.startswith(("eval", "test")) else 1 if "loss" in k else 2))
    return [(k, metrics[k]) for k in keys[:limit]]


def table_cells(r: Mapping[str, Any]) -> list[str]:
    """One row of the `lab status` table: run, state, started (local time), duration, exit, key metrics (and why a
    failed or interrupted run ended: the program's last error line)."""
    exit_text = "" if r.get("exit_code") is None else str(r["exit_code"])
    if r.get("signal"):
        exit_text = str(r["signal"])
    running = r.get("state") == State.RUNNING
    metrics = (r.get("progress") if running else r.get("metrics")) or {}
    state = str(r.get("state")) + (f" (slurm {r['slurm_job_id']})" if r.get("slurm_job_id") else "")
    if running and r.get("gpus"):
        state += f" (GPU {','.join(map(str, r['gpus']))})"
    last = metrics_text(metrics, with_step=running)
    if r.get("state") == State.QUEUED and r.get("waiting"):
        last = r["waiting"]  # waiting for a GPU: 0 busy (pid 4242, uid 1001, 21.3 GiB)
    if r.get("state") in (State.FAILED, State.INTERRUPTED) and isinstance(r.get("reason"), str) and r["reason"]:
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
