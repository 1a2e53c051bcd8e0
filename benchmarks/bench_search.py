"""How fast ranked and semantic search are on a big lab: 10,000 paper notes and 1,000 experiments (bench_index's lab).

Measures, in one run, each as a whole `lab search` process against a bare `python -c "import sqlite3"`:
- `--mode keyword` (goal: at most 3x), with the lab's watcher running and without;
- the default hybrid mode (goal: at most 10x without `lab watch`, at most 3x with it: the watcher keeps the model
  and the vectors loaded and ranks), every document embedded;
- the no-op freshness check, in process (unchanged by semantic search: it reads no vectors);
- embedding the lab's documents from nothing (goal: the whole lab in at most 5 minutes on 2 cores), the way
  `lab reindex` and the background embedder do (lab.search.fastmodel: onnxruntime, int8, every usable core):
  by default a sample of --sample documents of every kind, timed, and the whole lab's time extrapolated from it
  (the vectors the timing needs for the rest are random unit vectors, which cost the ranking the same), with
  the NumPy model's time on a part of the sample as the baseline; `--embed-all` embeds the whole lab for real
  (`lab reindex`) instead.

Run: .venv/bin/python benchmarks/bench_search.py [--keep DIR] [--embed-all] [--sample 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_index import build_lab, timed  # noqa: E402


def timed_embed(m, texts) -> float:
    """Seconds a document for `m` to embed `texts`."""
    start = time.monotonic()
    m.embed(texts)
    return (time.monotonic() - start) / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--sample", type=int, default=512, help="Documents embedded for the timing (default 512).")
    parser.add_argument("--embed-all", action="store_true", help="Embed the whole lab for real (slow: minutes).")
    parser.add_argument("--keep", metavar="DIR", help="Build the lab in DIR and keep it (reused by the next run).")
    args = parser.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lab-bench-search-"))
    root = tmp / "lab"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LAB_ROOT", None)
    lab = [sys.executable, "-m", "lab", "--root", str(root)]
    try:
        if root.exists() and args.keep:
            print(f"reusing the lab in {root} (delete it to build a new one)")
        else:
            start = time.monotonic()
            build_lab(root, args.papers, args.experiments)
            print(f"built a lab of {args.papers} paper notes and {args.experiments} experiments in {time.monotonic() - start:.1f} s")
            time.sleep(2.1)  # files younger than 2 s are re-read by the next sync (racy time stamps)
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (timings scale with it)")

        from lab.search import embed, index, model

        start = time.monotonic()
        shutil.rmtree(root / ".lab", ignore_errors=True)  # from nothing: no index, no vectors
        subprocess.run([*lab, "reindex", "--keyword-only"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        print(f"lab reindex --keyword-only:   {time.monotonic() - start:8.1f} s")
        conn = index.connect(root)
        covered, total = embed.coverage(conn)
        print(f"documents to embed: {total} ({covered} embedded)")

        # Embedding from nothing.
        model.single_thread(model.document_threads())
        if args.embed_all:
            conn.close()
            start = time.monotonic()
            subprocess.run([*lab, "reindex"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            seconds = time.monotonic() - start
            print(f"lab reindex, whole lab embedded: {seconds:8.1f} s (goal <= 300 s; load average {os.getloadavg()[0]:.1f})")
            conn = index.connect(root)
        elif covered == total:
            print("every document has a vector already (a kept lab, embedded before): embedding not timed; "
                  "delete DIR/lab/.lab to time it")
        else:
            import random

            import numpy as np

            todo = embed._missing(conn)
            sample = random.Random(0).sample(todo, min(args.sample, len(todo)))
            texts = [text for _, text in sample]
            # The path `lab reindex` and the background embedder take (embed_missing(fast=True)): onnxruntime's int8
            # model on every usable core, its graphs built first when the cache has none (timed apart).
            from lab.search import fastmodel

            start = time.monotonic()
            m = fastmodel.load()
            print(f"document model loaded in {time.monotonic() - start:.1f} s: {fastmodel.summary()}")
            start = time.monotonic()
            m.embed(texts, model.DOC_TOKENS)
            seconds = time.monotonic() - start
            per_doc = seconds / len(sample)
            print(f"embedding {len(sample)} sampled documents: {seconds:.1f} s ({per_doc * 1000:.1f} ms a document, "
                  f"load average {os.getloadavg()[0]:.1f})")
            # The baseline in the same run: the NumPy model (the path where onnxruntime is missing) on a part.
            part = texts[:: max(1, len(texts) // 64)]
            start = time.monotonic()
            model.load().embed(part, model.DOC_TOKENS)
            base_doc = (time.monotonic() - start) / len(part)
            part_fast = timed_embed(m, part)
            print(f"the NumPy model, {len(part)} of them: {base_doc * 1000:.1f} ms a document ({model.document_threads()} "
                  f"BLAS thread(s)); the fast path on the same: {part_fast * 1000:.1f} ms, {base_doc / part_fast:.1f}x")
            print(f"whole lab, extrapolated:      {per_doc * len(todo):8.0f} s for {len(todo)} texts (goal <= 300 s)")
            rng = np.random.default_rng(0)
            vectors = rng.standard_normal((len(todo), model.DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            conn.execute("BEGIN")
            rows = [(h, vectors[i].tobytes()) for i, (h, _) in enumerate(todo)]
            conn.executemany("INSERT OR REPLACE INTO embeddings (hash, vec) VALUES (?, ?)", rows)
            conn.executemany("UPDATE doc_vectors SET vec = ? WHERE hash = ?", [(v, h) for h, v in rows])
            conn.execute("COMMIT")
            print("(the rest filled with random unit vectors for the timings below)")
        covered, total = embed.coverage(conn)
        assert covered == total, (covered, total)

        samples = []
        for _ in range(args.repeat):
            start = time.monotonic()
            stats = index.sync(conn, root)
            samples.append(time.monotonic() - start)
            assert stats.read == 0 and stats.removed == 0, stats
        conn.close()
        print(f"no-op freshness check:        {statistics.median(samples) * 1000:8.1f} ms")

        run_env = dict(env, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
        run_env.pop("PYTHONDONTWRITEBYTECODE", None)
        query = "learning rate warmup"
        base_argv = [sys.executable, "-c", "import sqlite3"]
        keyword = [*lab, "search", query, "--mode", "keyword"]
        hybrid = [*lab, "search", query]
        plain = [*lab, "search", "does a linear ramp of the step size help small-batch fine-tuning?"]
        for argv in (base_argv, keyword, hybrid, plain):
            timed(argv, 2, env=run_env)  # warm the file cache and the bytecode cache
        out = subprocess.run([*hybrid, "--json"], capture_output=True, text=True, env=run_env, check=True)
        assert "semantic matches cover" not in out.stderr, out.stderr
        base = timed(base_argv, args.repeat, env=run_env)
        t_keyword = timed(keyword, args.repeat, env=run_env)
        t_hybrid = timed(hybrid, args.repeat, env=run_env)
        t_plain = timed(plain, args.repeat, env=run_env)
        subprocess.run([*lab, "watch", "--detach"], check=True, stdout=subprocess.DEVNULL, env=env)
        try:
            timed(keyword, 2, env=run_env)
            timed(hybrid, 2, env=run_env)  # the watcher loads the model at its first ranking, then keeps it
            watched = subprocess.run([*hybrid, "--json"], capture_output=True, text=True, env=run_env, check=True)
            assert watched.stdout == out.stdout, "the watcher ranked differently"
            w_keyword = timed(keyword, args.repeat, env=run_env)
            w_hybrid = timed(hybrid, args.repeat, env=run_env)
        finally:
            subprocess.run([*lab, "watch", "--stop"], check=True, stderr=subprocess.DEVNULL, env=env)
        base = min(base, timed(base_argv, args.repeat, env=run_env))
        print(f'python -c "import sqlite3":   {base * 1000:8.1f} ms  (median of {args.repeat})')
        for name, value, goal in (
            ("--mode keyword, lab watch", w_keyword, "goal <= 3x"),
            ("--mode keyword, no watcher", t_keyword, ""),
            ("hybrid, no watcher", t_hybrid, "goal <= 10x"),
            ("hybrid, a question", t_plain, "goal <= 10x"),
            ("hybrid, lab watch", w_hybrid, "goal <= 3x"),
        ):
            print(f"lab search {name:27s} {value * 1000:8.1f} ms  ratio {value / base:5.2f}x {goal}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
