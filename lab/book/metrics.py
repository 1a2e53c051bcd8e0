"""Metric names: which keys are results, which are bookkeeping, how they group (eval, test, train ...) and which
one picks the best run. `metrics:` of a report's front matter or lab.yaml chooses the columns.
"""

from __future__ import annotations

import json
import math

from lab.errors import BadInput
# Which metric says which run is best, and which way is better: one decision, in lab.core.metrics (the queue's
# summary in a notification names the best run too).
from lab.core.metrics import best_metric, direction, is_number

__all__ = ["best_metric", "direction", "is_number"]


# Keys that are bookkeeping, not results: never a table column, never plotted.
NOT_METRICS = frozenset({"step", "epoch", "total_flos"})
NOT_METRIC_SUFFIXES = ("_runtime", "_per_second")
# Plotted, but their final value says little: left out of the table (still in --json).
CURVE_ONLY = frozenset({"learning_rate", "grad_norm"})
# Bookkeeping, not results: hidden from the table unless asked for (`--all`, or named in `metrics:`).
BOOKKEEPING = frozenset({"max_steps", "num_train_epochs", "num_examples", "total_flos", "train_steps"})
BOOKKEEPING_SUFFIXES = ("_runtime", "_per_second", "_samples", "_flos", "_steps_per_second")
# The default table shows at most this many metrics (six fit a 1280 px page and a 100-column terminal).
DEFAULT_MAX_METRICS = 6
# Metric groups by name prefix, in table order: evaluation first, then test, others, training last.
GROUP_ORDER = {"eval": 0, "val": 0, "validation": 0, "dev": 0, "test": 1, "predict": 1, "": 2, "train": 3}

def is_metric(key: str) -> bool:
    return key not in NOT_METRICS and not key.endswith(NOT_METRIC_SUFFIXES)



def metric_group(key: str) -> str:
    """The group a metric is shown under: its prefix when that names a split (eval, test, train...), else ''."""
    prefix, sep, rest = key.partition("_")
    return prefix if sep and rest and prefix in GROUP_ORDER else ""


def metric_order(key: str):
    return (GROUP_ORDER[metric_group(key)], metric_group(key), key)


def is_bookkeeping(key: str, keys) -> bool:
    """A key that describes the run rather than its result; `loss` is the last logged training loss, bookkeeping
    beside the `train_loss` that sums up the training."""
    if key in NOT_METRICS or key in BOOKKEEPING or key in CURVE_ONLY or key.endswith(BOOKKEEPING_SUFFIXES + NOT_METRIC_SUFFIXES):
        return True
    return key == "loss" and "train_loss" in keys


def parse_metric_names(value, where: str) -> list[str]:
    """`metrics:` of a report's front matter or lab.yaml (a list of names, or one comma-separated string)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{where}: metrics must be a list of metric names, e.g. metrics: [eval_accuracy, eval_loss]")
    return list(dict.fromkeys(v.strip() for v in value if v.strip()))


def configured_metrics(exp, meta: dict | None = None) -> list[str]:
    """The columns chosen for `exp`: `metrics:` of its report's front matter, else of lab.yaml ([] when neither)."""
    meta = exp.meta() if meta is None else meta
    if meta.get("metrics") is not None:
        return parse_metric_names(meta.get("metrics"), f"{exp.report_path}: metrics")
    return parse_metric_names(exp.workspace.config.get("metrics"), f"{exp.workspace.root / 'lab.yaml'}: metrics")



def default_metric(keys: list[str]) -> str | None:
    return best_metric(keys, order=metric_order)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def format_delta(value: float) -> str:
    return "±0" if value == 0 else f"{value:+.4g}"


def format_value(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
