"""`lab search` and `lab reindex` as a user runs them: real processes against a lab under tmp_path."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

from helpers import FEED_ITEM, make_lab, write

HOSTILE = ["state-of-the-art", "a:b", '"', "(", "AND", "OR", "NOT", "C++", "2301.12345", "hep-th/9901001", "", 'warm"up', "*"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The small lab of test_index, indexed and embedded once (`lab reindex`) for every test here to copy."""
    from lab.core.workspace import init

    root = tmp_path_factory.mktemp("template") / "lab"
    init(root)
    make_lab(root)
    subprocess.run([sys.executable, "-m", "lab", "--root", str(root), "reindex"], check=True, capture_output=True)
    return root


@pytest.fixture
def root(lab_root, template):
    """The template's files and index, with the index's record of files emptied: the first search reads every
    file again (and warns about the malformed one), and the documents keep their vectors (same text, same hash)."""
    shutil.copytree(template, lab_root, dirs_exist_ok=True)
    conn = sqlite3.connect(lab_root / ".lab" / "index.db")
    conn.execute("DELETE FROM files")
    conn.execute("DELETE FROM dirs")
    conn.commit()
    conn.close()
    return lab_root


def test_search_prints_type_id_title_where_and_snippet(lab, root):
    proc = lab("search", "zebrafish", check=0)
    lines = proc.stdout.splitlines()
    assert lines[0] == "[experiment exp1#results] Learning rate warmup on small data › Results"
    assert lines[1].strip() == "experiments/exp1/report.md#results"
    assert "**zebrafish**" in lines[2]
    assert "bad.json" in proc.stderr and "warning" in proc.stderr  # the malformed setting, once
    again = lab("search", "learning", "rate", "warmup", check=0)  # several words without quotes
    assert "[experiment exp1]" in again.stdout and again.stderr == ""


def test_json_output(lab, root):
    results = lab.json("search", "warmup")
    assert results and all(set(r) >= {"type", "id", "title", "snippet", "path", "score"} for r in results)
    assert {r["type"] for r in results} == {"experiment", "setting", "run", "paper", "feed"}
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_queries_exit_0_without_traceback(lab, root, text):
    for args in (["search", text], ["search", text, "--json"], ["search", "--", text]):
        proc = lab(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "error" not in proc.stderr
        if "--json" in args:
            assert isinstance(json.loads(proc.stdout), list)


def test_nothing_found_says_so(lab, root):
    assert "bad.json:1:24: Expecting property name" in lab("search", "warmup", check=0).stderr
    proc = lab("search", "xylophone", check=0)
    assert proc.stdout == "" and proc.stderr.strip() == "no results for 'xylophone'"
    proc = lab("search", "xylophone", "--json", check=0)
    assert json.loads(proc.stdout) == [] and "no results" in proc.stderr
    empty = lab("search", "", check=0)
    assert empty.stdout == "" and "nothing to search for" in empty.stderr


def test_japanese(lab, root):
    for word in ("学習率", "効果"):
        results = lab.json("search", word)
        assert [(r["type"], r["id"]) for r in results] == [("experiment", "exp1#question")]
        assert f"**{word}**" in results[0]["snippet"]


def test_filters(lab, root):
    assert {r["type"] for r in lab.json("search", "warmup", "--type", "setting")} == {"setting"}
    exp1 = lab.json("search", "learning", "--exp", "exp1")
    assert {r["type"] for r in exp1} == {"experiment", "setting", "run", "paper"}  # the paper is linked to exp1
    assert [(r["type"], r["id"]) for r in lab.json("search", "warmup", "--exp", "exp2")] == [("experiment", "exp2")]
    assert [r["id"] for r in lab.json("search", "warmup", "--tag", "optimizers")] == ["1908.03265"]
    assert [r["id"] for r in lab.json("search", "warmup", "--tag", "MiniLM", "--mode", "keyword")] == ["exp1"]
    tagged = lab.json("search", "warmup", "--tag", "MiniLM")  # its sections are about warmup too, by meaning
    assert tagged[0]["id"] == "exp1" and {r["id"].split("#")[0] for r in tagged} == {"exp1"}
    assert len(lab.json("search", "warmup", "--limit", "2")) == 2
    assert len(lab.json("search", "warmup", "--limit=1", "--type=feed")) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--type", "bogus"], "Invalid value for '--type'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--limit", "many"], "Invalid value for '--limit'"),
        (["--exp", "nope"], "no experiment 'nope'"),
        (["--exp", "../etc"], "bad experiment name '../etc'"),
        (["--colour"], "No such option '--colour'"),
    ],
)
def test_bad_input(lab, lab_root, args, message):
    proc = lab("search", "warmup", *args, check=2)
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and proc.stdout == ""
    assert not (lab_root / ".lab" / "index.db").exists()  # nothing half-written


def test_not_a_lab(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab", "--root", str(tmp_path), "search", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not a lab" in proc.stderr and proc.stderr.count("\n") == 1


def test_fresh_after_edit_and_delete(lab, root):
    assert lab.json("search", "quokka")
    item = dict(FEED_ITEM, id="http://arxiv.org/abs/2302.99999v1", summary="A second item about a tapir.")
    write(root / "feeds" / "items" / "cs.LG.jsonl", json.dumps(FEED_ITEM) + "\n" + json.dumps(item) + "\n")
    found = lab.json("search", "tapir")
    assert [(r["id"], r["path"]) for r in found] == [(item["id"], "feeds/items/cs.LG.jsonl:2")]
    (root / "experiments" / "exp1" / "settings" / "s1.json").unlink()
    assert "exp1/s1" not in [r["id"] for r in lab.json("search", "warmup_steps", "--type", "setting")]


def test_deleted_index_same_answers_and_reindex(lab, root):
    before = lab("search", "warmup", "--json", check=0).stdout
    (root / ".lab" / "index.db").unlink()
    proc = lab("reindex", "--json", check=0)
    assert json.loads(proc.stdout)["files"] == 8 and "indexed 8 files" in proc.stderr
    assert json.loads(proc.stdout)["embedded"] == 10 and "embedded 10 documents" in proc.stderr
    assert lab("search", "warmup", "--json", check=0).stdout == before


def test_help_has_examples(lab, root):
    for command in ("search", "reindex", "related"):
        proc = lab(command, "--help", check=0)
        assert "Example" in proc.stdout


def test_search_imports_nothing_heavy_when_nothing_changed(lab, root):
    lab("search", "warmup", check=0)  # creates the index (that one may import sqlite-utils)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lab", "--root", str(root), "search", "warmup"],
        capture_output=True, text=True, cwd=root,
    )
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    heavy = {"click", "rich", "yaml", "sqlite_utils", "markdown_it", "_jsonnet", "datasette", "torch"}
    assert not imported & heavy, imported & heavy
