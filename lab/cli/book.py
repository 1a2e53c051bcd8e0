"""`lab compare`, `lab report`, `lab book`."""

from __future__ import annotations

import click

from lab.cli.app import echo_json, pass_lab

_mode_options = [
    click.option("--metric", metavar="NAME", help="The metric that picks the best run (default: eval_accuracy, else eval_loss, else loss, ...)."),
    click.option("--max", "mode", flag_value="max", help="Higher is better (default: guessed from the name: accuracy, f1 ... higher; loss, error ... lower)."),
    click.option("--min", "mode", flag_value="min", help="Lower is better."),
]


def _with_mode(f):
    for option in reversed(_mode_options):
        f = option(f)
    return f


def _metric_names(value):
    if value is None:
        return None
    from lab.book.table import parse_metric_names

    return parse_metric_names(value, "--metrics") or None


_columns_options = [
    click.option("--metrics", "metrics", metavar="A,B", help="The metric columns, in this order (default: metrics: of the report's front matter or lab.yaml, else up to six results, evaluation and test first)."),
    click.option("--all", "all_metrics", is_flag=True, help="Every metric as a column, bookkeeping (runtimes, max_steps, ...) included."),
]


def _with_columns(f):
    for option in reversed(_columns_options):
        f = option(f)
    return f


def text_table(table) -> list[str]:
    """The runs table for a terminal: a line of groups (settings, eval, test ...) over the column names, numbers
    right-aligned, the best run marked with *; the state column only when some run did not succeed."""
    groups = table.groups()
    rows = [["*" if run.setting == table.best else " ", *cells] for run, cells in zip(table.runs, table.rows())]
    rows = [[c if len(c) <= 24 else c[:23] + "…" for c in row] for row in rows]
    if all(run.state == "succeeded" for run in table.runs):
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


@click.command("compare")
@click.argument("experiment")
@_with_mode
@_with_columns
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every run with its differing settings and all final metrics.")
@pass_lab
def compare_cmd(lab, experiment, metric, mode, metrics, all_metrics, as_json):
    """Compare the runs of EXPERIMENT: the settings that differ, final metrics, the best run marked with *.

    Evaluation and test metrics come first; bookkeeping (runtimes, max_steps, sample counts, the last logged
    loss beside train_loss) is left out unless named or --all is given.

    \b
    Examples:
      lab compare exp1
      lab compare exp1 --metrics eval_accuracy,eval_loss
      lab compare exp1 --metric eval_f1 --max --all
      lab compare exp1 --json
    """
    from lab.book.table import runs_table

    table = runs_table(lab.workspace.experiment(experiment), metric=metric, mode=mode,
                       metrics=_metric_names(metrics), all_metrics=all_metrics)
    if as_json:
        echo_json(table.to_json())
        return
    if not table.runs:
        click.echo(f"{experiment} has no settings or runs yet", err=True)
        return
    for text in text_table(table):
        click.echo(text)
    for extra in table.notes():  # stale runs and reproductions
        click.echo(extra)
    note = table.best_note()
    if note:
        click.echo(f"* {note}" if table.best else note, err=True)
    if len(table.runs) > 1 and all(run.state == "succeeded" for run in table.runs):
        click.echo("both runs succeeded" if len(table.runs) == 2 else f"all {len(table.runs)} runs succeeded", err=True)
    if table.hidden_metrics:
        click.echo(f"{table.hidden_note()}: --metrics A,B or --all shows them", err=True)


@click.command("report")
@click.argument("experiment")
@_with_mode
@_with_columns
@pass_lab
def report_cmd(lab, experiment, metric, mode, metrics, all_metrics):
    """Write the runs table of EXPERIMENT into its report.md, between <!-- lab:results --> and <!-- /lab:results -->.

    Only what lies between the markers changes (they are added under a "## Results" heading at the end when
    the report has none), so running it again after new runs just refreshes the table. The columns are those
    of lab compare (metrics: in the report's front matter or lab.yaml chooses them).

    \b
    Examples:
      lab report exp1
      lab report exp1 --metrics eval_accuracy,eval_f1,eval_loss
    """
    from lab.book.table import write_results

    exp = lab.workspace.experiment(experiment)
    table = write_results(exp, metric=metric, mode=mode, metrics=_metric_names(metrics), all_metrics=all_metrics)
    click.echo(str(exp.report_path))
    click.echo(f"wrote {len(table.runs)} runs into {exp.report_path}" + (f" ({table.best_note()})" if table.metric else ""), err=True)


@click.command("book")
@click.option("--serve", is_flag=True, help="Serve the book with live reload (mkdocs serve) instead of building it.")
@click.option("--strict", is_flag=True, help="Fail on warnings, e.g. a broken link (mkdocs build --strict).")
@click.option("-d", "--site-dir", metavar="DIR", help="Where to build the site (default: site/ in the lab root).")
@click.option("-a", "--dev-addr", metavar="IP:PORT", help="With --serve: the address to serve on (default 127.0.0.1:8000).")
@pass_lab
def book_cmd(lab, serve, strict, site_dir, dev_addr):
    """Build the lab book (mkdocs build in the lab root), or serve it with --serve (mkdocs serve).

    The book has a page per experiment (report, runs table, curves, papers), a page per paper note, tag pages
    and a home page; plain `mkdocs build`, `mkdocs serve` and `mkdocs gh-deploy` in the lab root do the same.

    \b
    Examples:
      lab book --strict
      lab book --serve
    """
    from lab.book.table import run_mkdocs

    run_mkdocs(lab.workspace.root, serve=serve, strict=strict, site_dir=site_dir, dev_addr=dev_addr)
