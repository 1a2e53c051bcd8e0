"""The metrics protocol, program side: append one JSON object per line to the file named by `LAB_METRICS`."""

from __future__ import annotations

import json
import math
import os
import re


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


# -- which metric says which run is best --------------------------------------------------------------------
# (the book's runs table and the queue's summary in a notification decide alike)

# The default "best" metric: the first of these that some run has, else the first with a known direction.
PREFERRED = (
    "eval_accuracy", "eval_f1", "eval_exact_match", "eval_loss", "test_accuracy", "test_loss",
    "val_accuracy", "val_loss", "accuracy", "f1", "loss", "train_loss",
)
HIGHER = {"accuracy", "acc", "f1", "precision", "recall", "auc", "roc_auc", "bleu", "rouge", "rouge1", "rouge2",
          "rougel", "exact_match", "em", "score", "map", "ndcg", "mrr", "r2", "matthews_correlation", "pearson",
          "spearmanr", "spearman", "top1", "top5", "reward", "return", "iou", "miou", "dice"}
LOWER = {"loss", "error", "err", "perplexity", "ppl", "wer", "cer", "mse", "mae", "rmse", "nll", "bpd", "fid"}


def is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float: nothing lab can compare or draw
        return False


def direction(metric: str) -> str | None:
    """'max' when higher is better, 'min' when lower is better, None when the name does not say."""
    name = metric.lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", name) if t]
    for candidate in (name.rsplit("/", 1)[-1], *reversed(tokens)):
        for prefix in ("", "eval_", "test_", "val_", "train_"):
            word = candidate.removeprefix(prefix)
            if word in HIGHER:
                return "max"
            if word in LOWER:
                return "min"
    return None


def best_metric(keys, order=None) -> str | None:
    """The metric that says which run is best: the first of PREFERRED present, else the first key (in `order`, a
    sort key; default: by name) whose name says which way is better."""
    for name in PREFERRED:
        if name in keys:
            return name
    for key in sorted(keys, key=order):
        if direction(key) is not None:
            return key
    return None
