"""Search quality on SciFact: real scientific claims as queries against 2,101 real abstracts kept as paper notes.

Each abstract of benchmarks/data/scifact-dev (see its README for provenance) becomes a paper note in a new lab
in a temporary directory; `lab reindex` indexes and embeds them; each of the 38 claims goes through
`lab search CLAIM --type paper --limit 10 --json` as a process (the real code path), once per mode. The top 10
are scored with nDCG@10, binary relevance (BEIR's judgments in qrels.tsv). In the same run, two references
are computed over the same index: BM25-OR (SQLite FTS5's bm25 over the claim's words, OR-ed, as a plain
BM25 baseline does) and dense-only (cosine similarity of the claim's MiniLM vector to every note's vector).
Goal: lab's hybrid (the default mode) above both.

Run: .venv/bin/python benchmarks/bench_scifact.py [--keep DIR]   (a few minutes: most of it embedding the notes)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "scifact-dev"
sys.path.insert(0, str(REPO))


def load() -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in open(DATA / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(DATA / "queries.jsonl", encoding="utf-8")]
    qrels: dict[str, set[str]] = {}
    for line in open(DATA / "qrels.tsv", encoding="utf-8").read().splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(query_id, set()).add(doc_id)
    return corpus, queries, qrels


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def bm25_or(conn, claim: str) -> list[str]:
    """Plain BM25 with the claim's words OR-ed: FTS5's bm25 (same tokenizer, default column weights)."""
    import re

    words = sorted({w for w in re.findall(r"\w+", claim.lower())})
    if not words:
        return []
    match = " OR ".join('"' + w + '"' for w in words)
    rows = conn.execute(
        "SELECT d.key FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid WHERE docs_fts MATCH ? AND d.type = 'paper' "
        "ORDER BY bm25(docs_fts) LIMIT 10", (match,)
    )
    return [r[0] for r in rows]


def dense(conn, claims: list[str]) -> list[list[str]]:
    """Cosine similarity of each claim's vector to every note's, no threshold."""
    import numpy as np

    from lab.search import model

    rows = conn.execute(
        "SELECT d.key, v.vec FROM doc_vectors v JOIN docs d ON d.id = v.id WHERE d.type = 'paper' AND v.vec IS NOT NULL"
    ).fetchall()
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    queries = model.load().embed(claims, model.QUERY_TOKENS)
    scores = queries @ matrix.T
    return [[rows[i][0] for i in np.argsort(-s)[:10]] for s in scores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="Build the lab in DIR and keep it (reused by the next run).")
    args = parser.parse_args()
    corpus, queries, qrels = load()
    queries = [q for q in queries if str(q["_id"]) in qrels]
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lab-bench-scifact-"))
    root = tmp / "lab"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LAB_ROOT", None)
    lab = [sys.executable, "-m", "lab", "--root", str(root)]
    try:
        if not (root / "papers").exists():
            from lab.core.workspace import init

            init(root)
            for doc in corpus:
                (root / "papers" / f"{doc['doc_id']}.md").write_text(doc["text"] + "\n", encoding="utf-8")
        start = time.monotonic()
        subprocess.run([*lab, "reindex"], check=True, env=env, stdout=subprocess.DEVNULL)  # keeps vectors of a kept lab
        print(f"{len(corpus)} abstracts as paper notes, indexed and embedded in {time.monotonic() - start:.0f} s "
              f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
        scores: dict[str, list[float]] = {"lab hybrid": [], "lab keyword": [], "lab semantic": [], "BM25-OR": [], "dense": []}
        conn = sqlite3.connect(root / ".lab" / "index.db")
        claims = [q["text"] for q in queries]
        dense_ranked = dense(conn, claims)
        for q, dense_top in zip(queries, dense_ranked):
            relevant = qrels[str(q["_id"])]
            for mode in ("hybrid", "keyword", "semantic"):
                proc = subprocess.run([*lab, "search", "--type", "paper", "--limit", "10", "--mode", mode, "--json", "--", q["text"]],
                                      check=True, capture_output=True, text=True, env=env)
                scores[f"lab {mode}"].append(ndcg10([r["id"] for r in json.loads(proc.stdout)], relevant))
            scores["BM25-OR"].append(ndcg10(bm25_or(conn, q["text"]), relevant))
            scores["dense"].append(ndcg10(dense_top, relevant))
        conn.close()
        print(f"nDCG@10 on {len(queries)} SciFact claims (binary relevance), one run:")
        for name, values in scores.items():
            print(f"  {name:13s} {sum(values) / len(values):.3f}")
        hybrid = sum(scores["lab hybrid"]) / len(queries)
        best_reference = max(sum(scores[k]) / len(queries) for k in ("BM25-OR", "dense"))
        print(f"goal: lab hybrid above BM25-OR and dense: {'met' if hybrid > best_reference else 'NOT met'}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
