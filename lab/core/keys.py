"""The keys lab reads from `lab.yaml` and from a report's front matter, and the one check for near-miss typos.

A report's front matter is also the user's own metadata, and other keys in lab.yaml may belong to tools or
versions of lab this one does not know, so an unknown key is refused only when it is a near miss of a known one
(`comand:` for `command:`): a typo that would otherwise pass in silence, with the default taken instead.
"""

from __future__ import annotations

import difflib

from lab.errors import BadInput

# Read from both (a report's value wins for its experiment).
SHARED = ("executor", "slurm", "notify", "metrics", "code", "gpus", "jobs_per_gpu", "max_parallel", "gpus_per_run")
REPORT_KEYS = ("title", "tags", "command", "papers", "date", "author", "authors", *SHARED)
CONFIG_KEYS = ("book", *SHARED)


def close_match(word: str, known, cutoff: float = 0.75) -> str | None:
    """The known word `word` most likely misspells, or None."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, known, cutoff: float = 0.6) -> str:
    """` (did you mean 'x'?)` when `word` is close to one of `known`, else ""."""
    found = close_match(word, known, cutoff)
    return f" (did you mean {found!r}?)" if found else ""


def check_keys(mapping: dict, known, where) -> None:
    """BadInput naming the first key of `mapping` that is unknown and a near miss of a known one."""
    for key in mapping:
        if not isinstance(key, str) or key in known:
            continue
        found = close_match(key, known)
        if found:
            raise BadInput(f"{where}: unknown key {key!r} (did you mean {found!r}?)")


def strings(value, error: str) -> list[str]:
    """A setting given as one string or a list of strings, as a list; BadInput(`error`) for anything else."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(error)
    return value


def check_report(meta: dict, report_path) -> None:
    check_keys(meta, REPORT_KEYS, report_path)


def check_config(config: dict, config_path) -> None:
    check_keys(config, CONFIG_KEYS, config_path)


def unknown_name(word: str, known: list[str], what: str, limit: int = 12) -> str:
    """` (did you mean 'x'?); experiments: a, b, c` for a name that is not there: the nearest one, then the list of
    what exists (the first `limit`), or that there is none."""
    hint = did_you_mean(word, known)
    if not known:
        return f"{hint}; there are no {what} yet"
    shown = ", ".join(known[:limit]) + (f", +{len(known) - limit} more" if len(known) > limit else "")
    return f"{hint}; {what}: {shown}"
