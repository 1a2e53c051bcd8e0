"""The runner's diary, `.lab/runner.log`: one timestamped line per thing the runner, a job's supervisor or crash
recovery did (the jobs' own output goes to their `logs/SETTING.log`). Whichever lab process writes a line appends
it to the file by name, so a line never lands in an older, rotated log."""

from __future__ import annotations

import os
from pathlib import Path

from lab.core import layout
from lab.runs.record import now_iso

LOG_NAME = layout.RUNNER_LOG
ROTATE_AT = 5_000_000  # bytes: a new runner starts a fresh log past this, keeping one older one (runner.log.1)


def path(state_dir: Path) -> Path:
    return Path(state_dir) / LOG_NAME


def write(state_dir: Path, message: str) -> None:
    """Append one line to the diary; a diary that cannot be written (a full disk) is no reason to stop."""
    try:
        with open(path(state_dir), "a", encoding="utf-8") as f:
            f.write(f"{now_iso()} {message}\n")
    except OSError:
        pass


def rotate(state_dir: Path) -> Path:
    """Move a diary grown past ROTATE_AT aside (before a new runner starts); return the diary's path."""
    log = path(state_dir)
    try:
        if log.stat().st_size > ROTATE_AT:
            os.replace(log, log.with_name(LOG_NAME + ".1"))
    except FileNotFoundError:
        pass
    return log
