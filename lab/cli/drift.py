"""`lab reproduce`, `lab diff`: what a recorded run gives again, and why two runs differ."""

from __future__ import annotations

import json
import sys

import click

from lab.cli.app import echo_json, pass_lab
from lab.runs.state import State


def _value(v) -> str:
    return "(none)" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _number(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return _value(v)


def _delta(v) -> str:
    if v is None:
        return ""
    return "±0" if v == 0 else f"{v:+.4g}"


@click.command("reproduce")
@click.argument("target")
@click.option("--attempt", type=int, metavar="N", help="The attempt to reproduce (default: the latest that started; EXP/SETTING@N says the same).")
@click.option("--json", "as_json", is_flag=True, help="Print the reproduction's outcome and the metric differences as JSON.")
@pass_lab
def reproduce_cmd(lab, target, attempt, as_json):
    """Run a recorded attempt of EXP/SETTING again, as recorded: its resolved settings and command, on the code
    of its git commit with its uncommitted diff applied, in a temporary git worktree (your working tree is not
    touched). Inputs and packages that differ from the record are named first. It runs in the foreground
    (progress on stderr) as a side attempt: the setting's state, result and skip decision never change; the
    outcome is kept in runs/reproduce/SETTING.json and its metrics are compared with the recorded ones. Exit 1 without git, when the commit is gone, or when the run fails.

    \b
    Examples:
      lab reproduce exp1/lr-high
      lab reproduce exp1/lr-high --attempt 2
      lab compare exp1            # both attempts, with the metric differences
    """
    from lab.book.table import is_metric
    from lab.errors import LabError
    from lab.runs.reproduce import compare_metrics, plan, reproduce

    last = [0.0, ""]

    def event(kind, payload):
        import time

        if kind == "warning":
            click.echo(f"lab: warning: {payload}", err=True)
        elif kind == "start":
            click.echo(payload, err=True)
        elif kind == "progress":
            from lab.runs.table import metrics_text

            text = metrics_text(payload, with_step=True)
            if text != last[1] and time.monotonic() - last[0] > 2:  # new metrics, at most one line per 2 s
                last[:] = [time.monotonic(), text]
                click.echo(f"  {text}", err=True)

    _, original, _ = plan(lab.workspace, target, attempt)
    try:
        new = reproduce(lab.workspace, target, attempt, on_event=event)
    except KeyboardInterrupt:
        click.echo("interrupted; the setting's record and state are unchanged (the outcome is kept in runs/reproduce/)", err=True)
        sys.exit(130)
    deltas = compare_metrics(original, new)
    run_id = f"{original['experiment']}/{original['setting']}@{new['reproduces']}"
    if as_json:
        echo_json({"outcome": new, "metrics": deltas})
    else:
        shown = {k: d for k, d in deltas.items() if is_metric(k)}
        width = max((len(k) for k in shown), default=0)
        for key, d in shown.items():
            click.echo(f"  {key.ljust(width)}  {_number(d['recorded'])} -> {_number(d['reproduced'])}  {_delta(d['delta'])}")
        click.echo(f"reproduction of {run_id} {new['state']}" + (": metrics reproduced exactly" if new.get("exact") else "")
                   + " (the setting's own record is unchanged)", err=True)
    if new["state"] != State.SUCCEEDED:
        log = f"experiments/{original['experiment']}/{new['log_path']}"
        raise LabError(f"the reproduction of {run_id} {new['state']} ({new.get('reason') or 'exit ' + str(new.get('exit_code'))}); its log: {log}")


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON (settings, command, code, inputs, packages, metrics).")
@pass_lab
def diff_cmd(lab, a, b, as_json):
    """Show why run A differs from run B (each EXP/SETTING, or EXP/SETTING@ATTEMPT): the settings that differ,
    the command, the code (commits, with a short git diff --stat), the inputs, the packages and the final metrics
    (with B - A).

    \b
    Examples:
      lab diff exp1/lr-low exp1/lr-high
      lab diff exp1/lr-high@1 exp1/lr-high@2 --json
    """
    from lab.book.table import is_metric
    from lab.runs.diff import diff_runs

    d = diff_runs(lab.workspace, a, b)
    if as_json:
        echo_json(d)
        return
    out = [f"A: {d['a']}", f"B: {d['b']}"]
    if d["settings"]:
        out.append(f"settings: {len(d['settings'])} differ")
        width = max(len(k) for k in d["settings"])
        out += [f"  {k.ljust(width)}  {_value(va)} -> {_value(vb)}" for k, (va, vb) in d["settings"].items()]
    else:
        out.append("settings: the same")
    out.append("command: the same" if d["command"] is None else f"command: {d['command'][0]} -> {d['command'][1]}")
    code = d["code"]
    dirty = lambda i: " (with uncommitted changes)" if code["dirty"][i] else ""  # noqa: E731
    if not code["a"] and not code["b"]:
        out.append("code: no commit recorded (not a git repository)")
    elif code["same"]:
        out.append(f"code: the same (commit {code['a'][:12]}{dirty(0)})")
    else:
        out.append(f"code: commit {(code['a'] or 'none')[:12]}{dirty(0)} -> {(code['b'] or 'none')[:12]}{dirty(1)}")
        if code.get("uncommitted_changes_differ"):
            out.append("  the uncommitted changes differ")
        if code.get("stat"):
            out += [f"  {line}" for line in code["stat"].splitlines()]
        elif code["a"] and code["b"] and code["a"] != code["b"]:
            out.append("  (git diff --stat unavailable: a commit is not in this repository)")
    out += _pairs("code files", d.get("code_files"), width=12)
    out += _pairs("inputs", d["inputs"], width=12)  # content hashes: their first 12 digits tell them apart
    out += _pairs("packages", d["packages"])
    metrics = {k: m for k, m in d["metrics"].items() if is_metric(k)}
    if metrics:
        out.append("metrics (B - A):")
        width = max(len(k) for k in metrics)
        out += [f"  {k.ljust(width)}  {_number(m['a'])} -> {_number(m['b'])}  {_delta(m['delta'])}" for k, m in metrics.items()]
    else:
        out.append("metrics: none recorded")
    click.echo("\n".join(out))


def _pairs(what: str, differing: dict | None, width: int | None = None) -> list[str]:
    """Lines for a `{name: (a, b)}` of what differs between two runs (None: not recorded by both)."""
    if differing is None:
        return [f"{what}: not recorded by both runs"]
    if not differing:
        return [f"{what}: the same"]
    return [f"{what}: {len(differing)} differ"] + [
        f"  {k}  {(va or 'absent')[:width]} -> {(vb or 'absent')[:width]}" for k, (va, vb) in differing.items()]
