"""An advisory lock on a file, shared by separate `lab` processes (POSIX `flock`; a no-op elsewhere)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(path: Path):
    """Hold an exclusive lock on `path` (created if missing) for the duration of the block; yield the open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no cross-process lock, still correct within one process
            fcntl = None
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield f
        finally:
            if fcntl is not None:
                f.flush()
                os.fsync(f.fileno())
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
