"""The status cache, `.lab/status-cache`: a summary of every run record, read by `lab status`
(`lab.runs.status`) and by the executors that need their active runs without a full scan (the Slurm executor).

Speed: a lab with 10,000 past runs has 10,000 record files, and parsing them all on every `lab status` takes
too long (records carry settings, argv and git diffs). So a summary of each record is cached here (derived:
delete it and it is rebuilt). Its fields are separated by NUL and its entries by NUL + newline: a file name may
hold a tab or a newline but never a NUL, and JSON text never holds a raw NUL, so no legal experiment or setting
name can break it. One block per experiment:

    #<NUL>EXP<NUL>RUNS-DIR-MTIME:INODE<NUL>SETTLED<NUL>N
    SETTING<NUL>MTIME:SIZE:INODE<NUL>ACTIVE<NUL>TABLE-CELLS<NUL>INPUTS<NUL>SUMMARY-JSON   (N entries, natural order)

ACTIVE is the executor of a run the record says is queued or running (empty otherwise): that field, never the
shown text, tells `lab status`, `lab stop` and `lab cancel` which runs an executor must be asked about.
TABLE-CELLS: the run's row of the `lab status` table (`lab.runs.table`), so the table needs no JSON decoding.
INPUTS: the recorded inputs of a succeeded run (JSON, lab.runs.inputs), or empty.

A record is re-read only when its (mtime_ns, size, inode) changed. Records are always replaced atomically (a
rename into `runs/`), which also changes the directory's mtime; so when `runs/` still has the mtime it had
when it was last seen *settled* (older than TRUST_AFTER_NS then, because file times have a coarse clock), none
of its records changed and not even their stats are needed. Loading the cache is splitting lines. (A record
edited in place by hand, without a rename, shows once anything else in its `runs/` changes; delete the cache
to see it at once.)

This module must stay light: `lab status --json` imports neither rich nor anything heavy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lab.core import layout
from lab.core.fsutil import atomic_write_text, natural_key
from lab.runs import record as records
from lab.runs.inputs import staleness_token
from lab.runs.table import table_cells

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from typing import Any, TypedDict

    class Summary(TypedDict, total=False):
        """One entry of `lab status` (`--json` prints a list of them): the part of a run record that status shows
        (SUMMARY_KEYS), and what the queue or Slurm knows better (`progress`, `slurm_state`) or what changed since
        (`changed_inputs` of a `stale` run)."""

        experiment: str
        setting: str
        state: str | None  # a State (None: the record has none)
        attempt: int | None
        exit_code: int | None
        signal: str | int | None
        queued_at: str | None
        started_at: str | None
        ended_at: str | None
        duration_s: float | None
        metrics: dict[str, Any]
        metrics_sources: dict[str, str]  # where each metric came from (LAB_METRICS, trainer_state, output, ...)
        executor: str | None
        job_id: int | None
        reason: str | None
        slurm_job_id: str | None
        gpus: list[str] | None
        progress: dict[str, Any]  # a running run's latest metrics
        slurm_state: str
        changed_inputs: list[str]  # a stale run's inputs that changed
        waiting: str  # why a queued local job waits (a GPU that others hold)

    from lab.core.workspace import Workspace
    from lab.runs.record import Record

CACHE_NAME = layout.STATUS_CACHE
CACHE_VERSION = "lab status cache 8 sources"  # 8: summaries hold metrics_sources
SEP = "\0"
END = "\0\n"
CELL_SEP = "\x1f"
# A runs/ directory whose mtime is older than this is "settled": an unchanged mtime then proves that no record
# in it was added, replaced or removed (file times have a coarse clock, so a recent mtime proves nothing).
TRUST_AFTER_NS = 2_000_000_000
SUMMARY_KEYS = ("state", "attempt", "exit_code", "signal", "queued_at", "started_at", "ended_at", "duration_s",
                "metrics", "executor", "job_id", "reason", "slurm_job_id", "gpus")

Targets = list[tuple[str, str | None]] | None  # parsed targets (experiment, setting or None), None for all
Block = tuple[str, list[str], list[str]]  # (experiment, metas, jsons): one experiment's cached entries


def summarize(record: Record | dict[str, Any], experiment: str, setting: str) -> Summary:
    """The part of a record that status shows (NaN and infinities as strings: the output is strict JSON)."""
    out: Any = {"experiment": experiment, "setting": setting}
    for key in SUMMARY_KEYS:
        out[key] = records.finite(record.get(key))
    if not isinstance(out["metrics"], dict):
        out["metrics"] = {}
    if isinstance(record.get("metrics_sources"), dict):  # captured metrics: which file or output gave each
        out["metrics_sources"] = record["metrics_sources"]
    if isinstance(record.get("reproduction"), dict):  # the last `lab reproduce`, a side attempt
        out["reproduction"] = records.finite(record["reproduction"])
    return out


def parse_targets(targets: list[str] | None) -> Targets:
    if not targets:
        return None
    from lab.core.settings import parse_target

    return [parse_target(target) for target in targets]


def wanted(parsed: Targets, exp: str, setting: str | None = None) -> bool:
    if parsed is None:
        return True
    return any(e == exp and (s is None or setting is None or s == setting) for e, s in parsed)


def name_of(meta: str) -> str:
    """The setting an entry's meta fields are about."""
    return meta.partition(SEP)[0]


