"""Small file helpers: atomic writes and natural ordering."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path


def atomic_write_text(path: Path | str, text: str, fsync: bool = True) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never half of either.

    The temporary file lives in the same directory (so `os.replace` is atomic) and is fsynced first, so
    the file survives `kill -9` and power loss as a whole. `fsync=False` (for files lab can derive again)
    keeps the atomic replace but skips the wait for the disk.
    """
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_bytes(path: Path | str, data: bytes, fsync: bool = True) -> None:
    """`atomic_write_text` for bytes (a copy of a user's file kept as it is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_text(path: Path | str, where: str | None = None, newline: str | None = None) -> str:
    """A user's text file, decoded as UTF-8; a file that is not UTF-8 (a binary file, another encoding) raises
    BadInput naming it and the first bad byte. FileNotFoundError passes through for callers that check."""
    from lab.errors import BadInput

    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{where or path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                       "save it as UTF-8") from None
    if newline is None:
        text = text.replace("\r\n", "\n").replace("\r", "\n")  # what open() in text mode does
    return text


def atomic_write_json(path: Path | str, data, fsync: bool = True) -> None:
    """Write `data` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n", fsync=fsync)


def json_objects(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON objects among `lines` (JSON Lines): blank lines, non-JSON and non-objects are skipped, never fatal."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def read_jsonl(path: Path | str) -> list[dict]:
    """The JSON objects of a JSON Lines file ([] when it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return list(json_objects(f))
    except FileNotFoundError:
        return []


def create_exclusive(path: Path, text: str) -> bool:
    """Create `path` with `text` only if it does not exist yet; return whether it was created.

    Used where a user's file must never be overwritten (`lab init`, `lab new`).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key that orders `s2` before `s10`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name)]
