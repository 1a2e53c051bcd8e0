"""`lab logs EXP/SETTING[@N] [--tail N]`: which part of a run's log to print.

A setting's log holds every attempt, each under a header line `===== lab: attempt N of EXP/SETTING at ...`
(lab.runs.attempt). `@N` picks attempt N's part: from its header to the next attempt's header. `tail` keeps the
last lines of what was picked. A run that does not exist is named with what does (did-you-mean), and only a
setting that exists is offered `lab run`.
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.errors import BadInput
from lab.runs import record as records

_HEADER = re.compile(rb"^===== lab: (?:attempt (\d+) of |reproduction of )", re.M)


def locate(workspace, ref: str, follow_active=None):
    """(setting, log path, attempt or None) for `EXP/SETTING[@N]`; BadInput naming what exists when there is no
    such setting, or no log yet (with the command that makes one)."""
    from lab.runs.diff import parse_ref

    exp_name, name, attempt = parse_ref(ref)
    exp = workspace.experiment(exp_name)
    setting = records.setting_of(workspace, exp.name, name)
    path = records.log_path(setting)
    if path.exists() or (follow_active is not None and follow_active(setting)):
        return setting, path, attempt
    if records.read_record_file(records.record_path(setting)) is None and not setting.path.exists():
        from lab.core.settings import find_settings

        find_settings(exp, name)  # raises: no such setting, did you mean, the settings that exist
    raise BadInput(f"no log for {setting.id} yet ({path.relative_to(workspace.root)}); run it with: lab run {setting.id}")


def attempt_range(path: Path, attempt: int) -> tuple[int, int]:
    """The byte range of attempt `attempt`'s part of the log; BadInput naming the attempts there are."""
    data = Path(path).read_bytes()
    starts = [(m.start(), int(m.group(1)) if m.group(1) else None) for m in _HEADER.finditer(data)]
    for i, (offset, n) in enumerate(starts):
        if n == attempt:
            end = starts[i + 1][0] if i + 1 < len(starts) else len(data)
            return offset, end
    there = sorted({n for _, n in starts if n is not None})
    listed = ", ".join(f"@{n}" for n in there) or "none"
    raise BadInput(f"{path.name} has no attempt {attempt} (attempts in it: {listed})")


def tail_start(data: bytes, lines: int) -> int:
    """Where the last `lines` lines of `data` begin."""
    if lines <= 0:
        return len(data)
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


def read_part(path: Path, attempt: int | None = None, tail: int | None = None) -> tuple[bytes, int]:
    """(the text to print, the end offset read): the whole log, or attempt `attempt`'s part, its last `tail` lines."""
    if tail is not None and tail < 0:
        raise BadInput(f"--tail takes a number of lines, 0 or more, not {tail}")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return b"", 0
    start, end = attempt_range(path, attempt) if attempt is not None else (0, len(data))
    part = data[start:end]
    if tail is not None:
        part = part[tail_start(part, tail):]
    return part, end
