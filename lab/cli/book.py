"""`lab compare`, `lab report`, `lab book`."""

from __future__ import annotations

import click

from lab.cli.app import echo_json, pass_lab
from lab.runs.state import State

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


@click.command("compare")
@click.argument("experiments", nargs=-1, required=True, metavar="EXPERIMENT...")
@_with_mode
@_with_columns
@click.option("--group", is_flag=True, help="Fold runs that differ only in seed (or the keys of group_by: in the report or lab.yaml) into one row: mean ± std and n.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every run with its differing settings and all final metrics.")
@pass_lab
def compare_cmd(lab, experiments, metric, mode, metrics, all_metrics, group, as_json):
    """Compare the runs of EXPERIMENT (or of several, each run named EXP/SETTING): the settings that differ,
    final metrics, the best run marked with *. Rows follow the differing settings' values, numbers as numbers.

    Evaluation and test metrics come first; bookkeeping (runtimes, max_steps, sample counts, the last logged
    loss beside train_loss) is left out unless named or --all is given.

    \b
    Examples:
      lab compare exp1
      lab compare exp1 --group
      lab compare exp1 exp2
      lab compare exp1 --metrics eval_accuracy,eval_loss
      lab compare exp1 --metric eval_f1 --max --all
      lab compare exp1 --json
    """
    from lab.book.sweep import group_keys, group_runs, grouped_rows
    from lab.book.table import across, runs_table
    from lab.book.table_text import text_grid, text_table

    exps = [lab.workspace.experiment(name) for name in dict.fromkeys(experiments)]
    options = dict(metric=metric, mode=mode, metrics=_metric_names(metrics), all_metrics=all_metrics)
    table = runs_table(exps[0], **options) if len(exps) == 1 else across(exps, **options)
    name = table.experiment
    keys = group_keys(exps[0]) if group else []
    groups = group_runs(table, keys) if group else []
    if as_json:
        data = table.to_json()
        if group:
            data["group_by"] = keys
            data["groups"] = [{"settings": g.settings, "n": g.n, "runs": [r.setting for r in g.runs],
                               "metrics": {m: {"mean": s[0], "std": s[1], "n": s[2]} for m, s in g.stats.items()}}
                              for g in groups]
        echo_json(data)
        return
    if not table.runs:
        click.echo(f"{name} has no settings or runs yet", err=True)
        return
    title = exps[0].meta().get("title") if len(exps) == 1 else None
    if isinstance(title, str) and title.strip() and title.strip() != name:
        click.echo(f"{name}: {' '.join(title.split())}", err=True)
    if group and not groups:
        click.echo(f"{name} has no finished runs to group yet", err=True)
        return
    if group:
        header, rows = grouped_rows(table, groups)
        for text in text_grid(header, rows, len(header) - len(table.metric_keys) - 1):
            click.echo(text)
        click.echo(f"mean ± std over the runs that differ only in {', '.join(keys)}; n: finished runs in each row", err=True)
        return
    for text in text_table(table):
        click.echo(text)
    for extra in table.notes():  # stale runs and reproductions
        click.echo(extra)
    note = table.best_note()
    if note:
        click.echo(f"* {note}" if table.best else note, err=True)
    if len(table.runs) > 1 and all(run.state == State.SUCCEEDED for run in table.runs):
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
    from lab.book.report import write_results

    exp = lab.workspace.experiment(experiment)
    table = write_results(exp, metric=metric, mode=mode, metrics=_metric_names(metrics), all_metrics=all_metrics)
    click.echo(str(exp.report_path))
    click.echo(f"wrote {len(table.runs)} runs into {exp.report_path}" + (f" ({table.best_note()})" if table.metric else ""), err=True)


@click.command("book")
@click.argument("experiment", required=False)
@click.option("--single", "single", metavar="FILE", help="With EXPERIMENT: write it as one file to share: FILE.html (self-contained, no script, nothing fetched) or FILE.md.")
@click.option("--out", "out", metavar="DIR", help="Only render the book's Markdown, curves and files into DIR, for any static site generator.")
@click.option("--serve", is_flag=True, help="Serve the book with live reload instead of building it.")
@click.option("--strict", is_flag=True, help="Fail on warnings, e.g. a broken link (mkdocs build --strict).")
@click.option("-d", "--site-dir", metavar="DIR", help="Where to build the site (default: site/ in the lab root).")
@click.option("-a", "--dev-addr", metavar="IP:PORT", help="With --serve: the address to serve on (default 127.0.0.1:8000).")
@pass_lab
def book_cmd(lab, experiment, single, out, serve, strict, site_dir, dev_addr):
    """Build the lab book with its generator (book: generator: mkdocs | properdocs | zensical in lab.yaml; default
    mkdocs), or serve it with --serve; --out DIR only renders it; EXPERIMENT --single FILE writes one page to share.

    The book has a page per experiment (report, runs table, curves, papers), a page per paper note, tag pages
    and a home page; plain `mkdocs build`, `mkdocs serve` and `mkdocs gh-deploy` in the lab root do the same.

    \b
    Examples:
      lab book --strict
      lab book --serve
      lab book --out /tmp/book-md
      lab book exp1 --single exp1.html
      lab book exp1 --single exp1.md
    """
    from pathlib import Path

    from lab.errors import BadInput

    def warn(message):
        click.echo(message, err=True)

    ws = lab.workspace
    if experiment is not None or single is not None:
        if experiment is None or single is None:
            raise BadInput("lab book EXPERIMENT needs --single FILE.html or FILE.md (and --single needs EXPERIMENT)")
        from lab.book.single import single_html, single_markdown
        from lab.core.fsutil import atomic_write_text

        path = Path(single)
        if path.suffix.lower() not in (".html", ".htm", ".md"):
            raise BadInput(f"--single {single}: name a .html or a .md file")
        text = single_markdown(ws, experiment, warn=warn) if path.suffix.lower() == ".md" else single_html(ws, experiment, warn=warn)
        atomic_write_text(path, text)
        click.echo(str(path))
        return
    if out is not None:
        from lab.book import generators, render

        config = generators.site_config(ws.root)
        counts = render.write(ws, Path(out), site_name=str(config.get("site_name") or "Lab book"),
                              directory_urls=config.get("use_directory_urls", True) is not False,
                              own_docs=ws.root / str(config.get("docs_dir") or "docs"), warn=warn)
        click.echo(str(Path(out)))
        click.echo(f"rendered {counts['pages']} pages and {counts['files']} files ({counts['experiments']} experiment(s), "
                   f"{counts['papers']} paper(s)) into {out}", err=True)
        return
    from lab.book.generators import run

    run(ws, serve=serve, strict=strict, site_dir=site_dir, dev_addr=dev_addr, warn=warn)
