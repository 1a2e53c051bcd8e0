"""One run's captured metrics: its output and its files read together (`Capture`), and the merge rule.

The rule, per metric name:
1. a program that writes `LAB_METRICS` (lab's own program, or one that calls `lab.log_metrics`) keeps exactly
   those metrics: nothing is captured beside them, so nothing is counted twice;
2. otherwise a source with real steps gives the history: `trainer_state.json` first, then TensorBoard events, then
   Lightning's metrics.csv (the first that has the metric);
3. `*_results.json` give final values (they win over the last logged value; a metric only there has just that);
4. what was scraped from the output fills in only the metrics no file has.
The result says where each metric came from (`sources`: metric -> `lab_metrics`, `trainer_state`, `tfevents`,
`csv`, `results` or `output`), and why anything was skipped (`notes`, one line each).
"""

from __future__ import annotations

import os
import time
from operator import itemgetter
from pathlib import Path

from lab.runs.capture.files import Files
from lab.runs.capture.output import OutputScraper
from lab.runs.capture.patterns import Options, Patterns

READ_CHUNK = 16 << 20
BUDGET_CHUNK = 256 << 10  # read at a time by a reading with a time budget
MAP_OVER = 64 << 20


class Capture:
    """The capture of one attempt: `poll()` reads what was added to the log and the files since the last call;
    `result()` merges what is known now."""

    def __init__(self, log_path, offset: int = 0, output_dirs=(), options: Options | None = None,
                 since: float = 0.0, metrics_path=None, end: int | None = None):
        self.options = options or Options()
        self.log_path = Path(log_path) if log_path else None
        self.offset = offset
        self.end = end  # where this attempt's part of the log ends (recapture of an earlier attempt), or None
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.lab_metrics = False
        scrape = self.options.enabled and (self.options.output or self.options.patterns)
        patterns = Patterns(self.options.patterns) if self.options.enabled and self.options.patterns else None
        self.scraper = OutputScraper(patterns, builtin=bool(self.options.output)) if scrape else None
        self.files = Files(output_dirs, since) if self.options.enabled and self.options.files else None

    def writes_lab_metrics(self) -> bool:
        if not self.lab_metrics and self.metrics_path is not None:
            try:
                self.lab_metrics = self.metrics_path.stat().st_size > 0
            except OSError:
                pass
        return self.lab_metrics

    def poll(self, final: bool = False, budget_s: float | None = None) -> bool:
        """Read what is new (with `budget_s`: about that many seconds of the log's reading at most, the rest at
        the next call); whether anything changed."""
        if self.writes_lab_metrics():
            return False
        changed = False
        if self.scraper is not None and self.log_path is not None:
            changed = self._read_log(budget_s) or changed
            if final:
                self.scraper.end()
        if self.files is not None:
            changed = self.files.poll() or changed
        return changed

    def _read_log(self, budget_s: float | None = None) -> bool:
        try:
            f = open(self.log_path, "rb")
        except OSError:
            return False
        read = False
        with f:
            size = os.fstat(f.fileno()).st_size if self.end is None else self.end
            if budget_s is None and size - self.offset > MAP_OVER:  # a big log (lab recapture): scanned in place
                import mmap

                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                    done = self.scraper.whole_lines(buf, self.offset, min(size, len(buf)))
                read = done > self.offset
                self.offset = done
            f.seek(self.offset)
            piece = READ_CHUNK if budget_s is None else BUDGET_CHUNK
            deadline = None if budget_s is None else time.monotonic() + budget_s
            while deadline is None or time.monotonic() < deadline:
                want = piece if self.end is None else min(piece, self.end - self.offset)
                if want <= 0:
                    break
                data = f.read(want)
                if not data:
                    break
                self.offset += len(data)
                self.scraper.feed(data)
                read = True
        return read

    def notes(self) -> list[str]:
        notes = list(self.scraper.notes) if self.scraper is not None else []
        if self.files is not None:
            notes += self.files.notes
        return notes

    def result(self, rows: bool = True) -> dict:
        """{"rows": [{"step", metric: value}], "final": {...}, "sources": {...}, "step", "notes", "hparams"}
        (`lab_metrics: true` and nothing else when the program writes LAB_METRICS). `rows=False`: no rows (the
        live progress, which shows the latest values only)."""
        if self.writes_lab_metrics():
            return {"lab_metrics": True}
        chosen: dict[str, tuple[str, list]] = {}
        finals: dict = {}
        hparams: dict = {}
        if self.files is not None:
            for source, series in self.files.sources().items():
                for key, points in series.items():
                    if key not in chosen and points:
                        chosen[key] = (source, points)
            for key, value in self.files.results.items():
                finals[key] = value
                if key not in chosen:
                    chosen[key] = ("results", [])
            hparams = self.files.hparams
        if self.scraper is not None:
            for key, points in self.scraper.series.points.items():
                if key not in chosen and points:
                    chosen[key] = ("output", points)
        return merged(chosen, finals, self.notes(), hparams, rows)


def merged(chosen: dict, finals: dict, notes: list, hparams: dict, with_rows: bool = True) -> dict:
    final: dict = {}
    sources: dict = {}
    last_step = None
    for key, (source, points) in chosen.items():
        sources[key] = source
        if points:
            final[key] = points[-1][1]
            step = points[-1][0]
            if last_step is None or step > last_step:
                last_step = step
    final.update(finals)
    rows = _same_steps(chosen) if with_rows else []
    if rows is None:
        by_step: dict = {}
        for key, (_, points) in chosen.items():
            for step, value in points:
                row = by_step.get(step)
                if row is None:
                    row = by_step[step] = {}
                row[key] = value
        rows = []
        for step in sorted(by_step):
            row = {"step": step}
            row.update(by_step[step])
            rows.append(row)
    if finals and with_rows:
        extra = {k: v for k, v in finals.items() if not chosen[k][1]}
        if extra:
            rows.append({"step": last_step if last_step is not None else 0, **extra})
    return {"rows": rows, "final": final, "sources": sources, "step": last_step, "notes": notes, "hparams": hparams}


def _same_steps(chosen: dict) -> list | None:
    """The rows when every metric has a point at the same steps, rising (a Trainer's dict lines, one file): built
    column by column; None otherwise."""
    keys = [key for key, (_, points) in chosen.items() if points]
    if not keys or len(keys) != len(chosen):
        return None
    columns = [chosen[key][1] for key in keys]
    steps = list(map(itemgetter(0), columns[0]))
    if any(len(points) != len(steps) or list(map(itemgetter(0), points)) != steps for points in columns[1:]):
        return None
    if steps != sorted(set(steps)):
        return None
    names = ["step", *keys]
    return [dict(zip(names, row)) for row in zip(steps, *(map(itemgetter(1), points) for points in columns))]


def attempt_since(started_at: str | None) -> float:
    """The wall-clock time (epoch seconds) an attempt started, from its record's `started_at` (0: unknown)."""
    if not started_at:
        return 0.0
    from datetime import datetime

    try:
        return datetime.fromisoformat(started_at).timestamp()
    except (TypeError, ValueError):
        return 0.0


def output_dirs(output_dir, env: dict | None = None) -> list[Path]:
    """The output directory, and `TENSORBOARD_LOGGING_DIR` when it points elsewhere."""
    dirs = [Path(output_dir)]
    tb = (env or os.environ).get("TENSORBOARD_LOGGING_DIR") if env is not None else None
    if tb and Path(tb).resolve() != Path(output_dir).resolve() and not str(Path(tb).resolve()).startswith(str(Path(output_dir).resolve()) + os.sep):
        dirs.append(Path(tb))
    return dirs
