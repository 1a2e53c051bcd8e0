"""`lab related`, `lab new --title` and the book's Related list: real processes, the real model."""

from __future__ import annotations

import json

import pytest

from helpers import FEED_ITEM, write

pytest.importorskip("numpy")

PAPER = """\
---
arxiv_id: '1908.03265'
title: On the Variance of the Adaptive Learning Rate and Beyond
authors: [Liyuan Liu, Haoming Jiang]
experiments: [{exps}]
---

The learning rate warmup heuristic stabilizes training of adaptive optimizers such as Adam.
"""

OTHER_PAPER = """\
---
title: Byte-pair encoding for Japanese
---

Subword vocabularies for languages written without spaces.
"""


@pytest.fixture
def root(lab_root):
    write(lab_root / "experiments" / "warm" / "report.md",
          "---\ntitle: Learning rate warmup for small-batch fine-tuning\ntags: [optimizers]\n---\n\n"
          "## Question\n\nDoes a warm-up of the learning rate stabilise fine-tuning with small batches?\n")
    write(lab_root / "experiments" / "warm" / "settings" / "s1.json", '{"lr_scheduler_type": "linear", "warmup_ratio": 0.1}')
    write(lab_root / "experiments" / "ramp" / "report.md",
          "---\ntitle: Step-size ramps\n---\n\n## Question\n\nDoes a linear ramp of the step size at the start of training stabilise fine-tuning?\n")
    write(lab_root / "experiments" / "tok" / "report.md",
          "---\ntitle: Tokenizer coverage\n---\n\n## Question\n\nHow many kanji compounds does the vocabulary lack?\n")
    write(lab_root / "papers" / "1908.03265.md", PAPER.format(exps="warm"))
    write(lab_root / "papers" / "bpe.md", OTHER_PAPER)
    item = dict(FEED_ITEM, title="Warmup schedules for adaptive optimizers", summary="Why the first steps need a small learning rate.")
    write(lab_root / "feeds" / "items" / "cs.LG.jsonl", json.dumps(item) + "\n")
    return lab_root


def test_related_lists_papers_feed_items_and_experiments(lab, root):
    lab("reindex", check=0)
    found = lab.json("related", "warm")
    kinds = {(r["type"], r["id"]) for r in found[:3]}
    assert kinds == {("paper", "1908.03265"), ("feed", FEED_ITEM["id"]), ("experiment", "ramp")}
    paper = next(r for r in found if r["id"] == "1908.03265")
    assert paper["linked"] is True and "semantic" in paper["match"]
    assert not any(r["type"] == "experiment" and r["id"] == "warm" for r in found)  # not itself
    assert [r["id"] for r in found].index("tok") > 2 if any(r["id"] == "tok" for r in found) else True
    text = lab("related", "warm", check=0).stdout
    assert "[paper 1908.03265] On the Variance of the Adaptive Learning Rate and Beyond (linked)" in text
    assert lab("related", "nope", check=2).stderr.count("\n") == 1


def test_new_with_title_prints_the_top_five(lab, root):
    lab("reindex", check=0)
    proc = lab("new", "exp9", "--title", "Warm-up of the step size: does it help small batches?", check=0)
    assert proc.stdout.strip().endswith("experiments/exp9")
    listed = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert 1 <= len(listed) <= 5 and any("1908.03265" in line for line in listed)
    report = (root / "experiments" / "exp9" / "report.md").read_text()
    assert "title: 'Warm-up of the step size: does it help small batches?'" in report
    assert "\n# Warm-up of the step size: does it help small batches?\n" in report


def test_book_page_lists_related_work_not_yet_linked(root):
    from lab.book.pages import Book
    from lab.core.workspace import Workspace
    from lab.search import index

    conn, _ = index.open_index(root)
    from lab.search import embed

    embed.embed_missing(conn)
    conn.close()
    book = Book(Workspace(root), plots=False)
    page = book.experiment_page(book.by_name["warm"])
    related = page.split("\n## Related\n", 1)[1]
    assert "Warmup schedules for adaptive optimizers" in related  # the feed item
    assert "experiments/ramp/report.md" in related
    assert "1908.03265" not in related  # linked already: listed under Papers


def test_book_page_builds_without_an_index(lab_root):
    from lab.book.pages import Book
    from lab.core.workspace import Workspace

    write(lab_root / "experiments" / "solo" / "report.md", "---\ntitle: Alone\n---\n\n## Question\n\nAnything?\n")
    book = Book(Workspace(lab_root), plots=False)
    assert "## Related" not in book.experiment_page(book.by_name["solo"])