def cells_of(meta: str) -> list[str]:
    """The cached table row of an entry."""
    return meta.split(SEP, 4)[3].split(CELL_SEP)


def inputs_of(meta: str) -> str:
    """The cached inputs of an entry (JSON text, or '' when there is nothing to check)."""
    return meta.split(SEP, 4)[4] if meta.count(SEP) >= 4 else ""


def active_in(blocks: list[Block], executor: str) -> list[tuple[str, str]]:
    """(experiment, setting) of the records that say a job of `executor` is queued or running (the ACTIVE field)."""
    found = []
    for exp, metas, _ in blocks:
        for meta in metas:
            name, _, rest = meta.partition(SEP)
            if rest.split(SEP, 2)[1] == executor:
                found.append((exp, name))
    return found


def active_runs(workspace: Workspace, executor: str, targets: list[str] | None = None) -> list[tuple[str, str]]:
    """(experiment, setting) of the runs whose record says `executor` has them queued or running."""
    parsed = parse_targets(targets)
    return [(e, n) for e, n in active_in(read(workspace, parsed), executor) if wanted(parsed, e, n)]


def summaries(workspace: Workspace, executor: str) -> list[Summary]:
    """The summaries of the records of runs that `executor` ran or runs, as their records say."""
    out = []
    for _, _, jsons in read(workspace, None):
        for text in jsons:
            summary = json.loads(text)
            if summary.get("executor") == executor:
                out.append(summary)
    return out


