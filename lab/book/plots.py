"""Metric curves as small multiples: one small SVG panel per metric, an experiment's runs overlaid, written directly
as SVG text from the metrics files (no plotting library: a panel takes about a millisecond, so a first build of a
large lab is not spent drawing, and the figures are byte-for-byte the same for the same data).

A panel has a title, a y label, integer step ticks, a legend that names every run and marks the best one with ★,
and a `<title>` on each point (run, step, value) that a browser shows on hover when the page embeds the SVG as an
`<object>`. Training and evaluation of one quantity (`loss` or `train_loss` and `eval_loss`) share a panel, solid
and dashed. Runs differ by colour, marker shape and line width (the first run's line is the widest and lies below
the others), so runs with identical values stay visible, and a point's hover names every run that has it.

Each experiment's panels are cached under `.lab/book/curves/EXP/` with a key made of its metrics files' names,
sizes and modification times and the best run: unchanged experiments are not redrawn.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from html import escape
from pathlib import Path

from lab.book.metrics import CURVE_ONLY, GROUP_ORDER, is_metric, is_number, metric_group
from lab.core.fsutil import atomic_write_json, atomic_write_text

VERSION = 7  # bump when the drawing changes, so cached figures are redrawn
SUFFIX = ".svg"
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")

# Colour-blind-safe colours (Okabe-Ito, then Tableau), hollow marker shapes, and the dash of each split.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8c564b", "#7f7f7f", "#bcbd22")
MARKERS = ("circle", "square", "triangle", "diamond", "down", "cross")
DASH = {"train": "", "eval": "6 3"}
MAX_HOVER = 50  # points with a hover title per line (spread evenly over long curves)
MAX_MARKERS = 12  # visible markers per line on long curves
W = 380  # panel width in SVG units (the page scales it to its column)
RIGHT, TOP = 12, 28
PLOT_H = 150
FONT_SIZE = 11.5
FONT = "font-family=\"-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\""


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


def panels(metrics) -> dict[str, list[tuple[str, str | None]]]:
    """panel name -> [(metric, split)]: `eval_X` shares a panel with `X` or `train_X` (split 'train'/'eval'),
    every other metric has its own. Order: paired panels, then evaluation, test, other, training metrics, then
    the learning rate and gradient norm."""
    metrics = set(metrics)
    out: dict[str, list[tuple[str, str | None]]] = {}
    paired = set()
    for m in sorted(metrics):
        if metric_group(m) in ("eval", "val", "validation", "dev"):
            base = m.split("_", 1)[1]
            train = next((t for t in (base, f"train_{base}") if t in metrics and t not in paired), None)
            if train is not None:
                out[base] = [(train, "train"), (m, "eval")]
                paired.update((train, m))

    def order(m):
        return (m in CURVE_ONLY, GROUP_ORDER[metric_group(m)], m)

    for m in sorted(metrics - paired, key=order):
        name = m if m not in out else f"{m} "
        out[name] = [(m, None)]
    return out


def cache_key(runs, best: str | None = None) -> str:
    parts = [VERSION, best]
    for run in runs:
        if run.metrics_file is not None:
            st = run.metrics_file.stat()
            parts.append([run.setting, str(run.metrics_file), st.st_size, st.st_mtime_ns])
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()


def file_names(names) -> dict[str, str]:
    """panel -> a safe, unique SVG file name."""
    out, used = {}, set()
    for panel in names:
        base = _SLUG.sub("_", panel.strip()).strip("._") or "metric"
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        out[panel] = f"{name}{SUFFIX}"
    return out


def cached_curves(cache_dir: Path, key: str) -> dict[str, Path] | None:
    """The experiment's panels if the cache holds them under `key` (cache_key of its runs), else None."""
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
    """panel -> the path its figure has (or will have) in `cache_dir`, in page order."""
    names = file_names(panels(series))
    return {panel: cache_dir / name for panel, name in names.items()}


def draw_curves(runs, cache_dir: Path, best: str | None = None) -> dict[str, Path]:
    """Draw the panels of `runs` into `cache_dir` (replacing what was there) and return panel -> path."""
    # The key first: if a metrics file grows while it is read, the next build sees a new key and redraws.
    key = cache_key(runs, best)
    return draw_series(curve_series(runs), cache_dir, key, best)


