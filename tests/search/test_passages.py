"""Passages: long notes and reports are searched by every part of them, not only their opening, and a search
for words lab wrote (its report template, run records' setting names) does not drown what people wrote."""

from __future__ import annotations

import json

import pytest

from helpers import FIXTURES, write_settings

# A real paper's opening (arXiv:1111.2011v2, tests/fixtures/pdf), standing for the first half of a long note.
OPENING = """Theoretical description of anisotropic systems, such as layered superconductors and coupled spin
chains, is often a challenge due to the different natures of interactions along different directions. As a
model of such a system, we present an analytical study of d-dimensional nodes arranged as the vertices of a
Bethe lattice, where each node has nonzero spatial dimension and is described by an O(N) quantum rotor model,
and there is hopping between neighboring nodes. In the limit of large connectivity on the Bethe lattice, the
hopping can be treated by constructing a self-consistent effective action for a single node. This procedure is
akin to dynamical mean field theory, but generalized so that spatial as well as quantum fluctuations are taken
into account on each node. The quantum phase transition is studied using this effective action for both
infinite and finite N. The importance of the Perron-Frobenius uniform mode on the Bethe lattice is discussed,
and its elimination via an infinite range hopping term shifts the transition, leading to nontrivial critical
behavior. We calculate critical exponents and the anomalous dimension, and we find that the physics of the
large connectivity limit is dominated by the dimensionality of the nodes rather than of the lattice.
"""
LONG_NOTE = f"""---
title: Notes on a reading group session
---

## Notes

{OPENING}
{OPENING}
What we take from it for our own runs: we linearly ramp the step size over the first thousand updates, and
only then let the schedule decay.
"""


def test_a_sentence_far_down_a_long_note_is_found_by_meaning(lab, lab_root):
    pytest.importorskip("numpy")
    (lab_root / "papers").mkdir(exist_ok=True)
    (lab_root / "papers" / "reading-group.md").write_text(LONG_NOTE)
    lab("reindex", check=0)
    results = lab.json("search", "linear ramp of the step size", "--mode", "semantic")
    assert results and results[0]["path"] == "papers/reading-group.md"
    assert "linearly ramp the step size" in results[0]["snippet"]
    assert [r["path"] for r in results].count("papers/reading-group.md") == 1


def test_run_records_rank_below_text_and_the_report_template_is_not_indexed(lab, lab_root):
    write_settings(lab_root, "exp1", {f"s{i}.json": {"learning_rate": 1e-4 * (i + 1), "warmup_steps": 100} for i in range(4)})
    for i in range(4):
        (lab_root / "experiments" / "exp1" / "runs").mkdir(exist_ok=True)
        record = {"state": "succeeded", "settings": {"learning_rate": 1e-4 * (i + 1), "warmup_steps": 100},
                  "metrics": {"eval_accuracy": 0.8}}
        (lab_root / "experiments" / "exp1" / "runs" / f"s{i}.json").write_text(json.dumps(record))
    lab("new", "exp2", check=0)  # a report as lab's template writes it: nothing of the researcher's in it yet
    (lab_root / "papers").mkdir(exist_ok=True)
    (lab_root / "papers" / "warmup.md").write_text("---\ntitle: On warmup\n---\n\nA learning rate warmup over the first steps stabilises Adam.\n")
    results = lab.json("search", "learning rate warmup", "--mode", "keyword")
    types = [r["type"] for r in results]
    assert types[0] == "paper" and "run" in types
    assert all(t == "run" for t in types[types.index("run"):])  # every run after every document
    for prompt in ("What do we want to learn, and why?", "Data, model, and what the settings vary."):
        assert not [r for r in lab.json("search", prompt, "--mode", "keyword") if r["type"] == "experiment"]


def test_a_long_report_section_is_one_result(lab, lab_root):
    write_settings(lab_root, "exp1", {"s1.json": {"a": 1}})
    body = " ".join(f"Sentence {i} about the tokenizer's coverage of kanji compounds." for i in range(120))
    (lab_root / "experiments" / "exp1" / "report.md").write_text(f"---\ntitle: Tokens\n---\n\n## Findings\n\n{body}\n")
    results = lab.json("search", "kanji compounds", "--mode", "keyword")
    assert [r["id"] for r in results] == ["exp1#findings"]


def test_pdf_passages_stay_on_their_page_and_know_their_section():
    from lab.core import pdftext
    from lab.core.passages import WORDS, pdf_passages

    pages = pdftext.extract(FIXTURES / "pdf" / "1111.2011v2.pdf")["pages"]
    passages = pdf_passages(pages)
    assert {p for p, _, _ in passages} == set(range(1, 9))
    for page, _, text in passages:
        assert text in pages[page - 1].replace("\n", " ") or text.split()[0] in pages[page - 1]
        assert len(text.split()) <= WORDS
    sections = [s for _, s, _ in passages]
    assert "IV. CORRECTIONS AT FINITE N" in sections and "V. DISCUSSION" in sections
    assert not any(s and "Phys. Rev." in s for s in sections)  # references are no headings
