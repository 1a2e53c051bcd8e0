"""The lab's file layout, spelled once (lab/core/layout.py): the index's scan, `kind_of` and the watcher's
directories all read it, so they agree on which files are indexed."""

from __future__ import annotations

import os

import pytest

from lab.core import layout
from lab.search import index

FILES = {
    "experiments/e1/report.md": "report",
    "experiments/e1/settings/s1.json": "setting",
    "experiments/e1/settings/s2.jsonnet": "setting",
    "experiments/e1/settings/base.libsonnet": "base",
    "experiments/e1/runs/s1.json": "run",
    "experiments/e1/runs/s1.settings.json": None,
    "experiments/e1/logs/s1.log": None,
    "experiments/e1/logs/s1.metrics.jsonl": None,
    "experiments/e1/models/s1/config.json": None,
    "experiments/e1/notes.md": None,
    "experiments/e2/report.md": "report",
    "experiments/.e3.new/report.md": None,
    "papers/a.md": "paper",
    "papers/deep/er/b.MD": "paper",
    "papers/.trash/c.md": None,
    "papers/d.txt": None,
    "feeds/items/arxiv.jsonl": "feed",
    "feeds/feeds.json": None,
    ".lab/index.db": None,
    "report.md": None,
}


@pytest.mark.parametrize("rel, kind", FILES.items())
def test_kind_of(rel, kind):
    assert layout.kind_of(rel) == kind


def test_the_scan_the_kinds_and_the_watched_directories_agree(tmp_path):
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    scanned = {f"{d}/{n}" for d, (_, names, _, _) in index.scan(tmp_path).items() for n in names if n[-1] != "/"}
    assert scanned == {rel for rel, kind in FILES.items() if kind}
    watched = layout.index_dirs(str(tmp_path))
    assert {rel.rsplit("/", 1)[0] for rel in scanned} <= set(watched)
    assert all(layout.leads_to_index(d) for d in watched)
    assert "experiments/e2/settings" in watched and not os.path.isdir(tmp_path / "experiments/e2/settings")
    for other in ("experiments/e1/logs", "experiments/e1/models", ".lab", "papers/.trash", "feeds/other", "site"):
        assert not layout.leads_to_index(other), other


def test_an_empty_lab_still_watches_where_experiments_will_come(tmp_path):
    from lab.core.workspace import init

    init(tmp_path)
    assert layout.index_dirs(str(tmp_path)) == ["", "experiments", "feeds", "feeds/items", "papers"]