def read(workspace: Workspace, parsed: Targets) -> list[Block]:
    """The cached summaries of the records, re-reading only what changed: [(exp, metas, jsons)] where
    metas[i] is "SETTING<NUL>STAMP<NUL>ACTIVE<NUL>CELLS<NUL>INPUTS" and jsons[i] the summary's JSON, in natural
    setting order."""
    cache_path = workspace.state_dir / CACHE_NAME
    cache = _load(cache_path)  # exp -> (dir stamp, settled, metas, jsons)
    fresh: dict = {}
    changed = False
    recent = time.time_ns() - TRUST_AFTER_NS
    try:
        exps = os.scandir(workspace.experiments_dir)
    except FileNotFoundError:
        return []
    with exps:
        for exp in exps:
            ename = exp.name
            if parsed is not None and not wanted(parsed, ename):
                if ename in cache:
                    fresh[ename] = cache[ename]
                continue
            runs_path = os.path.join(exp.path, "runs")
            try:
                dir_st = os.stat(runs_path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            dir_stamp = f"{dir_st.st_mtime_ns}:{dir_st.st_ino}"
            block = cache.get(ename)
            if block is not None and block[0] == dir_stamp and block[1]:
                fresh[ename] = block  # no record was added, replaced or removed since a settled look
                continue
            lines = _read_runs(ename, runs_path, block)
            fresh[ename] = (dir_stamp, dir_st.st_mtime_ns < recent, [m for _, m, _ in lines], [j for _, _, j in lines])
            changed = changed or fresh[ename] != block
    if set(fresh) != set(cache):
        changed = True
    if changed:
        _write(cache_path, fresh)
    blocks = [(e, fresh[e][2], fresh[e][3]) for e in fresh if parsed is None or wanted(parsed, e)]
    blocks.sort(key=lambda b: natural_key(b[0]))
    return blocks


def _read_runs(ename: str, runs_path: str, block) -> list[tuple[str, str, str]]:
    """One experiment's entries (setting, meta, json), re-reading only the records whose stat changed."""
    old = {name_of(meta): (meta, text) for meta, text in zip(block[2], block[3])} if block else {}
    lines = []
    with os.scandir(runs_path) as runs:
        for f in runs:
            name = f.name
            if not name.endswith(".json") or name.endswith(".settings.json") or name[0] == ".":
                continue
            setting = name[:-5]
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            stamp = f"{setting}{SEP}{st.st_mtime_ns}:{st.st_size}:{st.st_ino}{SEP}"
            hit = old.get(setting)
            if hit is not None and hit[0].startswith(stamp):
                lines.append((setting, *hit))
                continue
            record = records.read_record_file(Path(f.path))
            if record is None:
                continue  # unreadable: not cached, so it is read again next time
            summary = summarize(record, ename, setting)
            cells = CELL_SEP.join(_printable(c) for c in table_cells(summary))
            active = str(summary.get("executor") or "local") if summary.get("state") in records.ACTIVE else ""
            inputs = staleness_token(dict(record), Path(runs_path).parents[2])
            lines.append((setting, f"{stamp}{_printable(active)}{SEP}{cells}{SEP}{inputs}", json.dumps(summary, ensure_ascii=False)))
    lines.sort(key=lambda line: natural_key(line[0]))
    return lines


def _write(path: Path, fresh: dict) -> None:
    parts = [_header() + END]
    for ename, (dir_stamp, settled, metas, jsons) in fresh.items():
        parts.append(f"#{SEP}{ename}{SEP}{dir_stamp}{SEP}{int(settled)}{SEP}{len(metas)}{END}")
        parts.extend(f"{m}{SEP}{j}{END}" for m, j in zip(metas, jsons))
    try:
        atomic_write_text(path, "".join(parts), fsync=False)  # derived: rebuilt if ever lost
    except OSError:
        pass  # a read-only lab still gets its status


def _printable(text: str) -> str:
    """A table cell with control characters (a tab or newline in a name, a NUL in a value) shown as '?'."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _header() -> str:
    # Table cells hold local times: another time zone makes another cache.
    return f"{CACHE_VERSION}\t{os.environ.get('TZ', '')}:{time.timezone}:{time.altzone}:{'/'.join(time.tzname)}"


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    entries = text.split(END)
    if not entries or entries[0] != _header():
        return {}
    cache = {}
    i = 1
    try:
        while i < len(entries) and entries[i].startswith("#" + SEP):
            _, ename, dir_stamp, settled, count = entries[i].split(SEP)
            n = int(count)
            metas, jsons = [], []
            for item in entries[i + 1:i + 1 + n]:
                meta, _, text = item.rpartition(SEP)
                if meta.count(SEP) != 4:
                    return {}
                metas.append(meta)
                jsons.append(text)
            if len(metas) != n:
                return {}
            cache[ename] = (dir_stamp, settled == "1", metas, jsons)
            i += 1 + n
    except ValueError:
        return {}
    return cache
