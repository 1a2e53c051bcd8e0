"""The metrics protocol, program side: append one JSON object per line to the file named by `LAB_METRICS`."""

from __future__ import annotations

import json
import math
import os


def log_metrics(step: int | None = None, **values) -> None:
    """Record metrics for the running lab job, e.g. `lab.log_metrics(step=10, loss=0.52)`.

    Outside a lab job (no `LAB_METRICS`) it does nothing, so programs stay runnable by hand. Each call appends one
    line and closes the file, so a crash never leaves a partial record behind the last complete line.
    """
    path = os.environ.get("LAB_METRICS")
    if not path:
        return
    row = {} if step is None else {"step": step}
    row.update({k: _plain(v) for k, v in values.items()})
    line = json.dumps(row, ensure_ascii=False, allow_nan=False, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def _plain(value):
    # numpy / torch scalars become Python numbers; NaN and infinities become strings so every line stays JSON.
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
