"""How fast the search index is on a big lab: 10,000 paper notes and 1,000 experiments, built in a temp dir.

Measures, in one run:
- full `lab reindex --keyword-only` as a process (goal: under 30 s; embedding: bench_search.py);
- the no-op freshness check, in process: `lab.search.index.sync` when nothing changed (goal: under 100 ms);
- `lab search --mode keyword` as a whole process against a bare `python -c "import sqlite3"` (goal: at most 3x), with the
  lab's watcher running (`lab watch`: the index is kept fresh from file events, so the search scans nothing),
  and without one (the search stats every indexed file first: most of its time on a lab this size).

Run: .venv/bin/python benchmarks/bench_index.py [--papers 10000] [--experiments 1000] [--keep DIR]
(takes a few minutes: most of it writing the lab's 17,000 files and indexing them once)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = (
    "learning rate warmup schedule transformer attention layer norm dropout batch size gradient clipping "
    "optimizer adam momentum decay cosine linear step loss accuracy validation training evaluation data "
    "tokenizer vocabulary embedding residual convergence variance stability fine tuning pretraining model "
    "parameter scaling benchmark baseline ablation result method network sequence language vision graph"
).split()
JA = ["学習率", "ウォームアップ", "効果", "実験", "結果", "モデル", "評価", "損失", "精度", "データ"]


def _vocabulary() -> tuple[list[str], list[float]]:
    """5,000 words with Zipf frequencies, the ML words spread among them: "learning" is common, "warmup" rare."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(5000)]
    for word in WORDS:
        vocab[rng.randrange(10, 3000)] = word
    vocab[15], vocab[40], vocab[900] = "learning", "rate", "warmup"
    return vocab, [1 / (rank + 1) for rank in range(len(vocab))]


VOCAB, WEIGHTS = _vocabulary()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(VOCAB, WEIGHTS, k=n))


