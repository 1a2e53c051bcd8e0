"""An experiment's runs table: what `lab compare` prints, what `lab report` writes and what the lab book shows.

A run is the latest record of one setting (`runs/S.json`), with its final metrics (the last value of each key in
its metrics file, else the record's `metrics`). The table keeps only the settings that differ between runs, groups
them apart from the metrics, shows evaluation and test metrics first and bookkeeping (max_steps, runtimes, sample
counts, the last logged `loss` beside `train_loss`) not at all unless asked for, and marks the best run by one
metric (`eval_accuracy` higher, `eval_loss` lower, ... or the one asked for). The columns can be chosen: `metrics:`
in the report's front matter or in `lab.yaml`, or `lab compare --metrics a,b` / `--all`.
"""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lab.runs import record as records
from lab.errors import BadInput, LabError
from lab.core.fsutil import atomic_write_text, natural_key, read_text
# Which metric says which run is best, and which way is better: one decision, in lab.core.metrics (the queue's
# summary in a notification names the best run too).
from lab.core.metrics import best_metric, direction, is_number
from lab.core.settings import flatten, list_settings

RESULTS_START = "<!-- lab:results -->"
RESULTS_END = "<!-- /lab:results -->"

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


def reproduction_note(summary: dict) -> str:
    """`reproduced @1 exactly` / `reproduction of @1: eval_loss +0.002` / `reproduction of @1 failed`."""
    n, state = summary.get("reproduces"), summary.get("state")
    if state != "succeeded":
        return f"reproduction of @{n} {state}"
    if summary.get("exact"):
        return f"reproduced @{n} exactly"
    deltas = summary.get("metric_deltas") if isinstance(summary.get("metric_deltas"), dict) else {}
    shown = "; ".join(f"{k} {format_delta(v)}" for k, v in deltas.items() if is_number(v) and v != 0 and is_metric(k))
    return f"reproduction of @{n}: {shown or 'no metrics to compare'}"


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
    if checker is not None and run.state == "succeeded":
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


def metric_group(key: str) -> str:
    """The group a metric is shown under: its prefix when that names a split (eval, test, train...), else ''."""
    prefix, sep, rest = key.partition("_")
    return prefix if sep and rest and prefix in GROUP_ORDER else ""


def _metric_order(key: str):
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
                diffs = [f"{k} {format_delta(v)}" for k, v in sorted(r.deltas.items(), key=lambda kv: _metric_order(kv[0]))]
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
        keep = [i for i in range(len(header)) if i != 1 or any(r.state != "succeeded" for r in self.runs)]
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
        metric_keys = sorted(numeric, key=_metric_order)
    else:
        configured = configured_metrics(exp) if configured is None else configured
        if configured:
            chosen = True
            metric_keys = [m for m in configured if m in numeric]
        else:
            metric_keys = sorted((k for k in present if not is_bookkeeping(k, present)), key=_metric_order)
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
        finished = [r for r in runs if r.state in ("succeeded", "stale") and is_number(r.metrics.get(metric))]
        if finished:
            pick = max if mode == "max" else min
            best = pick(finished, key=lambda r: r.metrics[metric]).setting
        if metric not in metric_keys and not chosen:
            metric_keys.insert(0, metric)
    if not chosen and not all_metrics and len(metric_keys) > DEFAULT_MAX_METRICS:
        keep = metric_keys[:DEFAULT_MAX_METRICS]
        if metric in metric_keys and metric not in keep:
            keep[-1] = metric
        metric_keys = sorted(keep, key=_metric_order)
    hidden = [k for k in sorted(numeric, key=lambda k: (is_bookkeeping(k, numeric), _metric_order(k)))
              if k not in metric_keys and k not in NOT_METRICS]
    return RunsTable(exp.name, runs, differing_settings(runs), metric_keys, metric, mode if metric else None, best, hidden)


def default_metric(keys: list[str]) -> str | None:
    return best_metric(keys, order=_metric_order)


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


_CELL_SPECIAL = re.compile(r"([\\`*\[\]|{}]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_cell(text) -> str:
    """The user's own text (settings values, names) as one table cell that reads well in the Markdown source."""
    text = " ".join(str(text).split())
    return html.escape(_CELL_SPECIAL.sub(lambda m: "\\" + m.group(0), text), quote=False)


_MD_SPECIAL = re.compile(r"([\\`*{}\[\]|#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md_escape(text) -> str:
    """Untrusted text made inert inside a Markdown line (a cell, link text, a heading): HTML escaped, and no
    emphasis, code, link, image, attribute list or table syntax survives. Whitespace is collapsed to one line."""
    text = " ".join(str(text).split())
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


# --- lab report: the results block of report.md ------------------------------------------------------------


def replace_block(text: str, start: str, end: str, content: str, where: str, heading: str = "## Results") -> str:
    """`text` with what lies between the markers replaced by `content`; markers (under `heading`) added if absent."""
    n_start, n_end = text.count(start), text.count(end)
    if n_start == 0 and n_end == 0:
        sep = "" if text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        if not text:
            sep = ""
        return f"{text}{sep}{heading}\n\n{start}\n{content}\n{end}\n"
    if n_start != 1 or n_end != 1:
        raise BadInput(f"{where}: expected one {start} and one {end} marker, found {n_start} and {n_end}; fix them by hand")
    i, j = text.index(start), text.index(end)
    if j < i:
        raise BadInput(f"{where}: {end} comes before {start}; fix the markers by hand")
    return f"{text[: i + len(start)]}\n{content}\n{text[j:]}"


def write_results(exp, metric: str | None = None, mode: str | None = None, metrics: list[str] | None = None,
                  all_metrics: bool = False) -> RunsTable:
    """Write the runs table into the experiment's report.md between the results markers (atomically)."""
    if not exp.report_path.is_file():
        raise BadInput(f"{exp.report_path}: no report; make the experiment with 'lab new {exp.name}'")
    table = runs_table(exp, metric=metric, mode=mode, metrics=metrics, all_metrics=all_metrics)
    where = str(exp.report_path)
    text = read_text(exp.report_path, newline="")
    new = replace_block(text, RESULTS_START, RESULTS_END, table.markdown(), where)
    if new != text:
        atomic_write_text(exp.report_path, new)
    return table


# --- lab book: a thin alias of mkdocs ------------------------------------------------------------------------


def mkdocs_argv(root: Path, serve: bool = False, strict: bool = False, site_dir: str | None = None,
                dev_addr: str | None = None) -> list[str]:
    """The mkdocs command line that `lab book` runs in the lab root."""
    config = Path(root) / "mkdocs.yml"
    if not config.is_file():
        raise BadInput(f"no mkdocs.yml in {root}; run 'lab init {root}' to write one")
    argv = [sys.executable, "-m", "mkdocs", "serve" if serve else "build", "-f", str(config)]
    if strict:
        argv.append("--strict")
    if site_dir and not serve:
        argv += ["--site-dir", str(Path(site_dir).resolve())]
    if dev_addr and serve:
        argv += ["--dev-addr", dev_addr]
    return argv


def run_mkdocs(root: Path, **options) -> None:
    """Build (or serve) the lab book with mkdocs; a failed build raises LabError."""
    argv = mkdocs_argv(root, **options)
    (Path(root) / "docs").mkdir(exist_ok=True)  # mkdocs needs its docs_dir; labs made before it existed lack it
    try:
        code = subprocess.run(argv, cwd=root).returncode
    except KeyboardInterrupt:
        return
    if code != 0:
        raise LabError(f"mkdocs {'serve' if options.get('serve') else 'build'} failed (exit {code}); see its messages above")
