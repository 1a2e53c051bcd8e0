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


@click.command("compare")
@click.argument("experiment")
@_with_mode
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every run with its differing settings and all final metrics.")
@pass_lab
def compare_cmd(lab, experiment, metric, mode, as_json):
    """Compare the runs of EXPERIMENT: the settings that differ, final metrics, the best run marked with *.

    \b
    Examples:
      lab compare exp1
      lab compare exp1 --metric eval_f1 --max
      lab compare exp1 --json
    """
    from lab.book.table import runs_table

    table = runs_table(lab.workspace.experiment(experiment), metric=metric, mode=mode)
    if as_json:
        echo_json(table.to_json())
        return
    if not table.runs:
        click.echo(f"{experiment} has no settings or runs yet", err=True)
        return
    header = ["", *table.header()]
    rows = [["*" if run.setting == table.best else "", *cells] for run, cells in zip(table.runs, table.rows())]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {i for i in range(len(header)) if i >= 4 + len(table.setting_keys) or header[i] == "duration"}

    def line(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    click.echo(line(header))
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo(line(row))
    for extra in table.notes():  # stale runs and reproductions
        click.echo(extra)
    note = table.best_note()
    if note:
        click.echo(f"* {note}" if table.best else note, err=True)


@click.command("report")
@click.argument("experiment")
@_with_mode
@pass_lab
def report_cmd(lab, experiment, metric, mode):
    """Write the runs table of EXPERIMENT into its report.md, between <!-- lab:results --> and <!-- /lab:results -->.

    Only what lies between the markers changes (they are added under a "## Results" heading at the end when
    the report has none), so running it again after new runs just refreshes the table.

    \b
    Example:
      lab report exp1
    """
    from lab.book.table import write_results

    exp = lab.workspace.experiment(experiment)
    table = write_results(exp, metric=metric, mode=mode)
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
