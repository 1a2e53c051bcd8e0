"""The search index: what each kind of file becomes, ranking, freshness, migrations, rebuilds, datasette."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from helpers import FEED_ITEM, PAPER, REPORT, make_lab, search, write
from lab.search import index
from lab.search import query
from lab.search.migrations import MIGRATIONS, SCHEMA_VERSION
from lab.core.settings import find_setting


def ids(results) -> list[tuple[str, str]]:
    return [(r["type"], r["id"]) for r in results]


@pytest.fixture
def root(lab_root) -> Path:
    return make_lab(lab_root)


def test_each_document_type(root):
    section = search(root, "zebrafish")
    assert ids(section) == [("experiment", "exp1#results")]
    assert section[0]["path"] == "experiments/exp1/report.md#results"
    assert section[0]["section"] == "Results"
    assert "**zebrafish**" in section[0]["snippet"]
    sub = search(root, "okapi")[0]
    assert (sub["id"], sub["section"]) == ("exp1#table", "Results › Table")
    assert ids(search(root, "minilm")) == [("experiment", "exp1")]  # tags

    assert ("setting", "exp1/s1") in ids(search(root, "warmup_steps"))
    assert ids(search(root, "2e-5")) == [("setting", "exp1/s1")]  # the user's spelling ...
    assert ("setting", "exp1/s1") in ids(search(root, "2e-05"))  # ... and Python's
    assert ids(search(root, "layers", type="setting")) == [("setting", "exp1/s1")]

    run = search(root, "wombat_score")
    assert ids(run) == [("run", "exp1/s1")] and run[0]["title"] == "exp1/s1 (succeeded)"
    assert run[0]["path"] == "experiments/exp1/runs/s1.json"
    assert search(root, "capybara") == []  # *.settings.json is not a run record

    paper = search(root, "Liyuan")
    assert ids(paper) == [("paper", "1908.03265")] and paper[0]["path"] == "papers/1908.03265.md"
    assert ids(search(root, "RAdam")) == [("paper", "1908.03265")]  # the user's notes
    assert ids(search(root, "optimizers", type="paper")) == [("paper", "1908.03265")]
    plain = search(root, "narwhal")
    assert ids(plain) == [("paper", "reading/plain")] and plain[0]["title"] == "Attention Is All You Need"

    feed = search(root, "quokka")
    assert ids(feed) == [("feed", FEED_ITEM["id"])]
    assert feed[0]["path"] == "feeds/items/cs.LG.jsonl:1" and feed[0]["title"] == FEED_ITEM["title"]
    assert ids(search(root, "Byron")) == [("feed", FEED_ITEM["id"])]


def test_malformed_files_are_indexed_as_text_with_a_warning(root):
    write(root / "papers" / "broken.md", "---\ntitle: [unclosed\n---\nThe armadillo paper.\n")
    conn, stats = index.open_index(root)
    conn.close()
    assert any("bad.json" in w and "raw text" in w for w in stats.warnings)
    assert any("broken.md" in w for w in stats.warnings)
    assert ids(search(root, "pangolin")) == [("setting", "exp1/bad")]
    assert ids(search(root, "armadillo")) == [("paper", "broken")]
    # Warnings come once, when the file is read, not on every search.
    conn, stats = index.open_index(root)
    conn.close()
    assert stats.warnings == [] and stats.read == 0


def test_jsonnet_settings_follow_their_base(root):
    settings = root / "experiments" / "exp1" / "settings"
    write(settings / "base.libsonnet", '{ scheduler: "cosine_tapir" }')
    write(settings / "v.jsonnet", 'local base = import "base.libsonnet";\nbase + { learning_rate: 1e-4 }\n')
    assert ids(search(root, "cosine_tapir")) == [("setting", "exp1/v")]
    assert ids(search(root, "1e-4")) == [("setting", "exp1/v")]  # as written in the jsonnet source
    write(settings / "base.libsonnet", '{ scheduler: "linear_okapi_schedule" }')
    assert search(root, "cosine_tapir") == []
    assert ids(search(root, "linear_okapi_schedule")) == [("setting", "exp1/v")]


def test_title_ranks_above_heading_above_body(lab_root):
    write(lab_root / "experiments" / "a" / "report.md", "---\ntitle: Body only\n---\n\n## Notes\n\nWe tried warmup once, and many other things besides.\n")
    write(lab_root / "experiments" / "b" / "report.md", "---\ntitle: Warmup matters\n---\n\nSome text about other things entirely.\n")
    write(lab_root / "experiments" / "c" / "report.md", "---\ntitle: Heading only\n---\n\n## Warmup\n\nSome text about other things entirely.\n")
    for i in range(10):  # other documents, so that "warmup" is a rare word as in a real lab
        write(lab_root / "papers" / f"p{i}.md", f"# Paper {i}\n\nAbout tokenizers and other things.\n")
    results = search(lab_root, "warmup")
    assert ids(results) == [("experiment", "b"), ("experiment", "c#warmup"), ("experiment", "a#notes")]
    assert results[0]["score"] > results[1]["score"] > results[2]["score"]


@pytest.mark.parametrize(
    "text",
    ["state-of-the-art", "a:b", "title:warmup", '"', 'warm"up', '"learning rate', "(", ")", "((warmup", "AND", "OR",
     "NOT", "NEAR", "warmup AND", "NOT warmup", "C++", "2301.12345", "hep-th/9901001", "", "   ", "*", "-", "^warmup",
     "warmup*", '"learning rate"*', "{col}:x", "\x00", "😀", "学習率*", "'; DROP TABLE docs; --"],
)
def test_hostile_queries_are_plain_text(root, text):
    results = search(root, text)  # never an sqlite3 error
    assert isinstance(results, list)


def test_hostile_queries_find_what_they_say(root):
    assert ids(search(root, "state-of-the-art")) == [("experiment", "exp1#results")]
    assert ("paper", "1908.03265") in ids(search(root, "C++"))
    assert ids(search(root, "hep-th/9901001")) == [("paper", "1908.03265")]
    assert ids(search(root, "1908.03265")) == [("paper", "1908.03265")]
    assert ids(search(root, '"learning rate" warm*', type="paper")) == [("paper", "1908.03265")]
    assert search(root, '"rate learning"') == []  # a phrase keeps its order
    assert search(root, "") == [] and query.fts_query("()") is None


def test_japanese_words_inside_sentences(root):
    for word in ("学習率", "効果", "ウォームアップ", "調べる", "率"):
        results = search(root, word)
        assert ids(results) == [("experiment", "exp1#question")], word
    assert "**学習率**ウォームアップの**効果**を調べる" in search(root, "学習率 効果")[0]["snippet"]
    assert search(root, "効率") == []  # its characters occur, but not next to each other


def test_bigram_text_round_trips():
    text = "GPU用の学習率ウォームアップ、効果。한국어 text"
    stored = query.index_text(text)
    assert query.decode_snippet(stored) == text
    assert query.fts_query("学習率") == f'"{query.RUN_EDGE}学習{query.BIGRAM_SEP}習率{query.RUN_EDGE}"'


def test_fresh_after_edit_and_delete_without_reindex(root):
    assert ids(search(root, "zebrafish")) == [("experiment", "exp1#results")]
    report = root / "experiments" / "exp1" / "report.md"
    write(report, REPORT.replace("zebrafish", "axolotl"))
    assert search(root, "zebrafish") == []
    assert ids(search(root, "axolotl")) == [("experiment", "exp1#results")]
    (root / "papers" / "1908.03265.md").unlink()
    assert search(root, "Liyuan") == []
    (root / "feeds" / "items" / "cs.LG.jsonl").unlink()
    assert search(root, "quokka") == []
    write(root / "papers" / "new.md", "---\ntitle: A brand new lemur paper\n---\n")
    assert ids(search(root, "lemur")) == [("paper", "new")]
    import shutil

    shutil.rmtree(root / "experiments" / "exp1")
    assert search(root, "axolotl") == [] and search(root, "wombat_score") == []


def test_refresh_reindexes_just_the_paths_the_watcher_names(root):
    search(root, "warmup")
    write(root / "papers" / "fresh.md", "# Ocelot notes\n")
    (root / "experiments" / "exp1" / "runs" / "s1.json").unlink()
    conn = index.connect(root)
    try:
        index.refresh(conn, root.resolve(), [root / "papers" / "fresh.md", "experiments/exp1/runs/s1.json", "/elsewhere/x.md"])
        files = {row[0] for row in conn.execute("SELECT path FROM files")}
        assert "papers/fresh.md" in files and "experiments/exp1/runs/s1.json" not in files
        index.refresh(conn, root.resolve(), [root / "experiments"])  # a directory: everything under it
    finally:
        conn.close()
    assert ids(search(root, "ocelot")) == [("paper", "fresh")]


def test_writers_leave_the_index_alone_and_searches_still_see_their_files(root, lab_root):
    """A run record written by the runner's writer, a note written by `lab note`: the next search finds them
    through its own freshness scan, and no writer opened the index."""
    from lab.core.workspace import Workspace
    from lab.papers.client import Paper
    from lab.papers.notes import write_note
    from lab.runs.record import write_record

    search(root, "warmup")
    before = index.index_path(root).stat().st_mtime_ns
    ws = Workspace(root)
    paper = Paper("2401.00042", 1, "Capybara scaling laws", ["A. Author"], None, None, "cs.LG", ["cs.LG"], None,
                  None, None, "https://arxiv.org/abs/2401.00042", "https://arxiv.org/pdf/2401.00042v1", "About capybaras.")
    write_note(ws, paper)
    setting = find_setting(ws.experiment("exp1"), "s1")
    write_record(setting, {"state": "done", "metrics": {"quokka_rate": 0.5}, "settings": {}})
    assert index.index_path(root).stat().st_mtime_ns == before
    assert ids(search(root, "capybara")) == [("paper", "2401.00042")]
    assert ids(search(root, "quokka_rate")) == [("run", "exp1/s1")]


def test_deleted_index_is_rebuilt_to_the_same_answers(root):
    queries = ["warmup", "learning rate", "学習率", "2e-5", "eval_loss"]
    before = [search(root, q) for q in queries]
    index.remove_index(root)
    assert not index.index_path(root).exists()
    assert [search(root, q) for q in queries] == before
    stats = index.reindex(root)
    assert stats.read == 8 and stats.documents >= 10
    assert [search(root, q) for q in queries] == before


def _contents(root):
    conn = sqlite3.connect(index.index_path(root))
    try:
        docs = conn.execute(f"SELECT {index._DOC_COLUMNS} FROM docs ORDER BY file, id").fetchall()
        docs = [row[1:] for row in docs]  # ids differ with the order the files were read in
        vectors = conn.execute("SELECT d.file, d.key, v.hash FROM doc_vectors v JOIN docs d USING (id) ORDER BY 1, 2, 3").fetchall()
        hits = {w: conn.execute("SELECT d.file FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid WHERE docs_fts MATCH ? "
                                "ORDER BY rank, d.file", (w,)).fetchall() for w in ("warmup", "zebrafish", "pangolin", "retina")}
        conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('integrity-check', 1)")  # FTS5 against its content
        triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name").fetchall()
    finally:
        conn.close()
    return docs, vectors, hits, triggers


def test_a_rebuild_in_bulk_holds_what_the_file_by_file_index_holds(root, monkeypatch):
    for i in range(index.BULK):  # enough files for a bulk write: the trigger off, FTS5 filled per batch
        write(root / "papers" / f"n{i:04d}.md", PAPER.replace("1908.03265", f"2301.{i:05d}") + f"\nretina {i}\n")
    index.reindex(root)
    bulk = _contents(root)
    assert len(bulk[0]) > index.BULK and len(bulk[2]["retina"]) == index.BULK
    monkeypatch.setattr(index, "BULK", 10**9)
    index.reindex(root)
    assert _contents(root) == bulk
    # The trigger is back: an edit after a bulk rebuild reaches the full-text table.
    monkeypatch.undo()
    index.reindex(root)
    write(root / "papers" / "n0001.md", PAPER.replace("1908.03265", "2301.00001") + "\naardvark\n")
    assert [r["path"] for r in search(root, "aardvark")] == ["papers/n0001.md"]


def test_damaged_index_is_rebuilt(root):
    search(root, "warmup")
    index.remove_index(root)
    index.index_path(root).write_bytes(b"this is not a database" * 100)
    assert ids(search(root, "zebrafish")) == [("experiment", "exp1#results")]


def test_migrations_are_named_and_applied_once(root):
    search(root, "warmup")
    conn = sqlite3.connect(index.index_path(root))
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'lab.index' ORDER BY id")]
    assert names == [m.__name__ for m in MIGRATIONS]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    search(root, "warmup")
    conn = sqlite3.connect(index.index_path(root))
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_datasette_finds_the_full_text_search(root):
    search(root, "warmup")
    path = index.index_path(root)
    import sqlite_utils
    from datasette.utils import detect_fts

    assert sqlite_utils.Database(path)["docs"].detect_fts() == "docs_fts"
    conn = sqlite3.connect(path)
    assert detect_fts(conn, "docs") == "docs_fts"
    conn.close()

    import asyncio

    from datasette.app import Datasette

    async def fetch():
        ds = Datasette([str(path)])
        response = await ds.client.get("/index/docs.json?_search=zebrafish&_shape=array")
        return response.status_code, response.json()

    status, rows = asyncio.run(fetch())
    assert status == 200
    assert [row["key"] for row in rows] == ["exp1#results"]


def test_an_edit_in_the_same_clock_tick_is_still_seen(root):
    """A same-size edit that keeps the mtime (as within one tick of a coarse clock) right after indexing."""
    paper = root / "papers" / "tick.md"
    paper.write_text("# The kiwi paper\n")
    st = paper.stat()
    assert ids(search(root, "kiwi")) == [("paper", "tick")]
    paper.write_text("# The emus paper\n")
    os.utime(paper, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ids(search(root, "emus")) == [("paper", "tick")]


def test_unchanged_directories_are_not_listed_but_edits_inside_are_seen(root):
    """The freshness check trusts an old directory mtime for its entries, never for its files' contents."""
    old = time.time_ns() - 60_000_000_000
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.utime(d, ns=(old, old))
    assert ids(search(root, "Liyuan")) == [("paper", "1908.03265")]
    conn = sqlite3.connect(index.index_path(root))
    recorded = dict(conn.execute("SELECT path, mtime_ns FROM dirs"))
    conn.close()
    assert recorded["papers"] == old and recorded["experiments/exp1/runs"] == old  # trusted from now on
    write(root / "papers" / "1908.03265.md", PAPER.replace("Liyuan", "Lilian"))  # in place: the directory keeps its mtime
    write(root / "experiments" / "exp1" / "settings" / "s1.json", '{"warmup_steps": 700, "flamingo": 1}\n')
    assert os.stat(root / "papers").st_mtime_ns == old
    assert ids(search(root, "Lilian")) == [("paper", "1908.03265")] and search(root, "Liyuan") == []
    assert ids(search(root, "flamingo")) == [("setting", "exp1/s1")]
    # Run records are replaced whole, as lab.runs.record writes them: a new directory entry.
    from lab.core.fsutil import atomic_write_json

    atomic_write_json(root / "experiments" / "exp1" / "runs" / "s1.json", {"state": "failed", "metrics": {"heron_loss": 1}})
    run = search(root, "heron_loss")
    assert ids(run) == [("run", "exp1/s1")] and run[0]["title"] == "exp1/s1 (failed)"


