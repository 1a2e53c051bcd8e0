"""`lab init`, `lab new`, `lab list`, `lab show`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lab.cli.app import echo_json, pass_lab


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init_cmd(directory):
    """Make a lab in DIRECTORY (default: here): experiments/, papers/, mkdocs.yml and .gitignore entries.

    Running it again changes nothing and never overwrites a file.

    \b
    Example:
      lab init mylab
    """
    from lab.core.workspace import init

    created = init(directory)
    root = Path(directory).resolve()
    if created:
        for path in created:
            click.echo(f"created {path.relative_to(root) if path != root else path}", err=True)
        click.echo(f"lab ready in {root}; next: lab --root {root} new exp1", err=True)
    else:
        click.echo(f"{root} is already a lab; nothing changed", err=True)


@click.command("new")
@click.argument("name")
@click.option("--from", "source", metavar="OTHER", help="Copy OTHER's settings and command (a new variant of an old experiment).")
@click.option("--title", metavar="TEXT", help="The report's title; the five closest papers and experiments are listed (stderr).")
@pass_lab
def new_cmd(lab, name, source, title):
    """Make experiments/NAME/ with settings/, logs/, models/ and a report.md to fill in.

    With --title, the papers, feed items and past experiments closest to it are listed on stderr (search
    before starting new work; `lab related NAME` lists more).

    \b
    Examples:
      lab new exp2 --title "Does warmup help small-batch fine-tuning?"
      lab new exp3 --from exp2
    """
    exp = lab.workspace.new_experiment(name, source=source, title=title)
    click.echo(str(exp.dir))
    if title:
        from lab.cli.search import format_related
        from lab.search.related import related

        found = related(lab.workspace.root, exp.name, limit=5, say=lambda line: click.echo(line, err=True))
        if found:
            click.echo("related work (lab related " + exp.name + " for more):", err=True)
            click.echo(format_related(found), nl=False, err=True)
    if source:  # its settings came along: they can run as they are
        click.echo(f"next: change the settings in {exp.settings_dir}/, then: lab run {exp.name}", err=True)
    else:
        click.echo(f"next: add settings to {exp.settings_dir}/ and describe the experiment in {exp.report_path}", err=True)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_lab
def list_cmd(lab, as_json):
    """List the experiments with their titles, tags and settings.

    An experiment whose report.md or settings cannot be read is still listed, its error is named on stderr,
    and the exit status is 2.

    \b
    Example:
      lab list --json
    """
    from lab.errors import BadInput

    from lab.core.settings import listing

    rows = listing(lab.workspace)
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no experiments yet; make one with: lab new exp1", err=True)
    for row in rows if not as_json else []:
        tags = f"  [{', '.join(row['tags'])}]" if row["tags"] else ""
        state = "cannot be read" if row["error"] else f"{len(row['settings'])} settings"
        click.echo(f"{row['name']}\t{row['title']}\t{state}{tags}")
    bad = [row for row in rows if row["error"]]
    for row in bad[:-1]:
        click.echo(f"lab: error: {row['error']}", err=True)
    if bad:
        raise BadInput(bad[-1]["error"])


@click.command("show")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="For an experiment: print JSON.")
@pass_lab
def show_cmd(lab, target, as_json):
    """Print the resolved JSON of setting EXP/SETTING, or the settings and command of experiment EXP.

    \b
    Examples:
      lab show exp1/lr-high
      lab show exp1
    """
    from lab.core.command import template_for
    from lab.core.settings import find_setting, list_settings, parse_target

    exp_name, setting_name = parse_target(target)
    exp = lab.workspace.experiment(exp_name)
    if setting_name:
        click.echo(json.dumps(find_setting(exp, setting_name).resolve(), indent=2, ensure_ascii=False))
        return
    settings = list_settings(exp)
    info = {
        "name": exp.name,
        "title": exp.title(),
        "tags": exp.tags(),
        "command": exp.command_template(),
        "settings": {s.name: str(s.path.relative_to(exp.dir)) for s in settings},
    }
    if as_json:
        echo_json(info)
        return
    click.echo(f"{exp.name}: {info['title']}")
    click.echo(f"command: {template_for(settings[0]) if settings else (info['command'] or 'lab.train (default)')}")
    for name, path in info["settings"].items():
        click.echo(f"  {name}\t{path}")
