"""Names a user gives: experiments, settings, feeds. One rule, checked in one place (the click CLI and the fast
path in lab/cli/fast.py both call `check_name`). Imports nothing heavier than lab.errors: the fast path uses it."""

from __future__ import annotations

import os

from lab.errors import BadInput

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
NAME_PATTERN = r"[A-Za-z0-9_.-]+"  # the same rule as a regular expression, for callers that match text
# Longest name of an experiment, setting or feed, in bytes: room for what lab adds to it in a file name
# (`.S.settings.json.XXXXXXXX.tmp` while a record is written) within the 255 bytes a file name may have.
MAX_NAME_BYTES = 200


def is_name(name: str) -> bool:
    """Whether `name` is letters, digits, `-`, `_`, `.` only, and not just dots (no `/`, no `..`, no spaces)."""
    return bool(name) and set(name) <= NAME_CHARS and set(name) != {"."}


def shown(name: str) -> str:
    """A name as messages show it: quoted, control characters and undecodable bytes escaped, long ones cut."""
    text = repr(name)
    return f"{text[:40]}...' ({_size(name)} bytes)" if len(text) > 60 else text


def _size(name: str) -> int:
    """The name's length in bytes on disk (undecodable bytes arrive as lone surrogates)."""
    try:
        return len(os.fsencode(name))
    except UnicodeEncodeError:
        return len(name.encode("utf-8", "surrogatepass"))


def check_name(name: str, what: str = "experiment") -> str:
    """`name` itself, or BadInput saying what a name may hold: letters, digits, `-`, `_`, `.` (no `/`, no `..`, no
    spaces), not starting with `-` (every later command would need `--` before it), at most MAX_NAME_BYTES."""
    if not isinstance(name, str) or not is_name(name):
        raise BadInput(
            f"bad {what} name {shown(name) if isinstance(name, str) else repr(name)}: use letters, digits, '-', '_' and '.' (no '/', '..' or spaces)"
        )
    if name.startswith("-"):
        raise BadInput(f"bad {what} name {shown(name)}: it may not start with '-' (it would read as an option)")
    if len(name) > MAX_NAME_BYTES:  # ASCII by now: one byte a character
        raise BadInput(f"bad {what} name {shown(name)}: at most {MAX_NAME_BYTES} characters")
    return name


def check_file_name(name: str, what: str, where: str) -> str:
    """Refuse a name found on disk (a setting's file stem) that cannot be shown safely on one line: control
    characters (tab, newline, escape), other non-printable characters, bytes that are not UTF-8; or that starts
    with `-` or is longer than MAX_NAME_BYTES. `where` names the directory holding it."""
    why = None
    if not name.isprintable():
        why = "holds a character that cannot be shown safely (a control character, tab, newline, or a byte that is not UTF-8)"
    elif name.startswith("-"):
        why = "starts with '-' (it would read as an option)"
    elif _size(name) > MAX_NAME_BYTES:
        why = f"is longer than {MAX_NAME_BYTES} bytes"
    if why:
        raise BadInput(f"{where}: {what} name {shown(name)} {why}; rename the file")
    return name