def draw_series(series: dict, cache_dir: Path, key: str, best: str | None = None) -> dict[str, Path]:
    """Draw `series` (from curve_series) into `cache_dir` and record them under the cache key `key`."""
    files = figure_paths(series, cache_dir)
    layout = panels(series)
    settings = list(dict.fromkeys(s for runs in series.values() for s in runs))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for panel, path in files.items():
        atomic_write_text(path, panel_svg(panel.strip(), [(m, split, series[m]) for m, split in layout[panel]], settings, best))
    keep = {p.name for p in files.values()} | {"manifest.json"}
    for old in cache_dir.iterdir():
        if old.name not in keep and old.suffix in (SUFFIX, ".png"):  # .png: what earlier versions drew
            old.unlink()
    atomic_write_json(cache_dir / "manifest.json", {"key": key, "files": {m: p.name for m, p in files.items()}})
    return files


# --- the drawing ---------------------------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """About `count` round tick values covering [lo, hi]; whole numbers only when `integer`."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)
    if integer:
        step = max(1, round(step)) if step >= 1 else 1
        if step not in (1, 2, 5) and step % 5:  # 2.5 * 10^k rounds to a whole number only from k = 1
            step = int(math.ceil(step / 5) * 5)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, i = [], 0
    while first + i * step <= hi + step * 1e-9:
        ticks.append(round(first + i * step, 12))
        i += 1
    return ticks


def tick_label(value: float, step: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or step < 1e-3:
        return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{value:.3g}")  # 7.5e-05 -> 7.5e-5
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step * 10 ** decimals, 6) % 1:
        decimals += 1
    return f"{value:.{decimals}f}"


def value_label(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.4g}"
    return f"{value:.5g}"


def _marker(shape: str, x: float, y: float, r: float) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}"/>'
    if shape == "square":
        return f'<rect x="{x - r * 0.9:.1f}" y="{y - r * 0.9:.1f}" width="{r * 1.8:.1f}" height="{r * 1.8:.1f}"/>'
    if shape == "triangle":
        return f'<path d="M{x:.1f} {y - r * 1.1:.1f}L{x + r:.1f} {y + r * 0.8:.1f}H{x - r:.1f}Z"/>'
    if shape == "down":
        return f'<path d="M{x:.1f} {y + r * 1.1:.1f}L{x + r:.1f} {y - r * 0.8:.1f}H{x - r:.1f}Z"/>'
    if shape == "diamond":
        return f'<path d="M{x:.1f} {y - r * 1.2:.1f}L{x + r:.1f} {y:.1f}L{x:.1f} {y + r * 1.2:.1f}L{x - r:.1f} {y:.1f}Z"/>'
    return f'<path d="M{x - r:.1f} {y - r:.1f}L{x + r:.1f} {y + r:.1f}M{x - r:.1f} {y + r:.1f}L{x + r:.1f} {y - r:.1f}"/>'


