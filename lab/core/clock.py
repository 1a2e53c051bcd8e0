"""The lab's clock: timestamps are timezone-aware UTC in ISO 8601 (run records, the queue, notes, feeds)."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso(timespec: str = "milliseconds") -> str:
    """The current time, timezone-aware UTC, ISO 8601 (to the millisecond unless `timespec` says otherwise)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def iso(timestamp: float, timespec: str = "milliseconds") -> str:
    """A Unix time as `now_iso` writes times."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec=timespec)
