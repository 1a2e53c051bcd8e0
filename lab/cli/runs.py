"""`lab run`, `lab status`, `lab logs`, `lab stop`, `lab cancel`, `lab notify`."""

from __future__ import annotations

import sys
import time
from datetime import datetime

import click

from lab.cli.app import echo_json, pass_lab
from lab.runs.state import State


@click.command("run")
@click.argument("targets", nargs=-1)
@click.option("--wait", "wait_", is_flag=True, help="Stay attached with live progress until the queued jobs end; exit 1 if any failed.")
@click.option("--rerun", is_flag=True, help="Run settings again even if their last run succeeded with the same settings and command.")
@click.option("--stop-on-failure", is_flag=True, help="Stop the queue at the first failure of these jobs (the rest stay queued).")
@click.option("--json", "as_json", is_flag=True, help="Print what was queued as JSON.")
@click.option("--on", "on", type=click.Choice(["local", "slurm"]), default=None, help="Where to run: the local runner or Slurm jobs (default: 'executor' of the report's front matter or lab.yaml, else local).")
@click.option("--parallel", is_flag=True, help="With Slurm: submit all settings at once (a job array) instead of one after another.")
@pass_lab
def run_cmd(lab, targets, wait_, rerun, stop_on_failure, as_json, on, parallel):
    """Queue the settings of TARGETS (EXP for all its settings, or EXP/SETTING) and run them in the background.

    Every setting is checked first; if one is bad nothing is queued. One runner per lab takes the jobs one at
    a time, detached from the terminal, or several at once on GPU lanes (gpus, jobs_per_gpu, max_parallel in
    lab.yaml; LAB_GPUS=0,1,2,3 overrides; see README: Several jobs at once). A setting whose last run succeeded with the same settings and command
    is skipped (--rerun runs it again). With no TARGETS, resumes the queue after `lab stop`.

    With --on slurm (or `executor: slurm` in lab.yaml or the report), each setting is a Slurm job instead,
    each depending on the previous one, or all at once with --parallel (see README: Running on a cluster).

    \b
    Examples:
      lab run exp3                  # all settings of exp3, in order
      lab run exp3/lr-high exp4 --wait
      lab run exp3 --rerun --stop-on-failure
      lab run exp3 --on slurm --parallel
    """
    from lab.runs.control import submit

    ws = lab.workspace
    if parallel and on == "local":
        from lab.errors import BadInput

        raise BadInput("--parallel runs Slurm jobs at once (use --on slurm); the local runner's lanes come from lab.yaml "
                       "(gpus, jobs_per_gpu, max_parallel)")
    results = submit(ws, list(targets), rerun=rerun, stop_on_failure=stop_on_failure, executor=on, parallel=parallel)
    if as_json:
        echo_json(results)
    skipped = [r for r in results if r["action"] == "skipped"]
    if len(skipped) == 1:
        click.echo(f"skipped {skipped[0]['id']}: its last run succeeded with the same settings, command and code (--rerun runs it again)", err=True)
    elif skipped:
        click.echo(f"skipped {len(skipped)} settings that already succeeded; --rerun runs them", err=True)
    for r in results:
        if r["action"] == "skipped":
            continue
        if r["action"] == State.QUEUED and r.get("executor") == "slurm":
            click.echo(f"submitted {r['id']} (Slurm job {r['slurm_job_id']}); log: {r['log']}", err=True)
        elif r.get("executor") == "slurm" and r["action"].startswith("already"):
            click.echo(f"{r['id']} is {r['action']} (Slurm job {r['slurm_job_id']})", err=True)
        elif r["action"] == State.QUEUED:
            click.echo(f"queued {r['id']} (job {r['job_id']}); log: {r['log']}", err=True)
        elif r.get("slurm_job_id"):
            click.echo(f"{r['id']} is {r['action']} (Slurm job {r['slurm_job_id']})", err=True)
        else:
            click.echo(f"{r['id']} is {r['action']}" + (f" (job {r['job_id']})" if r.get("job_id") is not None else "")
                       + (f": {r['reason']}" if r.get("reason") else ""), err=True)
    if not targets:
        click.echo("queue resumed", err=True)
    queued = [r for r in results if r["action"] != "skipped"]
    if not wait_:
        if queued:
            click.echo("follow with: lab status, lab logs EXP/SETTING -f", err=True)
        return
    if not queued:
        return
    try:
        ok = _wait_with_progress(ws, queued)
    except KeyboardInterrupt:
        click.echo("stopped waiting; the jobs go on in the background (lab status, lab stop)", err=True)
        sys.exit(130)
    sys.exit(0 if ok else 1)


