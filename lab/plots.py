"""Metric curves: one PNG per metric, an experiment's runs overlaid, drawn with matplotlib (Agg) from metrics files.

Drawing is the slow part of a book build, so each experiment's figures are cached under `.lab/book/curves/EXP/`
with a key made of its metrics files' names, sizes and modification times: unchanged experiments are not redrawn.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .book import is_metric, is_number
from .fsutil import atomic_write_json

VERSION = 3  # bump when the drawing changes, so cached figures are redrawn
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
    """metric -> a safe, unique PNG file name."""
    names, used = {}, set()
    for metric in sorted(metrics):
        base = _SLUG.sub("_", metric).strip("._") or "metric"
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        names[metric] = f"{name}.png"
    return names


def cached_curves(runs, cache_dir: Path) -> dict[str, Path] | None:
    """The experiment's figures if the cache is up to date, else None."""
    manifest = cache_dir / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != cache_key(runs):
        return None
    files = {m: cache_dir / f for m, f in (data.get("files") or {}).items()}
    return files if all(p.is_file() for p in files.values()) else None


def draw_curves(runs, cache_dir: Path) -> dict[str, Path]:
    """Draw one PNG per metric into `cache_dir` (replacing what was there) and return metric -> path."""
    series = curve_series(runs)
    names = file_names(series)
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    if series:
        fig = _figure()
        for metric in sorted(series):
            path = cache_dir / names[metric]
            _draw(fig, metric, series[metric], path)
            files[metric] = path
    keep = {p.name for p in files.values()} | {"manifest.json"}
    for old in cache_dir.iterdir():
        if old.name not in keep and old.suffix == ".png":
            old.unlink()
    atomic_write_json(cache_dir / "manifest.json", {"key": cache_key(runs), "files": {m: p.name for m, p in files.items()}})
    return files


def curves(runs, cache_dir: Path) -> dict[str, Path]:
    """The experiment's figures, from the cache or freshly drawn."""
    if not any(r.metrics_file is not None for r in runs):
        return {}
    found = cached_curves(runs, cache_dir)
    return found if found is not None else draw_curves(runs, cache_dir)


def draw_many(jobs: list[tuple[list, Path]], workers: int | None = None) -> list[dict[str, Path]]:
    """Draw the figures of many experiments ((runs, cache_dir) each), in parallel processes when it pays."""
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(jobs) < 8:
        return [draw_curves(runs, cache_dir) for runs, cache_dir in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: `mkdocs serve` runs threads, and a forked child of a threaded process may deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_draw_job, jobs, chunksize=max(1, min(32, len(jobs) // (workers * 4)))))


def _draw_job(job):
    runs, cache_dir = job
    return draw_curves(runs, cache_dir)


_AXES = None


def _axes():
    """One Axes per process, reused for every figure: making an Axes costs a quarter of a drawing."""
    global _AXES
    if _AXES is None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        # Fixed margins: a layout engine would draw every figure twice.
        fig = Figure(figsize=(6.4, 3.4), dpi=80)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.15)
        ax = fig.add_subplot()
        ax.set_xlabel("step", fontsize=9)
        # Few ticks: tick labels are most of the drawing time.
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        _AXES = ax
    return _AXES


def _figure():
    return _axes().figure


def _draw(fig, metric: str, runs: dict[str, tuple[list, list]], path: Path) -> None:
    ax = _axes()
    for line in list(ax.lines):
        line.remove()
    ax.set_prop_cycle(None)  # the same colours for the same runs in every figure
    for setting, (xs, ys) in runs.items():
        ax.plot(xs, ys, label=setting, linewidth=1.5, marker="o" if len(xs) < 12 else None, markersize=3)
    ax.relim()
    ax.autoscale_view()
    ax.set_title(metric, fontsize=11)
    ax.legend(fontsize=8, loc="best" if sum(len(xs) for xs, _ in runs.values()) < 2000 else "upper right")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two builds may share the cache
    ax.figure.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})
    os.replace(tmp, path)
