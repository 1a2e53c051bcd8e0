"""`lab recapture EXP[/SETTING]`: derive the metrics of ended runs again from their logs and output directories,
without running anything (runs made before capture existed, or after a pattern changed); and `lab capture LOG`,
which shows what the patterns would take from a log file.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from lab.core.settings import select
from lab.errors import BadInput
from lab.runs import record as records
from lab.runs.capture import write_result
from lab.runs.capture.merge import Capture, attempt_since, output_dirs
from lab.runs.capture.patterns import Options, compile_pattern, options_for
from lab.runs.state import State

HEADER = b"===== lab: attempt "


def attempt_span(log: Path, attempt: int, run_id: str) -> tuple[int, int | None] | None:
    """Where attempt `attempt`'s output lies in the log: (after its header line, before the next header or None)."""
    try:
        f = open(log, "rb")
    except OSError:
        return None
    with f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty log
            return None
        with data:
            return _span(data, HEADER + f"{attempt} of {run_id} at ".encode())


WALK_LINES = 1000  # lines holding `=` looked at from the end before the whole log is searched for the header


def _span(data, mark: bytes) -> tuple[int, int | None] | None:
    """(after the last line that begins with `mark`, before the next header line or None); None when there is
    none, or when the last `mark` is not at a line's start. The lines that hold `=` (each header does) are walked
    back from the end with memrchr, so that a big log is not searched twice for a long needle."""
    end, nxt = len(data), None
    for _ in range(WALK_LINES):
        i = data.rfind(b"=", 0, end)
        if i < 0:
            return None
        start = data.rfind(b"\n", 0, i) + 1
        stop = data.find(b"\n", i)
        at = data.rfind(mark, start, len(data) if stop < 0 else stop)
        if at >= 0:
            return None if at != start or stop < 0 else (stop + 1, nxt)
        if data[start:start + len(HEADER)] == HEADER:
            nxt = start
        end = start
        if end == 0:
            return None
    at = data.rfind(mark, 0, end)
    if at < 0 or (at > 0 and data[at - 1:at] != b"\n"):
        return None
    start = data.find(b"\n", at)
    if start < 0:
        return None
    later = data.find(b"\n" + HEADER, start, end)
    return start + 1, (later + 1 if later >= 0 else nxt)


def recapture(workspace, targets: list[str], on_run=None) -> list[dict]:
    """Capture the latest attempt of each ended run of the targets again; its record's metrics are rewritten
    (a program that wrote LAB_METRICS keeps those). Returns one summary a run."""
    done = []
    for setting in select(workspace, targets):
        rec = records.read_record(setting, strict=False)
        if not rec or rec.get("state") not in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.INTERRUPTED):
            continue
        log = records.log_path(setting)
        if not log.exists():
            summary = {"run": setting.id, "metrics": rec.get("metrics") or {}, "sources": rec.get("metrics_sources") or {},
                       "notes": [f"its log is gone ({log}); left as it was"], "changed": False}
            done.append(summary)
            if on_run:
                on_run(summary)
            continue
        span = attempt_span(log, int(rec.get("attempt") or 1), setting.id)
        options = options_for(setting.experiment)
        if span is None:
            span = (0, None)
        cap = Capture(log, span[0], output_dirs(setting.experiment.dir / (rec.get("output_dir") or f"models/{setting.name}")),
                      options, since=attempt_since(rec.get("started_at")), metrics_path=records.metrics_path(setting),
                      end=span[1])
        cap.poll(final=True)
        result = cap.result()
        write_result(records.metrics_path(setting), result)
        new = records.recaptured(setting, rec)
        summary = {"run": setting.id, "metrics": new.get("metrics", {}), "sources": new.get("metrics_sources", {}),
                   "notes": new.get("capture_notes", []), "changed": new.get("metrics") != rec.get("metrics")}
        done.append(summary)
        if on_run:
            on_run(summary)
    return done


def test_log(path: Path, patterns: list[str], experiment=None, builtin: bool = True) -> dict:
    """What capture would take from the log file at `path`: the result of `Capture` over it (no files)."""
    if not path.is_file():
        raise BadInput(f"{path}: no such log file")
    options = options_for(experiment) if experiment is not None else Options()
    for p in patterns:
        compile_pattern(p, "--pattern")
    options = Options(True, builtin and options.output, False, [*options.patterns, *patterns])
    cap = Capture(path, 0, (), options)
    cap.poll(final=True)
    return cap.result()
