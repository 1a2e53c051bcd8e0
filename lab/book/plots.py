"""Metric curves: one SVG per metric, an experiment's runs overlaid, drawn with matplotlib from metrics files.

SVG with its text left as text (`svg.fonttype: none`): a third cheaper to make than a PNG (no glyphs rasterised,
no PNG encoding), a quarter of the size, and sharp at any zoom. The layout is measured with Agg's font metrics.

Drawing is the slow part of a book build, so each experiment's figures are cached under `.lab/book/curves/EXP/`
with a key made of its metrics files' names, sizes and modification times: unchanged experiments are not redrawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from lab.book.table import is_metric, is_number
from lab.core.fsutil import atomic_write_json

VERSION = 5  # bump when the drawing changes, so cached figures are redrawn
SUFFIX = ".svg"
# Text as <text> (not glyph outlines); fixed ids and no date, so that the same curves give the same bytes.
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "lab"}
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def curve_series(runs) -> dict[str, dict[str, tuple[list, list]]]:
    """metric -> setting -> (x, y), from each run's metrics rows; x is `step` where rows carry one."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for run in runs:
        for i, row in enumerate(run.rows()):
            x = row.get("step")
            if not is_number(x):
                x = i
            for key, value in row.items():
                if not is_number(value) or not is_metric(key):
                    continue
                xs, ys = series.setdefault(key, {}).setdefault(run.setting, ([], []))
                xs.append(x)
                ys.append(value)
    # A metric logged once per run (a summary such as train_loss) is a number, not a curve.
    return {k: v for k, v in series.items() if any(len(xs) > 1 for xs, _ in v.values())}


def cache_key(runs) -> str:
    parts = [VERSION]
    for run in runs:
        if run.metrics_file is not None:
            st = run.metrics_file.stat()
            parts.append([run.setting, str(run.metrics_file), st.st_size, st.st_mtime_ns])
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def file_names(metrics) -> dict[str, str]:
    """metric -> a safe, unique SVG file name."""
    names, used = {}, set()
    for metric in sorted(metrics):
        base = _SLUG.sub("_", metric).strip("._") or "metric"
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        names[metric] = f"{name}{SUFFIX}"
    return names


def cached_curves(cache_dir: Path, key: str) -> dict[str, Path] | None:
    """The experiment's figures if the cache holds them under `key` (cache_key of its runs), else None."""
    manifest = cache_dir / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    files = {m: cache_dir / f for m, f in (data.get("files") or {}).items()}
    return files if all(p.is_file() for p in files.values()) else None


def figure_paths(series: dict, cache_dir: Path) -> dict[str, Path]:
    """metric -> the path its figure has (or will have) in `cache_dir`."""
    names = file_names(series)
    return {metric: cache_dir / names[metric] for metric in sorted(series)}


def draw_curves(runs, cache_dir: Path) -> dict[str, Path]:
    """Draw one SVG per metric into `cache_dir` (replacing what was there) and return metric -> path."""
    # The key first: if a metrics file grows while it is read, the next build sees a new key and redraws.
    key = cache_key(runs)
    return draw_series(curve_series(runs), cache_dir, key)


