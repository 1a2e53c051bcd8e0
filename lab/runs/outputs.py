"""What a run's program leaves behind that its record sums up: the metrics lines it wrote (the final value of each
key, the latest while it runs) and the last error line of its log (a failed run's `reason`). Values are made strict
JSON here (`finite`). The record's owner, `lab.runs.record`, re-exports these names."""

from __future__ import annotations

import math
import os
from pathlib import Path

from lab.core.fsutil import read_jsonl

TYPE_CHECKING = False  # not typing's: `lab status` imports this module, and importing typing costs it a millisecond
if TYPE_CHECKING:
    from typing import Any


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by the string "NaN", "Infinity" or "-Infinity"
    (strict JSON has no such numbers; a program's metrics line may)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The metrics rows of a run; lines that are not JSON objects are skipped, never fatal."""
    return read_jsonl(path)


def final_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each key (non-finite numbers as strings, see `finite`)."""
    final: dict[str, Any] = {}
    for row in rows:
        final.update(row)
    result: dict[str, Any] = finite(final)
    return result


def latest_metrics(path: Path | str) -> dict[str, Any] | None:
    """The last metrics values of a running job (read from the end of its metrics file), or None."""
    from lab.core.fsutil import json_objects

    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        size, tail = 0, ""
    lines = tail.splitlines()[1:] if size > 65536 else tail.splitlines()  # the first may be cut
    own = final_metrics(list(json_objects(lines)))
    if own:
        return own
    from lab.runs.capture import progress  # what lab captured from the program's output and files

    captured = progress(path)
    return finite(captured) if captured else None


ERROR_WORDS = ("error", "exception", "fatal", "killed", "abort", "traceback", "panic", "failed")


def last_error_line(path: Path, offset: int | None = None, max_len: int = 300) -> str | None:
    """The program's last error line in its log (from `offset`): the last line that names an error, else the
    last non-empty line; None when the attempt wrote nothing."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(offset or 0, size - 65536)
            f.seek(start)
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("===== lab: ")]
    if not lines:
        return None
    chosen = next((line for line in reversed(lines) if any(w in line.lower() for w in ERROR_WORDS)), lines[-1])
    chosen = "".join(c if c.isprintable() else " " for c in chosen)
    return chosen if len(chosen) <= max_len else chosen[: max_len - 3] + "..."
