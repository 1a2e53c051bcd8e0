"""How long `mkdocs build` takes on a large lab: 1,000 experiments and 10,000 paper notes (goal: under 3 minutes).

It builds a lab in a temporary directory (every experiment with 3 runs and streamed metrics, as lab's runner
leaves them; every paper note as `lab note` writes it), then times `mkdocs build --strict` three ways:
- cold: no curve cache (every figure drawn),
- warm: the curve cache of the cold build (what `mkdocs serve` and later builds see),
- baseline: the same lab at a tenth of the size, cold; the ratio cold / baseline shows how the build scales
  (about 10 when linear; a navigation listing every page makes it quadratic).
Run: .venv/bin/python benchmarks/bench_book.py [--experiments 1000] [--papers 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
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
    from lab import frontmatter
    from lab.workspace import init

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
        (d / "report.md").write_text(frontmatter.render(meta, body))
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
        abstract = " ".join(rng.choice(WORDS) for _ in range(180)).capitalize() + "."
        (papers / f"{key}.md").write_text(frontmatter.render(meta, f"{abstract}\n\n## Notes\n\nRead it: {rng.choice(WORDS)}.\n"))


def build(root: Path, site: Path) -> float:
    start = time.monotonic()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=root,
                          env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"mkdocs build failed in {root}:\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=10000)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary lab and print where it is.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-book-"))
    try:
        small, large = tmp / "small", tmp / "large"
        t = time.monotonic()
        make_lab(small, max(1, args.experiments // 10), max(1, args.papers // 10))
        make_lab(large, args.experiments, args.papers)
        print(f"made the labs in {time.monotonic() - t:.1f}s", file=sys.stderr)
        base = build(small, tmp / "site-small")
        cold = build(large, tmp / "site-large")
        warm = build(large, tmp / "site-large")
        pages = sum(1 for _ in (tmp / "site-large").rglob("index.html"))
        print(f"baseline ({args.experiments // 10} experiments, {args.papers // 10} papers), cold: {base:7.1f} s")
        print(f"lab book ({args.experiments} experiments, {args.papers} papers), cold:  {cold:7.1f} s  ({pages} pages)")
        print(f"lab book, warm (curves cached):                       {warm:7.1f} s")
        print(f"ratio cold / baseline:                                {cold / base:7.2f}x  (10x data; ~10x when linear)")
        print(f"goal: under 180 s cold: {'met' if cold < 180 else 'NOT met'}")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
