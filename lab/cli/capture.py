"""`lab recapture` and `lab capture`: metrics derived again from ended runs, and patterns tried on a log file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lab.cli.app import pass_lab


@click.command("recapture")
@click.argument("targets", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print each run's metrics and their sources as JSON.")
@pass_lab
def recapture_cmd(lab, targets, as_json):
    """Derive the metrics of ended runs again from their logs and output directories, running nothing.

    For runs made before lab captured metrics, or after a capture pattern changed. A program that writes
    LAB_METRICS keeps exactly those metrics.

    \b
    Examples:
      lab recapture exp3
      lab recapture exp3/lr-0.1 --json
    """
    from lab.runs.recapture import recapture

    done = recapture(lab.workspace, list(targets))
    if as_json:
        click.echo(json.dumps(done, ensure_ascii=False, indent=1))
        return
    if not done:
        click.echo("no ended runs to recapture", err=True)
    for run in done:
        from lab.runs.table import metrics_text

        origin = ", ".join(sorted(set(run["sources"].values()))) or "no metrics"
        click.echo(f"{run['run']}: {metrics_text(run['metrics']) or '-'}  ({origin}){'' if run['changed'] else ' unchanged'}")
        for note in run["notes"]:
            click.echo(f"  {note}", err=True)


@click.command("capture")
@click.argument("log", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--exp", "experiment", metavar="EXP", help="Use this experiment's capture: patterns (and lab.yaml's).")
@click.option("--pattern", "patterns", multiple=True, metavar="REGEX", help="A pattern to try (named groups: metrics, step; or name and value). Repeatable.")
@click.option("--only-patterns", is_flag=True, help="Leave out lab's built-in parsers (Trainer dicts, key=value lines): show what the patterns alone take.")
@click.option("--json", "as_json", is_flag=True, help="Print every captured point as JSON.")
@pass_lab
def capture_cmd(lab, log, experiment, patterns, only_patterns, as_json):
    """Show what lab would capture from a log file (as guild run --test-output-scalars does).

    \b
    Examples:
      lab capture experiments/exp3/logs/lr-0.1.log
      lab capture train.log --pattern 'val acc (?P<val_acc>[\\d.]+) at step (?P<step>\\d+)'
    """
    from lab.runs.recapture import test_log

    exp = lab.workspace.experiment(experiment) if experiment else None
    result = test_log(log, list(patterns), exp, builtin=not only_patterns)
    if as_json:
        click.echo(json.dumps({k: result.get(k) for k in ("rows", "final", "sources", "notes")}, ensure_ascii=False,
                              default=str))
        return
    counts: dict = {}
    for row in result["rows"]:
        for key in row:
            if key != "step":
                counts[key] = counts.get(key, 0) + 1
    if not result["final"]:
        click.echo("nothing captured", err=True)
    width = max((len(k) for k in result["final"]), default=0)
    for key, value in result["final"].items():
        click.echo(f"{key.ljust(width)}  {counts.get(key, 0):>7} points  last {value}")
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
