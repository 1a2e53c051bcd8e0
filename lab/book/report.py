"""`lab report`: the runs table written into an experiment's report.md, between its results markers."""

from __future__ import annotations

from lab.book.table import runs_table, RunsTable
from lab.core.fsutil import atomic_write_text, read_text
from lab.errors import BadInput

RESULTS_START = "<!-- lab:results -->"
RESULTS_END = "<!-- /lab:results -->"


def replace_block(text: str, start: str, end: str, content: str, where: str, heading: str = "## Results") -> str:
    """`text` with what lies between the markers replaced by `content`; markers (under `heading`) added if absent."""
    n_start, n_end = text.count(start), text.count(end)
    if n_start == 0 and n_end == 0:
        sep = "" if text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        if not text:
            sep = ""
        return f"{text}{sep}{heading}\n\n{start}\n{content}\n{end}\n"
    if n_start != 1 or n_end != 1:
        raise BadInput(f"{where}: expected one {start} and one {end} marker, found {n_start} and {n_end}; fix them by hand")
    i, j = text.index(start), text.index(end)
    if j < i:
        raise BadInput(f"{where}: {end} comes before {start}; fix the markers by hand")
    return f"{text[: i + len(start)]}\n{content}\n{text[j:]}"


def write_results(exp, metric: str | None = None, mode: str | None = None, metrics: list[str] | None = None,
                  all_metrics: bool = False) -> RunsTable:
    """Write the runs table into the experiment's report.md between the results markers (atomically)."""
    if not exp.report_path.is_file():
        raise BadInput(f"{exp.report_path}: no report; make the experiment with 'lab new {exp.name}'")
    table = runs_table(exp, metric=metric, mode=mode, metrics=metrics, all_metrics=all_metrics)
    where = str(exp.report_path)
    text = read_text(exp.report_path, newline="")
    new = replace_block(text, RESULTS_START, RESULTS_END, table.markdown(), where)
    if new != text:
        atomic_write_text(exp.report_path, new)
    return table

