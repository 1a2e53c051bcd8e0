"""Names a user gives: experiments, settings, feeds. One rule, checked in one place (the click CLI and the fast
path in lab/cli/fast.py both call `check_name`). Imports nothing heavier than lab.errors: the fast path uses it."""

from __future__ import annotations

from lab.errors import BadInput

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
NAME_PATTERN = r"[A-Za-z0-9_.-]+"  # the same rule as a regular expression, for callers that match text


def is_name(name: str) -> bool:
    """Whether `name` is letters, digits, `-`, `_`, `.` only, and not just dots (no `/`, no `..`, no spaces)."""
    return bool(name) and set(name) <= NAME_CHARS and set(name) != {"."}


def check_name(name: str, what: str = "experiment") -> str:
    """`name` itself, or BadInput saying what a name may hold."""
    if not isinstance(name, str) or not is_name(name):
        raise BadInput(
            f"bad {what} name {name!r}: use letters, digits, '-', '_' and '.' (no '/', '..' or spaces)"
        )
    return name
