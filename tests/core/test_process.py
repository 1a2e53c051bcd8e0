"""Processes lab starts in the background: a long-lived caller (a notebook, a test process) keeps no zombie."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import wait_for
from lab.core.process import spawn_detached


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None  # gone: reaped


def test_a_detached_child_that_ends_is_reaped_not_left_a_zombie(tmp_path):
    proc = spawn_detached([sys.executable, "-c", "print('done')"], tmp_path / "out.log", cwd=tmp_path)
    wait_for(lambda: _state(proc.pid) is None, timeout=30, what="the ended child to be reaped")
    assert proc.returncode == 0
    assert (tmp_path / "out.log").read_text() == "done\n"
