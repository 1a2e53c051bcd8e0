"""Sweeps that read: runs ordered by their settings' values (numbers as numbers, so 1e-3 < 0.01 < 0.1), the
repeats that differ only in `seed` (or the keys of `group_by:`) folded into one row of mean ± std and n, and
the runs of several experiments in one table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lab.book.metrics import format_value, is_number
from lab.book.runs import Run, flatten
from lab.core.fsutil import natural_key
from lab.errors import BadInput
from lab.runs.state import State

DEFAULT_GROUP_BY = ("seed",)


def value_key(value):
    """Sort key of one setting's value: missing first, then numbers by value, then text naturally, then the rest."""
    if value is _MISSING:
        return (0, 0.0, [])
    if is_number(value):
        return (1, float(value), [])
    if isinstance(value, str):
        return (2, 0.0, natural_key(value))
    return (3, 0.0, natural_key(repr(value)))


_MISSING = object()


def sort_by_values(runs: list[Run], keys: list[str]) -> list[Run]:
    """`runs` ordered by the values of the differing settings `keys` (in that order), then by name."""
    if not keys:
        return list(runs)
    flat = {id(r): flatten(r.settings) if r.settings else {} for r in runs}
    return sorted(runs, key=lambda r: ([value_key(flat[id(r)].get(k, _MISSING)) for k in keys], natural_key(r.setting)))


def names_needed(runs: list[Run], keys: list[str]) -> bool:
    """Whether the runs' names are the only way to tell some of them apart (their differing values are not)."""
    seen = set()
    for r in runs:
        flat = flatten(r.settings) if r.settings else {}
        values = tuple(repr(flat.get(k, _MISSING)) if k in flat else "<missing>" for k in keys)
        if not keys or values in seen:
            return True
        seen.add(values)
    return False


def group_keys(exp, meta: dict | None = None) -> list[str]:
    """`group_by:` of the report's front matter, else of lab.yaml, else ['seed']."""
    meta = exp.meta() if meta is None else meta
    value = meta.get("group_by")
    where = f"{exp.report_path}: group_by"
    if value is None:
        value = exp.workspace.config.get("group_by")
        where = f"{exp.workspace.root / 'lab.yaml'}: group_by"
    if value is None:
        return list(DEFAULT_GROUP_BY)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadInput(f"{where}: must be a list of setting keys, e.g. group_by: [seed]")
    return value


@dataclass
class Group:
    """Runs that differ only in the group keys: their shared values and each metric's mean, std and n."""

    settings: dict
    runs: list[Run]
    stats: dict = field(default_factory=dict)  # metric -> (mean, std or None, n)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_text(v)}" for k, v in self.settings.items()) or "all runs"


def _text(value) -> str:
    return format_value(value)


def group_runs(table, keys: list[str]) -> list[Group]:
    """The finished runs of `table` folded over `keys`: one Group per combination of the other differing settings,
    in the table's order; a metric's std is the sample standard deviation (None with one run)."""
    rest = [k for k in table.setting_keys if k not in keys and not any(k.startswith(g + ".") for g in keys)]
    groups: dict[tuple, Group] = {}
    for r in table.runs:
        if r.state not in (State.SUCCEEDED, "stale"):
            continue
        flat = flatten(r.settings) if r.settings else {}
        values = {k: flat[k] for k in rest if k in flat}
        key = tuple(repr(values.get(k, _MISSING)) for k in rest)
        groups.setdefault(key, Group(values, [])).runs.append(r)
    for g in groups.values():
        for metric in table.metric_keys:
            xs = [float(r.metrics[metric]) for r in g.runs if is_number(r.metrics.get(metric))]
            if not xs:
                continue
            mean = sum(xs) / len(xs)
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
            g.stats[metric] = (mean, std, len(xs))
    return list(groups.values())


def format_stat(stat) -> str:
    if stat is None:
        return ""
    mean, std, _ = stat
    return format_value(mean) if std is None else f"{format_value(mean)} ± {format_value(std)}"


def grouped_rows(table, groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the grouped table as plain text: the shared settings, n, each metric's mean ± std."""
    rest = list(dict.fromkeys(k for g in groups for k in g.settings))
    header = [*rest, "n", *table.metric_keys]
    rows = [[_text(g.settings[k]) if k in g.settings else "" for k in rest] + [str(g.n)]
            + [format_stat(g.stats.get(m)) for m in table.metric_keys] for g in groups]
    return header, rows