def _spread(n: int, most: int) -> list[int]:
    """At most `most` indexes out of range(n), evenly spread, the last one always in."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _text_width(text: str, size: float) -> float:
    return len(text) * size * 0.58


def panel_svg(title: str, lines: list[tuple[str, str | None, dict]], settings: list[str], best: str | None) -> str:
    """One panel: `lines` are (metric, split, {setting: (xs, ys)}); `settings` fixes each run's style."""
    style = {s: i for i, s in enumerate(settings)}
    n = len(settings)
    xs_all = [x for _, _, runs in lines for xs, _ in runs.values() for x in xs]
    ys_all = [y for _, _, runs in lines for _, ys in runs.values() for y in ys]
    x_lo, x_hi = min(xs_all), max(xs_all)
    y_lo, y_hi = min(ys_all), max(ys_all)
    if y_hi == y_lo:
        pad = abs(y_lo) * 0.05 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    else:
        pad = (y_hi - y_lo) * 0.06
        y_lo, y_hi = y_lo - pad, y_hi + pad
    integer_x = all(float(x).is_integer() for x in xs_all)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    x_ticks = nice_ticks(x_lo, x_hi, 5, integer=integer_x)
    y_ticks = nice_ticks(y_lo, y_hi, 5)
    step_y = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else abs(y_ticks[0]) or 1
    y_labels = [tick_label(t, step_y) for t in y_ticks]
    left = round(30 + max(_text_width(t, FONT_SIZE) for t in y_labels))  # the y label, then the widest tick label
    plot_w = W - left - RIGHT

    def px(x):
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y):
        return TOP + PLOT_H - (y - y_lo) / (y_hi - y_lo) * PLOT_H

    # The legend: one entry per run (★ for the best), then the splits when training and evaluation share the panel.
    present = [s for s in settings if any(s in runs for _, _, runs in lines)]
    # A run whose lines here are the same as an earlier run's is drawn dashed over it, so that both colours show,
    # and the legend says so ("b = a").
    same_as: dict[str, str] = {}
    copies: dict[str, list[str]] = {}
    for k, s in enumerate(present):
        for earlier in present[:k]:
            if earlier not in same_as and all(runs.get(s) == runs.get(earlier) for _, _, runs in lines):
                same_as[s] = earlier
                copies.setdefault(earlier, []).append(s)
                break
    entries = [(s, (f"{s} = {same_as[s]}" if s in same_as else s) + (" ★" if s == best else "")) for s in present]
    splits = [split for _, split, _ in lines if split]
    legend_rows, row, x = [], [], left
    for setting, label in entries:
        w = 26 + _text_width(label, FONT_SIZE) + 12
        if row and x + w > W - RIGHT:
            legend_rows.append(row)
            row, x = [], left
        row.append((setting, label, x))
        x += w
    if row:
        legend_rows.append(row)
    height = TOP + PLOT_H + 36 + 16 * len(legend_rows) + (16 if splits else 0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
           f'{FONT} font-size="{FONT_SIZE}" role="img" aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           '<style>.p:hover{stroke-width:3;fill:rgba(0,0,0,.12)}</style>',
           f'<rect width="{W}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="16" font-size="14" font-weight="600" fill="#222">{escape(title)}</text>']
    # Grid, ticks and their labels.
    grid = []
    step_x = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1
    for t in x_ticks:
        grid.append(f'<path d="M{px(t):.1f} {TOP}V{TOP + PLOT_H}"/>')
        out.append(f'<text x="{px(t):.1f}" y="{TOP + PLOT_H + 14}" text-anchor="middle" fill="#555">'
                   f'{escape(tick_label(t, step_x) if not integer_x else str(int(t)))}</text>')
    for t, label in zip(y_ticks, y_labels):
        grid.append(f'<path d="M{left} {py(t):.1f}H{left + plot_w}"/>')
        out.append(f'<text x="{left - 4}" y="{py(t) + 3.5:.1f}" text-anchor="end" fill="#555">{escape(label)}</text>')
    out.insert(5, f'<g stroke="#e4e4e4" stroke-width="1">{"".join(grid)}</g>')
    out.append(f'<rect x="{left}" y="{TOP}" width="{plot_w}" height="{PLOT_H}" fill="none" stroke="#999" stroke-width="1"/>')
    out.append(f'<text x="{left + plot_w}" y="{TOP + PLOT_H + 28}" text-anchor="end" fill="#555">step</text>')
    out.append(f'<text transform="translate(13 {TOP + PLOT_H / 2:.1f}) rotate(-90)" text-anchor="middle" fill="#555">{escape(title)}</text>')
    # The lines: the first run widest and underneath, so that identical runs show as nested stripes.
    hover: dict[tuple, list] = {}
    body = ['<g clip-path="url(#plot)" fill="none">']
    for metric, split, runs in lines:
        for setting in present:
            if setting not in runs:
                continue
            xs, ys = runs[setting]
            i = style[setting]
            color = COLORS[i % len(COLORS)]
            width = 1.5 + 1.5 * (n - 1 - i) / max(1, n - 1) if n > 1 else 1.8
            dash, offset = DASH.get(split or "", ""), 0
            if setting in same_as:
                group = copies[same_as[setting]]
                dash, offset = f"5 {5 * len(group)}", 5 * group.index(setting)
            pts = [(px(x), py(y)) for x, y in zip(xs, ys)]
            if len(pts) > 1:
                d = "M" + "L".join(f"{a:.1f} {b:.1f}" for a, b in pts)
                body.append(f'<path d="{d}" stroke="{color}" stroke-width="{width:.2f}"'
                            + (f' stroke-dasharray="{dash}"' if dash else "") + (f' stroke-dashoffset="{-offset}"' if offset else "")
                            + ' stroke-linejoin="round"/>')
            marks = _spread(len(pts), MAX_MARKERS if len(pts) > 25 else len(pts))
            r = 2.4 + 2.2 * (n - 1 - i) / max(1, n - 1) if n > 1 else 3
            body.append(f'<g stroke="{color}" stroke-width="1.3" fill="#fff">'
                        + "".join(_marker(MARKERS[i % len(MARKERS)], *pts[k], r) for k in marks) + "</g>")
            for k in _spread(len(pts), MAX_HOVER):
                at = (round(pts[k][0]), round(pts[k][1]), metric)
                hover.setdefault(at, []).append((setting, xs[k], ys[k], metric))
    body.append("</g>")
    out.insert(6, f'<defs><clipPath id="plot"><rect x="{left - 6}" y="{TOP - 6}" width="{plot_w + 12}" height="{PLOT_H + 12}"/></clipPath></defs>')
    out += body
    # Hover targets: one per point, naming every run that has it (identical runs show together).
    targets = []
    for (hx, hy, _), who in hover.items():
        _, x, y, metric = who[0]
        if all((wx, wy) == (x, y) for _, wx, wy, _ in who):
            names = ", ".join(dict.fromkeys(s for s, _, _, _ in who))
            text = f"{names} · step {value_label(x)} · {metric} {value_label(y)}"
        else:  # different points on the same pixel: each with its own value
            text = f"{metric}: " + ", ".join(f"{s} step {value_label(wx)} {value_label(wy)}" for s, wx, wy, _ in who)
        targets.append(f'<circle class="p" cx="{hx}" cy="{hy}" r="5"><title>{escape(text)}</title></circle>')
    out.append('<g fill="transparent" stroke="none">' + "".join(targets) + "</g>")
    # The legend.
    y0 = TOP + PLOT_H + 46
    for r_i, row in enumerate(legend_rows):
        ly = y0 + 16 * r_i
        for setting, label, lx in row:
            i = style[setting]
            color = COLORS[i % len(COLORS)]
            weight = ' font-weight="600"' if setting == best else ""
            out.append(f'<path d="M{lx:.1f} {ly - 3.5}h22" stroke="{color}" stroke-width="1.8"/>'
                       f'<g stroke="{color}" stroke-width="1.3" fill="#fff">{_marker(MARKERS[i % len(MARKERS)], lx + 11, ly - 3.5, 3)}</g>'
                       f'<text x="{lx + 26:.1f}" y="{ly}" fill="#222"{weight}>{escape(label)}</text>')
    if splits:
        ly = y0 + 16 * len(legend_rows)
        out.append(f'<path d="M{left} {ly - 3.5}h22" stroke="#555" stroke-width="1.5"/>'
                   f'<text x="{left + 26}" y="{ly}" fill="#555">{escape(lines[0][0])} (train)</text>')
        lx = left + 26 + _text_width(f"{lines[0][0]} (train)", FONT_SIZE) + 16
        out.append(f'<path d="M{lx:.1f} {ly - 3.5}h22" stroke="#555" stroke-width="1.5" stroke-dasharray="{DASH["eval"]}"/>'
                   f'<text x="{lx + 26:.1f}" y="{ly}" fill="#555">{escape(lines[1][0])} (eval)</text>')
    out.append("</svg>\n")
    return "\n".join(out)


class Drawing:
    """Figures drawn in background processes while the caller goes on: the book renders its pages meanwhile.

    `jobs` are the arguments of draw_series: (series, cache_dir, key[, best]). Call `wait()` (or `cancel()`) before
    the caller ends: it ends every worker, so no process outlives the build or keeps its stdout and stderr open.
    """

    def __init__(self, jobs: list[tuple], workers: int | None = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
        size = max(1, min(64, len(jobs) // (workers * 4)))
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
    for job in chunk:
        draw_series(*job)
