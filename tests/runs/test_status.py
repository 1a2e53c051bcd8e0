"""`lab status`'s summary cache: only changed records are read again, and it never shows stale runs."""

from __future__ import annotations

import json
import os
import time

from lab.runs import status, statuscache
from lab.runs.table import local_time
from lab.core.fsutil import atomic_write_json
from lab.runs.local.queue import Queue
from lab.core.workspace import Workspace


def _record(exp: str, setting: str, state: str = "succeeded", **extra) -> dict:
    return {"experiment": exp, "setting": setting, "state": state, "attempt": 1, "exit_code": 0 if state == "succeeded" else 1,
            "signal": None, "started_at": "2026-11-27T03:00:00.000+00:00", "ended_at": "2026-11-27T03:01:00.000+00:00",
            "duration_s": 60.0, "metrics": {"loss": 0.5, "step": 10}, "settings": {"lr": 1}, "history": [], **extra}


def _lab(lab_root, names=("e1", "e2"), settings=("s1", "s2", "s10")) -> Workspace:
    for exp in names:
        runs = lab_root / "experiments" / exp / "runs"
        runs.mkdir(parents=True)
        for s in settings:
            atomic_write_json(runs / f"{s}.json", _record(exp, s))
        (runs / "s1.settings.json").write_text("{}")  # the program's settings file is not a record
    return Workspace(lab_root)


def _settle(ws: Workspace) -> None:
    """Make every runs/ directory look untouched for a minute (the cache then trusts its mtime)."""
    old = time.time() - 60
    for exp in ws.experiments_dir.iterdir():
        os.utime(exp / "runs", (old, old))


def test_status_lists_runs_in_natural_order_and_reads_records_once(lab_root, monkeypatch):
    ws = _lab(lab_root)
    rows = status.entries(ws)
    assert [(r["experiment"], r["setting"]) for r in rows] == [("e1", "s1"), ("e1", "s2"), ("e1", "s10"), ("e2", "s1"), ("e2", "s2"), ("e2", "s10")]
    assert rows[0]["metrics"] == {"loss": 0.5, "step": 10} and rows[0]["duration_s"] == 60.0
    _settle(ws)
    status.entries(ws)  # records the settled directories

    reads = []
    real = statuscache.records.read_record_file
    monkeypatch.setattr(status.records, "read_record_file", lambda p: reads.append(p) or real(p))
    assert json.loads(status.entries_json(ws)) == rows
    assert status.table_rows(ws)[2][:5] == ["e1/s10", "succeeded", local_time(rows[2]["started_at"]), "1:00", "0"]
    assert reads == []

    # A record replaced as lab writes them (atomically) is read again, and only it.
    atomic_write_json(ws.experiments_dir / "e2" / "runs" / "s2.json", _record("e2", "s2", "failed"))
    rows = status.entries(ws)
    assert [p.name for p in reads] == ["s2.json"]
    assert rows[4]["state"] == "failed" and rows[4]["exit_code"] == 1
    # A new record and a removed one.
    atomic_write_json(ws.experiments_dir / "e1" / "runs" / "s3.json", _record("e1", "s3"))
    (ws.experiments_dir / "e2" / "runs" / "s10.json").unlink()
    assert [r["setting"] for r in status.entries(ws)] == ["s1", "s2", "s3", "s10", "s1", "s2"]


def test_status_cache_is_derived(lab_root):
    ws = _lab(lab_root)
    first = status.entries(ws)
    cache = ws.state_dir / statuscache.CACHE_NAME
    assert cache.exists()
    cache.write_text("garbage\nmore garbage")
    assert status.entries(ws) == first
    cache.unlink()
    assert status.entries(ws) == first
    # An unreadable record is skipped, never fatal, and looked at again next time.
    bad = ws.experiments_dir / "e1" / "runs" / "s2.json"
    bad.write_text("{not json")
    assert [r["setting"] for r in status.entries(ws, ["e1"])] == ["s1", "s10"]
    atomic_write_json(bad, _record("e1", "s2"))
    assert [r["setting"] for r in status.entries(ws, ["e1"])] == ["s1", "s2", "s10"]


def test_status_targets_and_queue(lab_root):
    ws = _lab(lab_root)
    assert [r["setting"] for r in status.entries(ws, ["e2/s10", "e1/s1"])] == ["s1", "s10"]
    q = Queue(ws.state_dir)
    with q.transaction():
        q.insert("e1", "s2", {"lr": 2}, "h", {})
        q.insert("e3", "new", {"lr": 2}, "h", {})  # queued before any record exists
    q.close()
    (ws.experiments_dir / "e3").mkdir()
    rows = {(r["experiment"], r["setting"]): r for r in status.entries(ws)}
    assert rows[("e1", "s2")]["state"] == "queued" and rows[("e1", "s2")]["exit_code"] is None
    assert rows[("e3", "new")]["state"] == "queued"
    assert rows[("e1", "s1")]["state"] == "succeeded"
    text = json.loads(status.entries_json(ws, ["e1"]))
    assert [r["state"] for r in text] == ["succeeded", "queued", "succeeded"]


def test_status_answers_without_click_or_rich(lab_root):
    """`lab status` is run again and again while jobs run: it takes the click-free path (lab.cli.fast)."""
    import subprocess
    import sys

    from helpers import write_settings

    write_settings(lab_root, "e", {"s.json": {}})
    for args in (["status"], ["status", "e", "--json"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "lab", "--root", str(lab_root), *args],
                              capture_output=True, text=True, cwd=lab_root)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert not imported & {"click", "rich", "torch", "transformers", "sqlite_utils"}
    # Anything the fast path does not know goes to click, which explains it.
    proc = subprocess.run([sys.executable, "-m", "lab", "--root", str(lab_root), "status", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "No such option" in proc.stderr
