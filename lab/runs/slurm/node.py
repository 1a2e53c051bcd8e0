"""The Slurm job's entry point on the compute node: `python -m lab.runs.slurm.node SPEC.json` (or the old `python -m lab.slurmjob`).

It runs one attempt of one setting (the array task's, in a job array) through `lab.job.Attempt`, which writes
the log, the metrics and the run record into the experiment directory on the shared filesystem, so the record
does not depend on the submitter being alive. The record says `executor: slurm` and `slurm_job_id`.

scancel (and Slurm's time limit, preemption or requeue) sends SIGTERM to the batch step: the entry point forwards
it to the program's process group, gives it `GRACE_S` to end (under Slurm's KillWait, 30 s by default), then
SIGKILLs the group and records the attempt as `cancelled` (or `failed` for a time limit, `interrupted` for
preemption or requeue, asking Slurm which it was). It exits with the program's exit status, so Slurm's own
state (COMPLETED or FAILED) agrees with the record.
"""

from __future__ import annotations

from lab.runs.state import State
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = float(os.environ.get("LAB_SLURM_GRACE_S", "20"))
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # the job is ending: forward, then SIGKILL after GRACE_S
FORWARDED = (*STOPPING, signal.SIGUSR1, signal.SIGUSR2)  # USR1/USR2 (e.g. sbatch --signal=USR1@60) only forwarded


def job_id_from_env(env=os.environ) -> str:
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def why_stopped(job_id: str, restarts_before: int) -> tuple[str, str]:
    """(lab state, reason) of a job Slurm is ending, from Slurm itself; `cancelled` when it cannot tell."""
    try:
        show = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=10).stdout
        fields = dict(f.split("=", 1) for f in show.split() if "=" in f)
        if int(fields.get("Restarts", "0") or 0) > restarts_before or fields.get("JobState") in ("REQUEUED", "PENDING"):
            return State.INTERRUPTED, "Slurm requeued the job"
        acct = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True, timeout=10).stdout
        state = acct.strip().splitlines()[-1].split()[0] if acct.strip() else ""
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        state = ""
    from lab.runs.slurm.cluster import FINAL_STATES

    if state in FINAL_STATES and state != "COMPLETED" and state != "FAILED":
        return FINAL_STATES[state]
    return State.CANCELLED, "cancelled (scancel)"


def tell(ws, rec: dict) -> None:
    """Notifications from the node, as the local runner sends them: the job failed or was interrupted, and the
    lab's Slurm jobs have all ended. Sent from here (the job's allocation ends with this process), each target
    within `notify.timeout`; what fails goes to the job's Slurm output, and never changes the job's exit status."""
    from lab.runs import notify

    def log(message: str) -> None:
        print(f"lab: {message}", file=sys.stderr, flush=True)

    try:
        config = notify.config_for(ws)
        if config is None:
            return
        if rec.get("state") in (State.FAILED, State.INTERRUPTED):
            notify.deliver(config, notify.job_event(rec["state"], rec, ws.root), log, cwd=ws.root)
        from lab.runs.slurm.executor import drained_event

        event = drained_event(ws)
        if event is not None:
            notify.deliver(config, event, log, cwd=ws.root)
    except Exception as e:  # a word that cannot be sent is no reason to fail the job
        log(f"notify: {type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lab.slurmjob SPEC.json  (written by `lab run --on slurm`)", file=sys.stderr)
        return 2
    from lab.runs import record as records
    from lab.runs.attempt import Attempt
    from lab.core.settings import Setting
    from lab.core.workspace import Experiment, Workspace

    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")) if spec.get("array") else 0
    task = spec["tasks"][index]
    ws = Workspace(spec["root"])
    exp = Experiment(ws, task["experiment"])
    setting = Setting(exp, task["setting"], exp.dir / task["settings_file"])
    job_id = job_id_from_env()
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)

    attempt = task["attempt"]
    previous = records.read_record(setting)
    if previous and previous.get("slurm_job_id") == job_id and previous.get("state") == State.CANCELLED and not previous.get("started_at"):
        print(f"lab: {setting.id} was cancelled before it started; not running it", file=sys.stderr)
        return 0
    if previous and previous.get("slurm_job_id") == job_id:
        # This very job ran before (Slurm requeued it after a node failure, preemption or `scontrol requeue`):
        # the earlier run stays in the history and this one counts as the next attempt.
        if previous.get("state") == State.RUNNING:
            previous = records.settled(setting, previous, State.INTERRUPTED, "Slurm requeued the job")
            records.write_record(setting, previous)
        prior = int(previous.get("attempt") or 0)
        attempt = max(attempt, prior if previous.get("state") == State.QUEUED else prior + 1)

    stop = {"signal": None, "at": None}
    proc_box = {"proc": None}

    def forward(signum, frame):
        if stop["signal"] is None and signum in STOPPING:
            stop.update(signal=signum, at=time.monotonic())
        proc = proc_box["proc"]
        if proc is not None:
            try:
                os.killpg(proc.pid, signum)
            except ProcessLookupError:
                pass

    for sig in FORWARDED:
        signal.signal(sig, forward)

    extra = {"slurm_job_id": job_id}
    if task.get("command"):  # submitted with its command: that one runs, as its submitted settings do
        extra["fixed_when_queued"] = records.FIXED_WHEN_QUEUED
    if os.environ.get("SLURMD_NODENAME"):
        extra["slurm_node"] = os.environ["SLURMD_NODENAME"]
    att = Attempt(setting, task["resolved"], attempt=attempt, executor="slurm", extra=extra, template=task.get("command"))
    proc = att.start()
    if proc is None:
        return 127
    proc_box["proc"] = proc
    if stop["signal"] is not None:  # the signal came while the program was starting
        os.killpg(proc.pid, stop["signal"])
    returncode = None
    while returncode is None:
        try:
            returncode = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stop["at"] is not None and time.monotonic() - stop["at"] > GRACE_S:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    try:  # nothing of the program's process group may outlive the job
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if stop["signal"] is not None:
        state, reason = why_stopped(job_id, restarts)
        if stop["signal"] != signal.SIGTERM and state == State.CANCELLED:
            reason = f"stopped by {signal.Signals(stop['signal']).name}"
        rec = att.finish(returncode, state=state, reason=reason)
        if state == State.INTERRUPTED and reason == "Slurm requeued the job":
            from lab.runs.slurm.executor import queued_record

            records.write_record(setting, queued_record(setting, task["resolved"], attempt + 1, job_id, rec))
    else:
        rec = att.finish(returncode)  # a failure's reason: the program's last error line
    tell(ws, rec)
    if returncode is not None and returncode < 0:
        return 128 - returncode
    return returncode or 0


if __name__ == "__main__":
    sys.exit(main())
