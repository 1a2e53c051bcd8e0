"""An experiment's runs table: what `lab compare` prints, what `lab report` writes and what the lab book shows.

A run is the latest record of one setting (`runs/S.json`), with its final metrics (the last value of each key in
its metrics file, else the record's `metrics`). The table keeps only the settings that differ between runs, groups
them apart from the metrics, shows evaluation and test metrics first and bookkeeping (max_steps, runtimes, sample
counts, the last logged `loss` beside `train_loss`) not at all unless asked for, and marks the best run by one
metric (`eval_accuracy` higher, `eval_loss` lower, ... or the one asked for). The columns can be chosen: `metrics:`
in the report's front matter or in `lab.yaml`, or `lab compare --metrics a,b` / `--all`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.book.metrics import (BOOKKEEPING, CURVE_ONLY, DEFAULT_MAX_METRICS, GROUP_ORDER, NOT_METRICS, best_metric,  # noqa: F401
                              configured_metrics, default_metric, direction, is_bookkeeping, is_metric, is_number,
                              metric_group, metric_order, parse_metric_names, format_delta, format_duration, format_value)
from lab.book.runs import Run, differing_settings, flatten, load_runs  # noqa: F401
from lab.book.sweep import sort_by_values
from lab.errors import BadInput
from lab.core.markdown import escape_markdown as md_cell
from lab.runs.state import State


@dataclass
class RunsTable:
    """The comparison of an experiment's runs."""

    experiment: str
    runs: list[Run]
    setting_keys: list[str]
    metric_keys: list[str]
    metric: str | None
    mode: str | None
    best: str | None
    hidden_metrics: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "experiment": self.experiment,
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best,
            "differing_settings": self.setting_keys,
            "metrics": self.metric_keys,
            "hidden_metrics": self.hidden_metrics,
            "runs": [
                {
                    "setting": r.setting,
                    "state": r.state,
                    "best": r.setting == self.best,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "duration_s": r.duration_s,
                    "exit_code": r.exit_code,
                    "settings": {k: flatten(r.settings).get(k) for k in self.setting_keys} if r.settings else {},
                    "metrics": r.metrics,
                    **({"changed_inputs": r.changed_inputs} if r.changed_inputs else {}),
                    **({"attempt": r.attempt, "reproduces": r.reproduces, "metric_deltas": r.deltas}
                       if r.reproduces is not None else {}),
                    **({"reproduction": r.reproduction} if r.reproduction else {}),
                }
                for r in self.runs
            ],
        }

    def header(self) -> list[str]:
        return ["setting", "state", "duration", *self.setting_keys, *self.metric_keys]

    RUN_COLUMNS = 3  # setting, state, duration

    def groups(self) -> list[tuple[str, list[str]]]:
        """The header in groups: ('run', ...), ('settings', differing settings), then one group per metric
        prefix ('eval', 'test', ...; '' for metrics without one), as (group, column labels) in header order."""
        out = [("run", ["setting", "state", "duration"])]
        if self.setting_keys:
            out.append(("settings", list(self.setting_keys)))
        for key in self.metric_keys:
            group = metric_group(key)
            label = key[len(group) + 1:] if group else key
            if out[-1][0] == group and len(out) > 1 + bool(self.setting_keys):
                out[-1][1].append(label)
            else:
                out.append((group, [label]))
        return out

    def rows(self) -> list[list[str]]:
        """Each run as plain text cells, in header order."""
        out = []
        for r in self.runs:
            flat = flatten(r.settings) if r.settings else {}
            out.append([
                r.setting,
                r.state,
                format_duration(r.duration_s),
                *[format_value(flat[k]) if k in flat else "" for k in self.setting_keys],
                *[format_value(r.metrics[k]) if k in r.metrics else "" for k in self.metric_keys],
            ])
        return out

    def notes(self) -> list[str]:
        """One line per stale run (what changed) and per reproduction (the metric differences)."""
        from lab.runs.inputs import describe_changes

        out = []
        for r in self.runs:
            if r.changed_inputs:
                out.append(f"{r.setting} is stale: {describe_changes(r.changed_inputs, self.experiment)} since it ran")
            if r.reproduces is not None:
                diffs = [f"{k} {format_delta(v)}" for k, v in sorted(r.deltas.items(), key=lambda kv: metric_order(kv[0]))]
                same = all(v == 0 for v in r.deltas.values())
                what = "reproduced exactly" if same and r.deltas else ("; ".join(diffs) or "no metrics to compare")
                out.append(f"{r.setting} (attempt {r.attempt}) reproduces {r.setting}@{r.reproduces}: {what}")
            if r.reproduction:
                out.append(f"{r.setting}: {reproduction_note(r.reproduction)}")
        return out

    def best_note(self) -> str:
        if not self.metric:
            return ""
        better = "higher" if self.mode == "max" else "lower"
        if self.best:
            return f"best: {self.best} by {self.metric} ({better} is better)"
        return f"no finished run has {self.metric} yet"

    def hidden_note(self) -> str:
        """What the table leaves out: results by name, bookkeeping by count."""
        if not self.hidden_metrics:
            return ""
        results = [k for k in self.hidden_metrics if not is_bookkeeping(k, self.hidden_metrics + self.metric_keys)]
        rest = len(self.hidden_metrics) - len(results)
        parts = [", ".join(results[:6]) + (f" and {len(results) - 6} more" if len(results) > 6 else "")] if results else []
        if rest:
            parts.append(f"{rest} bookkeeping value{'s' if rest != 1 else ''}")
        return "not shown: " + " and ".join(parts)

    def markdown(self) -> str:
        """A Markdown table (any viewer), the settings that differ in italics, the best run marked with ★; every
        cell escaped."""
        if not self.runs:
            return "_No runs yet._"
        header = [md_cell(h) for h in self.header()]
        n = self.RUN_COLUMNS
        for i in range(n, n + len(self.setting_keys)):
            header[i] = f"*{header[i]}*"
        align = ["---"] * n + ["---"] * len(self.setting_keys) + ["--:"] * len(self.metric_keys)
        align[2] = "--:"
        # Every run succeeded: a column saying so on each row says nothing (the notes below name stale runs).
        keep = [i for i in range(len(header)) if i != 1 or any(r.state != State.SUCCEEDED for r in self.runs)]
        header, align = [header[i] for i in keep], [align[i] for i in keep]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        for run, cells in zip(self.runs, self.rows()):
            cells = [md_cell(cells[i]) for i in keep]
            if run.setting == self.best:
                cells[0] = f"**{cells[0]}** ★"
            lines.append("| " + " | ".join(cells) + " |")
        notes = []
        if self.best:
            notes.append(f"★ {md_cell(self.best_note())}")
        elif self.metric:
            notes.append(f"_{md_cell(self.best_note())}_")
        if self.setting_keys:
            notes.append("*italic*: the settings that differ")
        if self.hidden_metrics:
            notes.append(md_cell(self.hidden_note()))
        if notes:
            lines += ["", " · ".join(notes)]
        for extra in self.notes():  # stale runs and reproductions
            lines += ["", f"_{md_cell(extra)}_"]
        return "\n".join(lines)