def build_lab(root: Path, papers: int, experiments: int) -> None:
    rng = random.Random(1)
    (root / "papers").mkdir(parents=True)
    (root / "feeds" / "items").mkdir(parents=True)
    for i in range(papers):
        arxiv_id = f"{2300 + i // 10000}.{i % 10000:05d}"
        exps = [f"exp{rng.randrange(experiments)}"] if rng.random() < 0.2 else []
        text = (
            f"---\narxiv_id: '{arxiv_id}'\ntitle: {words(rng, 8).title()}\nauthors:\n- Ada Lovelace\n- Alan Turing\n"
            f"tags: [{rng.choice(WORDS)}]\nexperiments: {json.dumps(exps)}\nurl: https://arxiv.org/abs/{arxiv_id}\n---\n\n"
            f"# {words(rng, 6)}\n\n{words(rng, 180)}\n\n## Notes\n\n{words(rng, 40)}\n"
        )
        (root / "papers" / f"{arxiv_id}.md").write_text(text, encoding="utf-8")
    for e in range(experiments):
        exp = root / "experiments" / f"exp{e}"
        for sub in ("settings", "runs", "logs", "models"):
            (exp / sub).mkdir(parents=True)
        ja = "".join(rng.sample(JA, 4))
        report = (
            f"---\ntitle: {words(rng, 5)}\ntags: [{rng.choice(WORDS)}, {rng.choice(WORDS)}]\n"
            f"command: python run.py {{settings}}\n---\n\n# Experiment {e}\n\n## Question\n\n{words(rng, 60)} {ja}\n\n"
            f"## Setup\n\n{words(rng, 80)}\n\n## Results\n\n{words(rng, 80)}\n\n## Conclusion\n\n{words(rng, 40)}\n"
        )
        (exp / "report.md").write_text(report, encoding="utf-8")
        for s in range(3):
            settings = {"learning_rate": rng.choice(["2e-5", "1e-4", "3e-4"]), "warmup_steps": 100 * s, "model": {"layers": 4}}
            text = json.dumps(settings).replace(f'"{settings["learning_rate"]}"', settings["learning_rate"])
            (exp / "settings" / f"s{s}.json").write_text(text, encoding="utf-8")
            record = {"experiment": exp.name, "setting": f"s{s}", "state": "succeeded", "attempt": 1, "exit_code": 0,
                      "metrics": {"eval_loss": round(rng.random(), 4), "step": 1000}, "settings": json.loads(text)}
            (exp / "runs" / f"s{s}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            (exp / "runs" / f"s{s}.settings.json").write_text(text, encoding="utf-8")
    with open(root / "feeds" / "items" / "cs.LG.jsonl", "w", encoding="utf-8") as f:
        for i in range(1000):
            f.write(json.dumps({"id": f"http://arxiv.org/abs/2401.{i:05d}v1", "title": words(rng, 8), "authors": ["A B"],
                                "summary": words(rng, 120), "link": f"http://arxiv.org/abs/2401.{i:05d}v1",
                                "published": "2024-01-01", "arxiv_id": f"2401.{i:05d}", "feed": "cs.LG",
                                "added_at": "2026-01-01T00:00:00+00:00"}) + "\n")


def timed(argv: list[str], repeat: int, env=None) -> float:
    samples = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        samples.append(time.monotonic() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="Build the lab in DIR and keep it (reused by the next run).")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lab-bench-index-"))
    root = tmp / "lab"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LAB_ROOT", None)
    try:
        if root.exists() and args.keep:
            print(f"reusing the lab in {root} (delete it to build a new one)")
        else:
            start = time.monotonic()
            build_lab(root, args.papers, args.experiments)
            print(f"built a lab of {args.papers} paper notes and {args.experiments} experiments in {time.monotonic() - start:.1f} s: {root}")

        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (timings scale with it)")
        lab = [sys.executable, "-m", "lab", "--root", str(root)]
        keyword = ["--mode", "keyword"]  # words only: the hybrid default is bench_search.py's (and would start embedding)
        # Files changed in the last 2 s are re-read once more by the next sync (racy time stamps, lab.search.index):
        # measure a lab whose files were not all just written.
        time.sleep(2.1)
        start = time.monotonic()
        # The index alone (semantic search's embedding is measured by bench_search.py).
        subprocess.run([*lab, "reindex", "--keyword-only"], check=True, stdout=subprocess.DEVNULL, env=env)
        full = time.monotonic() - start
        size = (root / ".lab" / "index.db").stat().st_size
        print(f"full lab reindex:            {full:8.2f} s   (goal < 30 s; index {size / 1e6:.1f} MB)")

        from lab.search import index

        conn = index.connect(root)
        samples = []
        for _ in range(args.repeat):
            start = time.monotonic()
            stats = index.sync(conn, root)
            samples.append(time.monotonic() - start)
            assert stats.read == 0 and stats.removed == 0, stats
        files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
        conn.close()
        # The floor on this machine: one os.stat per indexed file, nothing else (measured now, same files).
        paths = [str(root / p) for (p,) in sqlite3.connect(root / ".lab" / "index.db").execute("SELECT path FROM files")]
        floor = []
        for _ in range(5):
            start = time.monotonic()
            for p in paths:
                os.stat(p)
            floor.append(time.monotonic() - start)
        print(f"no-op freshness check:       {statistics.median(samples) * 1000:8.1f} ms  (goal < 100 ms; {files} files; "
              f"a bare os.stat of each file takes {statistics.median(floor) * 1000:.1f} ms here)")

        query = "learning rate warmup"
        # Both sides run with cached bytecode, as an installed lab does: with PYTHONDONTWRITEBYTECODE set (as
        # on some machines) lab's modules would otherwise be compiled from source in every process.
        run_env = dict(env, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
        run_env.pop("PYTHONDONTWRITEBYTECODE", None)
        for argv in ([sys.executable, "-c", "import sqlite3"], [*lab, "search", query, *keyword], [*lab, "search", "学習率", *keyword]):
            timed(argv, 3, env=run_env)  # warm the file cache and the bytecode cache
        base = timed([sys.executable, "-c", "import sqlite3"], args.repeat, env=run_env)
        scanning = timed([*lab, "search", query, *keyword], args.repeat, env=run_env)
        subprocess.run([*lab, "watch", "--detach"], check=True, stdout=subprocess.DEVNULL, env=env)
        try:
            timed([*lab, "search", query, *keyword], 3, env=run_env)
            search = timed([*lab, "search", query, *keyword], args.repeat, env=run_env)
            search_ja = timed([*lab, "search", "学習率", *keyword], args.repeat, env=run_env)
            # Freshness through the watcher: an in-place edit (the directory's mtime unchanged), then a search.
            note = root / "papers" / "2300.00007.md"
            original = note.read_text(encoding="utf-8")
            note.write_text(original + "\nzyzzyva\n", encoding="utf-8")
            fresh = subprocess.run([*lab, "search", "zyzzyva", "--json", *keyword], check=True, capture_output=True, env=run_env)
            note.write_text(original, encoding="utf-8")
            assert json.loads(fresh.stdout), "the watcher missed an in-place edit"
        finally:
            subprocess.run([*lab, "watch", "--stop"], check=True, stderr=subprocess.DEVNULL, env=env)
        base2 = timed([sys.executable, "-c", "import sqlite3"], args.repeat, env=run_env)
        base = min(base, base2)
        print(f'python -c "import sqlite3":  {base * 1000:8.1f} ms  (median of {args.repeat})')
        print(f"lab search '{query}': {search * 1000:8.1f} ms  ratio {search / base:5.2f}x (goal <= 3x; lab watch running)")
        print(f"lab search '学習率':          {search_ja * 1000:8.1f} ms  ratio {search_ja / base:5.2f}x (lab watch running)")
        print(f"lab search, no watcher:      {scanning * 1000:8.1f} ms  ratio {scanning / base:5.2f}x (the search scans {files} files)")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
