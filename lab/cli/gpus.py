"""`lab gpus`: the machine's GPUs and what runs on each (lab.runs.gpushare.machine)."""

from __future__ import annotations

import click

from lab.cli.app import echo_json, pass_lab


@click.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: source, lease_dir, error, and per GPU its memory, jobs and processes.")
@pass_lab
def gpus_cmd(lab, as_json):
    """Show the machine's GPUs, their memory, and what runs on each: this lab's jobs, other labs' jobs (their lab
    root and setting, from their GPU leases) and other processes (pid, user, memory).

    \b
    Examples:
      lab gpus
      lab gpus --json
    """
    from lab.runs.gpushare import gib, machine

    data = machine(lab.workspace)
    if as_json:
        echo_json(data)
        return
    if data["error"]:
        click.echo(f"lab: {data['error']}", err=True)
    if not data["gpus"]:
        if not data["error"]:
            click.echo(f"no GPU ({data['source']} found none)")
        return
    for g in data["gpus"]:
        memory = "memory unknown"
        if g["memory_used_mib"] is not None and g["memory_total_mib"]:
            memory = f"{gib(g['memory_used_mib'])} of {gib(g['memory_total_mib'])} in use"
        click.echo(f"GPU {g['index']}  {g['uuid']}  {memory}" + (f"  {g['busy'].split(' ', 1)[1]}" if g["busy"] else ""))
        for j in g["jobs"]:
            slot = "" if j["slot"] is None else f", slot {j['slot']}"
            who = "this lab " if j["this_lab"] else f"lab {j['lab']}: "
            click.echo(f"  {who}{j['experiment']}/{j['setting']} (job {j['job_id']}, supervisor {j['pid']}"
                       f"{', user ' + j['user'] if j['user'] and not j['this_lab'] else ''}{slot})")
        for p in g["processes"]:
            if p["lab_job"]:
                continue
            mem = "" if p["memory_mib"] is None else f", {gib(p['memory_mib'])}"
            user = p["user"] or ("uid ?" if p["uid"] is None else f"uid {p['uid']}")
            click.echo(f"  process {p['pid']} ({user}{mem}) {p['name']}")
        if not g["jobs"] and not any(not p["lab_job"] for p in g["processes"]):
            click.echo("  free")
