"""How long the lab book takes on a large lab: 1,000 experiments and 10,000 paper notes (goal: under 3 minutes), rendered
by lab alone (`lab book --out`) and built by each generator (mkdocs, ProperDocs, Zensical).

It builds labs in a temporary directory (every experiment with 3 runs and streamed metrics as lab's runner leaves
them, 5 curves each; every paper note as `lab note` writes it) and measures:
- drawing: the metric curves of a sample of experiments, drawn cold (SVG written directly), CPU seconds per experiment;
- the book: `mkdocs build --strict` of the large lab with its curves cache filled (what every build after the first,
  and `mkdocs serve`, sees; the cache is filled by copying the sample's figures, so the drawing is not paid twice);
- baseline: the same build of a lab a tenth of the size; the ratio book / baseline shows how the build scales
  (about 10 when linear; a navigation listing every page makes it quadratic);
- rendering alone: `lab book --out DIR` of the large lab (goal: at most a third of the mkdocs build);
- the same lab built by ProperDocs (`properdocs build`, goal: within 1.1x of mkdocs) and by Zensical (`lab book`
  with `book: generator: zensical`: lab renders, then `zensical build`), curves cached; --generators picks them;
- with --cold: also the first build of the large lab, every figure drawn (what a fresh clone, e.g. `mkdocs gh-deploy`
  in CI, sees): worker processes draw while mkdocs renders the pages, so its wall time is about (pages + drawing) CPU
  seconds / cores (on 2 cores with matplotlib's SVG curves: 160.0 s wall, 303.6 s CPU, against 128.1 s for the cached
  build of the same run; since the panels are written as SVG text, drawing is about a millisecond a panel: on
  2026-11-29, 2 cores shared with other work at load 13-15, cold 182.0 s wall / 44.9 s CPU, cached 144.5 s wall /
  44.5 s CPU, drawing 4.9 ms CPU an experiment).
On 2026-12-07 (2 cores shared, load 6-15), 1,000 experiments and 10,000 papers, curves cached: mkdocs build 258-331 s
wall / 74-76 s CPU; `lab book --out` 56-64 s wall / 19-23 s CPU (0.17-0.25x the mkdocs build's wall, 0.25-0.30x
its CPU); ProperDocs 80.0 s CPU (1.08x mkdocs); Zensical 87.9 s CPU (1.15x mkdocs), 227 s wall.
Wall seconds depend on what else the machine runs (the load average is printed with each line); CPU seconds
(user+sys of mkdocs and its workers) much less.
Run: .venv/bin/python benchmarks/bench_book.py [--experiments 1000] [--papers 10000] [--cold]
         [--generators mkdocs,properdocs,zensical]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("attention transformer warmup learning rate schedule scaling law contrastive distillation sparse mixture "
         "experts retrieval augmented generation diffusion token pruning quantization low rank adaptation curriculum "
         "benchmark robustness calibration alignment preference optimization reward model").split()
TAGS = [f"topic-{i}" for i in range(40)]


def make_lab(root: Path, n_experiments: int, n_papers: int, runs: int = 3, seed: int = 0) -> None:
    import yaml

    from lab.core.workspace import init
    from lab.papers.notes import ABSTRACT_END, ABSTRACT_START, escape_markdown

    def abstract_block(text):  # as `lab note` writes it
        return f"{ABSTRACT_START}\n\n> {escape_markdown(text)}\n\n{ABSTRACT_END}"

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def render(meta, body):
        return "---\n" + yaml.dump(meta, Dumper=dumper, sort_keys=False, allow_unicode=True) + "---\n" + body

    rng = random.Random(seed)
    init(root)
    exps = root / "experiments"
    for e in range(n_experiments):
        name = f"exp{e:04d}"
        d = exps / name
        for sub in ("settings", "logs", "runs", "models"):
            (d / sub).mkdir(parents=True)
        meta = {"title": " ".join(rng.sample(WORDS, 4)).capitalize(), "tags": rng.sample(TAGS, 2), "command": ""}
        body = (f"# {meta['title']}\n\n## Question\n\nDoes {rng.choice(WORDS)} help {rng.choice(WORDS)}?\n\n"
                "## Results\n\n<!-- lab:results -->\n<!-- /lab:results -->\n\n## Conclusion\n\nTo be written.\n")
        (d / "report.md").write_text(render(meta, body))
        for s in range(runs):
            setting = {"learning_rate": [1e-5, 3e-5, 1e-4][s % 3], "num_train_epochs": 3, "seed": 42, "warmup_ratio": 0.1}
            (d / "settings" / f"s{s}.json").write_text(json.dumps(setting))
            rows = []
            for step in range(10, 310, 10):
                rows.append({"step": step, "epoch": step / 100, "loss": 2 * math.exp(-step / 120) + rng.random() * 0.1,
                             "learning_rate": setting["learning_rate"] * (1 - step / 300), "grad_norm": 1 + rng.random()})
                if step % 100 == 0:
                    rows.append({"step": step, "epoch": step / 100, "eval_loss": 1.5 * math.exp(-step / 150) + rng.random() * 0.1,
                                 "eval_accuracy": 0.6 + 0.3 * (1 - math.exp(-step / 100)) + rng.random() * 0.02})
            rows.append({"step": 300, "train_runtime": 100.0, "train_samples_per_second": 50.0, "train_loss": 0.5})
            (d / "logs" / f"s{s}.metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            final = {}
            for r in rows:
                final.update(r)
            record = {"experiment": name, "setting": f"s{s}", "state": "succeeded", "attempt": 1, "exit_code": 0,
                      "started_at": f"2026-{1 + e % 12:02d}-{1 + s:02d}T10:00:00.000+00:00",
                      "ended_at": f"2026-{1 + e % 12:02d}-{1 + s:02d}T10:05:00.000+00:00", "duration_s": 300.0,
                      "settings": setting, "settings_hash": f"{e}-{s}", "metrics": final,
                      "metrics_path": f"logs/s{s}.metrics.jsonl", "log_path": f"logs/s{s}.log", "history": []}
            (d / "runs" / f"s{s}.json").write_text(json.dumps(record))
    papers = root / "papers"
    for p in range(n_papers):
        key = f"{2000 + p // 10000 + 100:04d}.{p % 10000:05d}"
        linked = [f"exp{rng.randrange(n_experiments):04d}" for _ in range(rng.choice((0, 0, 0, 1, 2)))] if n_experiments else []
        meta = {
            "arxiv_id": key, "version": 1, "title": " ".join(rng.sample(WORDS, 7)).capitalize(),
            "authors": [f"Author {rng.randrange(5000)}" for _ in range(rng.randint(1, 8))],
            "published": "2021-05-26T17:59:55Z", "updated": "2021-06-01T10:00:00Z", "primary_category": "cs.LG",
            "categories": ["cs.LG", "cs.CL"], "doi": None, "journal_ref": None, "comment": "12 pages, 4 figures",
            "url": f"https://arxiv.org/abs/{key}v1", "pdf_url": f"https://arxiv.org/pdf/{key}v1",
            "tags": rng.sample(TAGS, 1), "experiments": linked, "added_at": f"2026-11-{1 + p % 28:02d}T10:00:00+00:00",
        }
        abstract = " ".join(rng.choice(WORDS) for _ in range(180)).capitalize() + " (p < 0.05, x_i)."
        (papers / f"{key}.md").write_text(render(meta, f"\n{abstract_block(abstract)}\n\n## Notes\n\nRead it: {rng.choice(WORDS)}.\n"))


def build(root: Path, site: Path, generator: str = "mkdocs") -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a strict build of the book in `root`: `mkdocs build`, `properdocs build`,
    `lab book` with Zensical (render, then `zensical build`), or `lab book --out` ("render": no generator)."""
    if generator in ("mkdocs", "properdocs"):
        argv = [sys.executable, "-m", generator, "build", "--strict", "-q", "-d", str(site)]
    elif generator == "render":
        argv = [sys.executable, "-m", "lab", "book", "--out", str(site)]
    else:
        (root / "lab.yaml").write_text(f"book:\n  generator: {generator}\n")
        argv = [sys.executable, "-m", "lab", "book", "--strict", "-d", str(site)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (root / "lab.yaml").unlink(missing_ok=True)
    if proc.returncode != 0:
        sys.exit(f"{generator} build failed in {root}:\n{proc.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def draw_sample(root: Path, n: int) -> tuple[float, dict]:
    """CPU seconds per experiment to draw the curves of the first `n` experiments, and their figures."""
    from lab.book import plots
    from lab.book.table import load_runs, runs_table
    from lab.core.workspace import Workspace

    ws = Workspace(root)
    cache = ws.state_dir / "book" / "curves"
    exps = ws.experiments()[:n]
    start = time.process_time()
    drawn = {}
    for e in exps:
        table = runs_table(e, runs=load_runs(e, resolve_missing=False), configured=[])
        drawn[e.name] = plots.draw_curves(table.runs, cache / e.name, table.best)
    return (time.process_time() - start) / max(1, len(exps)), drawn


def seed_cache(root: Path, figures: dict[str, Path]) -> None:
    """Fill the curves cache of every experiment with copies of already drawn figures (valid manifests)."""
    from lab.book import plots
    from lab.book.table import load_runs, runs_table
    from lab.core.fsutil import atomic_write_json
    from lab.core.workspace import Workspace

    ws = Workspace(root)
    cache = ws.state_dir / "book" / "curves"
    for exp in ws.experiments():
        target = cache / exp.name
        if (target / "manifest.json").exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        for path in figures.values():
            shutil.copyfile(path, target / path.name)
        table = runs_table(exp, runs=load_runs(exp, resolve_missing=False), configured=[])
        atomic_write_json(target / "manifest.json", {"key": plots.cache_key(table.runs, table.best), "files": {m: p.name for m, p in figures.items()}})


def say(line: str) -> None:
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{line}  [load {load}, {os.cpu_count()} cores]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=10000)
    parser.add_argument("--sample", type=int, default=10, help="Experiments whose curves are drawn cold to measure drawing.")
    parser.add_argument("--cold", action="store_true", help="Also time the first build of the large lab, every figure drawn.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary labs and print where they are.")
    parser.add_argument("--generators", default="mkdocs,properdocs,zensical",
                        help="The generators to time besides rendering alone (comma-separated).")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-book-"))
    try:
        small, large = tmp / "small", tmp / "large"
        n_small, p_small = max(1, args.experiments // 10), max(1, args.papers // 10)
        t = time.monotonic()
        make_lab(small, n_small, p_small)
        make_lab(large, args.experiments, args.papers)
        say(f"made the labs in {time.monotonic() - t:.1f}s")
        if args.cold:
            wall, cpu = build(large, tmp / "site-cold")
            say(f"cold book ({args.experiments} experiments, {args.papers} papers, every curve drawn): {wall:7.1f} s wall, {cpu:7.1f} s CPU")
            shutil.rmtree(tmp / "site-cold")
        per_exp, drawn = draw_sample(large, args.sample)
        figures = next(iter(drawn.values()))
        say(f"drawing the curves ({len(figures)} figures an experiment): {per_exp * 1000:.1f} ms CPU per experiment "
            f"(a first build of {args.experiments} experiments draws for ~{per_exp * args.experiments:.0f} s CPU, split over the cores)")
        seed_cache(large, figures)
        seed_cache(small, figures)
        base, base_cpu = build(small, tmp / "site-small")
        say(f"baseline ({n_small} experiments, {p_small} papers), curves cached: {base:7.1f} s wall, {base_cpu:7.1f} s CPU")
        wall, cpu = build(large, tmp / "site-large")
        pages = sum(1 for _ in (tmp / "site-large").rglob("index.html"))
        say(f"book ({args.experiments} experiments, {args.papers} papers), curves cached: {wall:7.1f} s wall, {cpu:7.1f} s CPU ({pages} pages)")
        say(f"ratio book / baseline: {wall / base:.2f}x wall, {cpu / base_cpu:.2f}x CPU (10x the data; ~10x when linear)")
        say(f"goal under 180 s: {'met' if wall < 180 else 'NOT met'} (wall), {'met' if cpu < 180 else 'NOT met'} (CPU)")
        shutil.rmtree(tmp / "site-large")
        r_wall, r_cpu = build(large, tmp / "out", "render")
        say(f"rendering alone (lab book --out): {r_wall:7.1f} s wall, {r_cpu:7.1f} s CPU; "
            f"{r_wall / wall:.2f}x the mkdocs build wall, {r_cpu / cpu:.2f}x CPU (goal: at most 0.33x)")
        shutil.rmtree(tmp / "out")
        for generator in [g for g in args.generators.split(",") if g and g != "mkdocs"]:
            g_wall, g_cpu = build(large, tmp / f"site-{generator}", generator)
            goal = " (goal: within 1.1x)" if generator == "properdocs" else ""
            say(f"{generator} build: {g_wall:7.1f} s wall, {g_cpu:7.1f} s CPU; {g_wall / wall:.2f}x mkdocs wall, "
                f"{g_cpu / cpu:.2f}x CPU{goal}")
            shutil.rmtree(tmp / f"site-{generator}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
