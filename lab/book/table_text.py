"""The runs table as text for a terminal or a message (`lab compare`, a notification's summary)."""

from __future__ import annotations

from lab.book.sweep import names_needed
from lab.runs.state import State


def text_table(table) -> list[str]:
    """The runs table for a terminal: a line of groups (settings, eval, test ...) over the column names, numbers
    right-aligned, the best run marked with *; the state column only when some run did not succeed."""
    groups = table.groups()
    rows = [["*" if run.setting == table.best else " ", *cells] for run, cells in zip(table.runs, table.rows())]
    # A name is cut only where the differing values (columns beside it) tell the rows apart without it.
    keep_names = names_needed(table.runs, table.setting_keys)
    rows = [[c if len(c) <= 24 or (i == 1 and keep_names) else c[:23] + "…" for i, c in enumerate(row)] for row in rows]
    if all(run.state == State.SUCCEEDED for run in table.runs):
        groups[0] = ("run", ["setting", "time"])
        rows = [[row[0], row[1], *row[3:]] for row in rows]
    else:
        groups[0] = ("run", ["setting", "state", "time"])
    n_run = len(groups[0][1])
    labels = [label for _, columns in groups for label in columns]
    starts, i = [], 0
    for _, columns in groups:
        starts.append(i)
        i += len(columns)
    widths = [max(len(labels[c]), *(len(r[c + 1]) for r in rows)) for c in range(len(labels))]
    # A group's name must fit over its columns: widen the last one.
    for (name, columns), start in zip(groups, starts):
        span = sum(widths[start:start + len(columns)]) + 2 * (len(columns) - 1)
        if len(name) > span:
            widths[start + len(columns) - 1] += len(name) - span
    numeric = {n_run - 1} | set(range(n_run + len(table.setting_keys), len(labels)))
    group_sep, col_sep = "  ", "  "

    def line(cells, first=" "):
        parts = []
        for (_, columns), start in zip(groups, starts):
            parts.append(col_sep.join(cells[c].rjust(widths[c]) if c in numeric else cells[c].ljust(widths[c])
                                      for c in range(start, start + len(columns))))
        return (first + " " + group_sep.join(parts)).rstrip()

    def group_line():
        parts = []
        for (name, columns), start in zip(groups, starts):
            span = sum(widths[start:start + len(columns)]) + len(col_sep) * (len(columns) - 1)
            parts.append(("" if name == "run" else name or "metrics").ljust(span))
        return ("  " + group_sep.join(parts)).rstrip()

    out = [group_line(), line(labels), line(["-" * w for w in widths])]
    out += [line(row[1:], row[0]) for row in rows]
    return out


def text_grid(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    """A plain grid: columns from `numeric_from` on right-aligned."""
    widths = [max([len(header[c]), *(len(r[c]) for r in rows)]) for c in range(len(header))]

    def line(cells):
        return "  ".join(cells[c].rjust(widths[c]) if c >= numeric_from else cells[c].ljust(widths[c])
                         for c in range(len(cells))).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