def runs_table(exp, metric: str | None = None, mode: str | None = None, runs: list[Run] | None = None,
               metrics: list[str] | None = None, all_metrics: bool = False, configured: list[str] | None = None) -> RunsTable:
    """Compare an experiment's runs; `metric`/`mode` ('max'|'min') pick the best run (default: by name).

    The metric columns: `metrics` when given (names no run has are refused), every metric with `all_metrics`,
    else `metrics:` of the report's front matter or lab.yaml, else up to DEFAULT_MAX_METRICS results, evaluation
    and test first, bookkeeping left out. `configured` stands for that `metrics:` when the caller has read it."""
    if mode not in (None, "max", "min"):
        raise BadInput(f"mode must be 'max' or 'min', not {mode!r}")
    runs = load_runs(exp) if runs is None else runs
    present: dict[str, None] = {}
    numeric: dict[str, None] = {}
    for r in runs:
        for k, v in r.metrics.items():
            if is_number(v) and k != "step":
                numeric[k] = None
                if is_metric(k):
                    present[k] = None
    chosen = metrics is not None
    if chosen:
        unknown = [m for m in metrics if m not in numeric]
        if unknown:
            known = ", ".join(sorted(numeric)) or "none yet"
            raise BadInput(f"no run of {exp.name} has a metric {unknown[0]!r} (metrics: {known})")
        metric_keys = list(dict.fromkeys(metrics))
    elif all_metrics:
        metric_keys = sorted(numeric, key=metric_order)
    else:
        configured = configured_metrics(exp) if configured is None else configured
        if configured:
            chosen = True
            metric_keys = [m for m in configured if m in numeric]
        else:
            metric_keys = sorted((k for k in present if not is_bookkeeping(k, present)), key=metric_order)
    if metric is not None:
        if metric not in present:
            known = ", ".join(sorted(present)) or "none yet"
            raise BadInput(f"no run of {exp.name} has a metric {metric!r} (metrics: {known})")
        mode = mode or direction(metric) or "max"
    else:
        metric = default_metric(list(present))
        if metric is not None:
            mode = mode or direction(metric) or "max"
    best = None
    if metric is not None:
        finished = [r for r in runs if r.state in (State.SUCCEEDED, "stale") and is_number(r.metrics.get(metric))]
        if finished:
            pick = max if mode == "max" else min
            best = pick(finished, key=lambda r: r.metrics[metric]).setting
        if metric not in metric_keys and not chosen:
            metric_keys.insert(0, metric)
    if not chosen and not all_metrics and len(metric_keys) > DEFAULT_MAX_METRICS:
        keep = metric_keys[:DEFAULT_MAX_METRICS]
        if metric in metric_keys and metric not in keep:
            keep[-1] = metric
        metric_keys = sorted(keep, key=metric_order)
    hidden = [k for k in sorted(numeric, key=lambda k: (is_bookkeeping(k, numeric), metric_order(k)))
              if k not in metric_keys and k not in NOT_METRICS]
    keys = differing_settings(runs)
    return RunsTable(exp.name, sort_by_values(runs, keys), keys, metric_keys, metric, mode if metric else None, best, hidden)


def across(exps, **options):
    """One table over the runs of several experiments: each run named EXP/SETTING."""
    runs = []
    for exp in exps:
        for r in load_runs(exp):
            r.setting = f"{exp.name}/{r.setting}"
            runs.append(r)
    table = runs_table(exps[0], runs=runs, **options)
    table.experiment = " + ".join(e.name for e in exps)
    return table


def reproduction_note(summary: dict) -> str:
    """`reproduced @1 exactly` / `reproduction of @1: eval_loss +0.002` / `reproduction of @1 failed`."""
    n, state = summary.get("reproduces"), summary.get("state")
    if state != State.SUCCEEDED:
        return f"reproduction of @{n} {state}"
    if summary.get("exact"):
        return f"reproduced @{n} exactly"
    deltas = summary.get("metric_deltas") if isinstance(summary.get("metric_deltas"), dict) else {}
    shown = "; ".join(f"{k} {format_delta(v)}" for k, v in deltas.items() if is_number(v) and v != 0 and is_metric(k))
    return f"reproduction of @{n}: {shown or 'no metrics to compare'}"