def draw_series(series: dict, cache_dir: Path, key: str) -> dict[str, Path]:
    """Draw `series` (from curve_series) into `cache_dir` and record them under the cache key `key`."""
    files = figure_paths(series, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for metric, path in files.items():
        _draw(metric, series[metric], path)
    keep = {p.name for p in files.values()} | {"manifest.json"}
    for old in cache_dir.iterdir():
        if old.name not in keep and old.suffix in (SUFFIX, ".png"):  # .png: what earlier versions drew
            old.unlink()
    atomic_write_json(cache_dir / "manifest.json", {"key": key, "files": {m: p.name for m, p in files.items()}})
    return files


class Drawing:
    """Figures drawn in background processes while the caller goes on: the book renders its pages meanwhile.

    `jobs` are (series, cache_dir, key) of draw_series. Call `wait()` (or `cancel()`) before the caller ends: it
    ends every worker, so no process outlives the build or keeps its stdout and stderr open.
    """

    def __init__(self, jobs: list[tuple[dict, Path, str]], workers: int | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        size = max(1, min(8, len(jobs) // (workers * 8)))
        chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
        self.count = len(jobs)
        self._pool = None
        self._futures = []
        if not chunks:
            return
        # spawn, not fork: `mkdocs serve` runs threads, and a forked child of a threaded process may deadlock.
        self._pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(chunks))), initializer=_worker_start,
                                         mp_context=multiprocessing.get_context("spawn"))
        self._futures = [self._pool.submit(_draw_chunk, chunk) for chunk in chunks]

    def wait(self) -> None:
        """Block until every figure is drawn; raise the first drawing's error, if any."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop drawing what has not started and end the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _worker_start():
    # The worker yields to the process that waits for it: mkdocs renders the pages on one core, so the build ends
    # soonest when that core is never shared; the workers take what it leaves.
    try:
        os.nice(5)
    except OSError:
        pass


def _draw_chunk(chunk):
    for series, cache_dir, key in chunk:
        draw_series(series, cache_dir, key)


_AXES = None
_LEGEND = None  # the _Legend of the last figure: an experiment's figures share their runs


def _axes():
    """One Axes per process, reused for every figure: making an Axes costs a quarter of a drawing."""
    global _AXES
    if _AXES is None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        # Fixed margins: a layout engine would draw every figure twice.
        # 72 dpi, the SVG backend's own: the legend is laid out in display units, which must be SVG points.
        fig = Figure(figsize=(6.4, 3.4), dpi=72)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.15)
        ax = fig.add_subplot()
        ax.set_xlabel("step", fontsize=9)
        # Fixed places for the axis labels (and the title, y= below): placing them from the tick labels' extents
        # cost a quarter of every drawing.
        ax.xaxis.set_label_coords(0.5, -0.12)
        ax.yaxis.set_label_coords(-0.1, 0.5)
        # Few ticks: tick labels are most of the drawing time.
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        _AXES = ax
    return _AXES


def _draw(metric: str, runs: dict[str, tuple[list, list]], path: Path) -> None:
    global _LEGEND
    ax = _axes()
    settings = list(runs)
    if _LEGEND is None or _LEGEND.settings != settings:
        # New runs: new lines (the same colours for the same runs in every figure) and their legend. The next
        # figures of the experiment, with the same runs, only move the lines' points.
        if _LEGEND is not None:
            _LEGEND.remove()
        ax.set_prop_cycle(None)
        _LEGEND = _Legend(ax, settings, [ax.plot([], [], linewidth=1.5, markersize=3)[0] for _ in settings])
    for line, (xs, ys) in zip(_LEGEND.lines, runs.values()):
        line.set_data(xs, ys)
        line.set_marker("o" if len(xs) < 12 else "")
    ax.relim()
    ax.autoscale_view()
    ax.set_title(metric, fontsize=11, y=1.02)
    _LEGEND.place(runs)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two builds may share the cache
    import matplotlib

    with matplotlib.rc_context(_SVG_RC):
        ax.figure.savefig(tmp, format="svg", metadata={"Date": None})
    os.replace(tmp, path)


class _Legend:
    """A legend made of plain artists, laid out once for an experiment's runs and moved to the corner its lines
    leave freest. matplotlib's Legend lays itself out again on every drawing: a fifth of the time of a figure."""

    PAD, HANDLE, GAP, ROW = 5, 18, 5, 13  # pixels

    def __init__(self, ax, settings: list[str], lines):
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        self.ax, self.settings, self.lines = ax, settings, lines
        fig = ax.figure
        self.texts = [ax.text(0, 0, s, fontsize=8, va="center", transform=fig.transFigure, zorder=6) for s in settings]
        renderer = fig.canvas.get_renderer()
        text_w = max(t.get_window_extent(renderer).width for t in self.texts)
        self.size = (2 * self.PAD + self.HANDLE + self.GAP + text_w, 2 * self.PAD + self.ROW * len(settings))
        self.frame = Rectangle((0, 0), *self.size, transform=None, facecolor="white", edgecolor="#cccccc",
                               alpha=0.85, linewidth=0.8, zorder=5)
        ax.add_artist(self.frame)
        self.handles = []
        for line in lines:
            handle = Line2D([], [], color=line.get_color(), linewidth=1.5, markersize=3, transform=None, zorder=6)
            ax.add_artist(handle)
            self.handles.append(handle)

    def remove(self) -> None:
        for artist in [self.frame, *self.texts, *self.handles, *self.lines]:
            artist.remove()

    def place(self, runs) -> None:
        """Move the legend to the corner its lines cross least (upper right, upper left, lower left, lower right)."""
        import numpy as np

        box, (w, h) = self.ax.bbox, self.size  # pixels
        corners = [(box.x1 - 4 - w, box.y1 - 4 - h), (box.x0 + 4, box.y1 - 4 - h), (box.x0 + 4, box.y0 + 4),
                   (box.x1 - 4 - w, box.y0 + 4)]
        x, y = corners[0]
        if sum(len(xs) for xs, _ in runs.values()) < 2000:  # on long curves, counting costs more than it gives
            # Points along the segments, not only their ends: a 3-point curve crosses a corner between its points.
            t = np.linspace(0, 1, 8, endpoint=False)[None, :, None]
            parts = []
            for xs, ys in runs.values():
                p = self.ax.transData.transform(np.column_stack([xs, ys]))
                parts += [(p[:-1, None] + (p[1:] - p[:-1])[:, None] * t).reshape(-1, 2), p[-1:]]
            p = np.concatenate(parts)
            hits = [np.count_nonzero((p[:, 0] >= cx) & (p[:, 0] <= cx + w) & (p[:, 1] >= cy) & (p[:, 1] <= cy + h))
                    for cx, cy in corners]
            x, y = corners[int(np.argmin(hits))]
        self.frame.set_xy((x, y))
        inv = self.ax.figure.transFigure.inverted()
        for i, (text, handle, line) in enumerate(zip(self.texts, self.handles, self.lines)):
            row = y + h - self.PAD - self.ROW * (i + 0.5)
            hx = x + self.PAD
            handle.set_data([hx, hx + self.HANDLE / 2, hx + self.HANDLE], [row, row, row])
            handle.set_marker(line.get_marker())
            handle.set_markevery([1])  # one marker, in the middle of the handle
            text.set_position(inv.transform((hx + self.HANDLE + self.GAP, row)))