def _wait_with_progress(ws, entries: list[dict]) -> bool:
    """--wait: one live line while the runs go on (any executor), one line per run as it ends; True if all succeeded."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from lab.runs.control import wait
    from lab.runs.table import duration_text, metrics_text

    console = Console(stderr=True)
    reported: set[str] = set()

    def line(views) -> Text:
        done = sum(1 for v in views if v["state"] not in (State.QUEUED, State.RUNNING))
        text = Text(f"{done}/{len(views)} done")
        for v in views:
            if v["state"] != State.RUNNING:
                continue
            text.append(f"  running {v['id']}", style="bold")
            if v.get("started_at"):
                elapsed = (datetime.now().astimezone() - datetime.fromisoformat(v["started_at"])).total_seconds()
                text.append(f"  {duration_text(elapsed)}")
            if v.get("progress"):
                text.append("  " + metrics_text(v["progress"], with_step=True), style="cyan")
        waiting = sum(1 for v in views if v["state"] == State.QUEUED)
        if waiting and not any(v["state"] == State.RUNNING for v in views):
            text.append(f"  {waiting} waiting")
        return text

    import signal

    def ended_from_outside(signum, frame):
        raise KeyboardInterrupt  # leaves the live display, which shows the terminal's cursor again

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, ended_from_outside)
    try:
        with Live(Text("starting"), console=console, refresh_per_second=8, transient=True) as display:
            def progress(views):
                for v in views:
                    if v["state"] not in (State.QUEUED, State.RUNNING) and v["id"] not in reported:
                        reported.add(v["id"])
                        style = "green" if v["state"] == State.SUCCEEDED else "red"
                        where = f" (Slurm job {v['slurm_job_id']})" if v.get("slurm_job_id") else ""
                        how = f" (exit {v['exit_code']})" if v.get("exit_code") not in (None, 0) else f" ({v['signal']})" if v.get("signal") else ""
                        why = f": {v['reason']}" if v.get("reason") and v["state"] != State.SUCCEEDED else ""
                        if why.startswith((": exit code", ": killed by")):
                            how = ""  # the reason says it already
                        display.console.print(Text(f"{v['state']} {v['id']}{where}{how}{why}", style=style), soft_wrap=True)
                display.update(line(views))

            views = wait(ws, entries, on_progress=progress)
    finally:
        console.show_cursor(True)  # however waiting ends (Ctrl-C, SIGTERM, SIGHUP, an error), even mid-start
    left = [v for v in views if v["state"] in (State.QUEUED, State.RUNNING)]
    if left:
        click.echo(f"the queue was stopped; {len(left)} job(s) still queued (resume with: lab run)", err=True)
    return not left and all(v["state"] == State.SUCCEEDED for v in views)


@click.command("status")
@click.argument("targets", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (experiment, setting, state, exit_code, started_at, ended_at, duration_s, metrics, ...).")
@pass_lab
def status_cmd(lab, targets, as_json):
    """Show the queue and the runs: state, start, duration, exit code and key final metrics of each setting
    (live step and metrics of the running job). TARGETS (EXP or EXP/SETTING) narrow it down.

    \b
    Examples:
      lab status
      lab status exp3 --json
    """
    # The same code answers a plain `lab status` without click (lab.cli.fast), for speed.
    from lab.cli.fast import run_status

    run_status(lab.workspace, list(targets), as_json)


@click.command("logs")
@click.argument("target")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the run writes until it ends (Ctrl-C leaves).")
@click.option("--tail", "tail", type=int, metavar="N", help="Only the last N lines.")
@pass_lab
def logs_cmd(lab, target, follow, tail):
    """Print the log of EXP/SETTING (every attempt, each under a header line), or of one attempt, EXP/SETTING@N;
    -f follows a running job.

    \b
    Examples:
      lab logs exp3/lr-high
      lab logs exp3/lr-high@2 --tail 20
      lab logs exp3/lr-high -f
    """
    from lab.runs.control import follow_state
    from lab.runs.logs import locate, read_part

    ws = lab.workspace
    setting, path, attempt = locate(ws, target, follow_active=(lambda s: follow_state(ws, s)) if follow else None)
    out = sys.stdout.buffer
    text, position = read_part(path, attempt, tail)
    out.write(text)
    out.flush()
    if not follow or attempt is not None:
        return

    def pump() -> None:
        nonlocal position
        try:
            with open(path, "rb") as f:
                f.seek(position)
                while chunk := f.read(65536):
                    out.write(chunk)
                    position += len(chunk)
        except FileNotFoundError:
            return
        out.flush()

    try:
        while follow_state(ws, setting):
            time.sleep(0.25)
            pump()
        pump()
    except KeyboardInterrupt:
        pass


@click.command("stop")
@click.option("--now", is_flag=True, help="Also end the running job (SIGTERM to its process group, SIGKILL after the grace period) and record it cancelled.")
@click.option("--grace", default=10.0, show_default=True, metavar="SECONDS", help="With --now: how long the job gets to exit after SIGTERM.")
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@pass_lab
def stop_cmd(lab, now, grace, as_json):
    """Stop the queue: the running job finishes, no other starts (queued jobs wait for the next lab run).

    Slurm jobs that have not started are cancelled (scancel); with --now the running ones too.

    \b
    Examples:
      lab stop          # let the running job finish
      lab stop --now    # end it too
    """
    from lab.runs.control import stop

    result = stop(lab.workspace, now=now, grace=grace)
    if as_json:
        echo_json(result)
    if result.get("ended"):
        click.echo("ended on its own before it could be stopped: "
                   + ", ".join(f"{sid} ({state})" for sid, state in result["ended"].items()), err=True)
    if result["cancelled"]:
        click.echo(f"cancelled {', '.join(result['cancelled'])}", err=True)
    elif result["running"] and not result.get("ended"):
        click.echo(f"{', '.join(result['running'])} will finish; no other job starts", err=True)
    elif not result["runner"]:
        click.echo("no job is running", err=True)
    if result["queued"]:
        click.echo(f"{result['queued']} job(s) stay queued; resume with: lab run, or remove them with: lab cancel EXP", err=True)


@click.command("cancel")
@click.argument("targets", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the cancelled runs as JSON.")
@pass_lab
def cancel_cmd(lab, targets, as_json):
    """Remove the queued jobs of TARGETS (EXP or EXP/SETTING) from the queue; their records say cancelled.

    A running local job is not touched: `lab stop --now` ends it. Slurm jobs of TARGETS are cancelled
    through scancel, queued or running.

    \b
    Example:
      lab cancel exp3
    """
    from lab.runs.control import cancel

    result = cancel(lab.workspace, list(targets))
    done = result["cancelled"]
    if as_json:
        echo_json(result)
    if done:
        click.echo(f"cancelled {len(done)} queued job(s): {', '.join(done)}", err=True)
    else:
        click.echo(f"nothing queued for {' '.join(targets)}", err=True)
    for run_id in result["running"]:
        click.echo(f"{run_id} is running; end it with: lab stop --now", err=True)


@click.command("notify")
@click.option("--test", "send_test", is_flag=True, help="Send a test message to every target now and say how each went.")
@click.option("--summary", "summary_of", metavar="EXP", help="Send EXP's summary now (best run, its key metrics, the runs table as text).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (targets, events, timeout; with --test: results).")
@pass_lab
def notify_cmd(lab, send_test, summary_of, as_json):
    """Show where lab sends word (notify: in lab.yaml): a job failed, a run was interrupted, the queue drained.
    --test sends a test message to every target and exits 1 if one failed; --summary EXP sends an experiment's
    results to the team the same way.

    \b
    Examples:
      lab notify
      lab notify --test
      lab notify --summary exp1
    """
    from lab.cli.app import echo_json
    from lab.errors import BadInput, LabError
    from lab.runs import notify

    ws = lab.workspace
    config = notify.config_for(ws)
    if config is None:
        raise BadInput(f"{ws.root / 'lab.yaml'} has no notify: settings (see the README: A word when the queue needs you)")
    targets = [notify.redact(u) for u in config.urls] + ([f"on_event {config.on_event[0]}"] if config.on_event else [])
    info = {"targets": targets, "events": sorted(config.events), "timeout": config.timeout}
    results = None
    if summary_of is not None:
        import dataclasses
        import socket
        from datetime import datetime, timezone

        from lab.book.single import summary

        title, message = summary(ws, summary_of)
        event = {"event": "summary", "lab": str(ws.root), "host": socket.gethostname(),
                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "experiment": summary_of,
                 "title": f"lab {ws.root.name}: {title}", "message": message}
        click.echo(f"sending the summary of {summary_of} to {len(targets)} target(s)...", err=True)
        # Asked for by name: sent whatever `events:` says.
        wanted = dataclasses.replace(config, events=frozenset(config.events) | {"summary"})
        results = notify.deliver(wanted, event, lambda message: None, cwd=ws.root)
        info["results"] = [{"target": t, "ok": ok, "error": why or None} for t, ok, why in results]
    elif send_test:
        click.echo(f"sending a test message to {len(targets)} target(s)...", err=True)
        results = notify.deliver(config, notify.probe_event(ws.root), lambda message: None, cwd=ws.root)
        info["results"] = [{"target": t, "ok": ok, "error": why or None} for t, ok, why in results]
    if as_json:
        echo_json(info)
    else:
        if results is None:
            for target in targets:
                click.echo(target)
            click.echo(f"events: {', '.join(sorted(config.events))}; timeout {config.timeout:g} s", err=True)
        else:
            for target, ok, why in results:
                click.echo(f"{target}: {'sent' if ok else 'failed: ' + why}")
    if results is not None and not all(ok for _, ok, _ in results):
        raise LabError(f"{sum(not ok for _, ok, _ in results)} of {len(results)} target(s) failed")