def test_a_finished_run_is_found_by_the_next_search(lab_root):
    """A finished run's record is not pushed into the index by the runner; the next search's sync reads it."""
    from helpers import write_settings
    from lab.runs import attempt as job
    from lab.core.workspace import Workspace

    (lab_root / "prog.py").write_text("import lab\nlab.log_metrics(step=1, zebra_score=0.75)\n")
    write_settings(lab_root, "exp9", {"s1.json": {"lr": 1}}, command="{python} prog.py {settings}")
    search(lab_root, "anything")  # the index exists now
    job.run(find_setting(Workspace(lab_root).experiment("exp9"), "s1"))
    assert ids(search(lab_root, "zebra_score")) == [("run", "exp9/s1")]
    conn = sqlite3.connect(index.index_path(lab_root))
    rows = conn.execute("SELECT type, key, info FROM docs WHERE file = 'experiments/exp9/runs/s1.json'").fetchall()
    conn.close()
    assert [(t, k) for t, k, _ in rows] == [("run", "exp9/s1")]
    assert "succeeded" in rows[0][2] and "zebra_score" in rows[0][2]


def test_building_the_index_does_not_import_pandas(tmp_path):
    """sqlite_utils imports pandas where it is installed (about a second) for nothing lab's schema uses: a new
    index (a fresh clone's first search, lab reindex) is built without it, and pandas still imports afterwards."""
    import subprocess
    import sys

    code = ("import sys; from lab.search import migrations; migrations.migrate(sys.argv[1]);"
            "print('pandas' in sys.modules); import sqlite_utils, pandas; print(pandas.__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "index.db")], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "pandas"]
