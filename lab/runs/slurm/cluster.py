"""The Slurm executor: an experiment's settings as Slurm jobs, with the same records as local runs.

Why plain `sbatch`/`squeue`/`sacct`/`scancel` and not submitit: the job must write its own record on the compute
node and survive the submitter (a laptop that disconnects). submitit pickles a Python callable and its
arguments into a folder and unpickles them on the node, which ties the job to the submitter's Python objects and
versions, and it has no notion of `--dependency` chains or held submissions. A batch script that runs
`python -m lab.slurmjob SPEC.json` is readable by anyone (`.lab/slurm/jobs/*.sh`), needs nothing but lab on the
node, and the command-line tools are what every cluster admin documents. It also costs no import at all in the
submitter.

How it works:
- `submit()` resolves every setting first (all or nothing), skips the ones whose last run succeeded with the same
  settings and command (unless `rerun`) and the ones already queued or running, writes a spec per batch
  (`.lab/slurm/jobs/ID.json`) and submits one job per setting with `--hold`, each depending on the previous one
  (`afterany`, or `afterok` + `--kill-on-invalid-dep` for stop-on-failure), or one job array for `parallel`.
  While the jobs are held it writes their `queued` records (with `slurm_job_id`), then releases them: the job can
  never start before its queued record is written, so a record never goes back from `running` to `queued`.
- On the node, `lab.slurmjob` runs the attempt (`lab.job.Attempt`) and writes `running` and then the final record
  (`executor: slurm`, `slurm_job_id`). scancel's SIGTERM is forwarded to the program's process group.
- `refresh()` reconciles the records of active jobs with Slurm (`squeue`, then `sacct` for jobs squeue no longer
  knows): a job that ended without writing its end (cancelled while pending, killed after the grace period,
  out of memory, node failure) gets its state from Slurm; a preempted or node-failed job becomes `interrupted`
  and is queued again (Slurm requeues it itself, or lab submits it again).
"""

from __future__ import annotations

import fcntl
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from lab.core import layout
from lab.runs import record as records
from lab.errors import BadInput, LabError
from lab.core.settings import Setting
from lab.runs.state import State

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.core.workspace import Workspace
    from lab.runs.record import Record

EXECUTORS = ("local", "slurm")

# Keys of the `slurm:` mapping in lab.yaml and in a report's front matter.
OPTION_KEYS = {
    "partition": "--partition",
    "time": "--time",
    "cpus": "--cpus-per-task",
    "gpus": "--gres",
    "mem": "--mem",
    "account": "--account",
    "qos": "--qos",
}
OTHER_KEYS = ("extra", "setup", "python", "max_parallel")
TOOLS_TIMEOUT = 60

# Slurm job states (squeue %T / sacct State, first word) -> lab states.
QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT", "CONFIGURING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
FINAL_STATES = {
    "COMPLETED": (State.SUCCEEDED, None),
    "FAILED": (State.FAILED, "the job failed"),
    "TIMEOUT": (State.FAILED, "Slurm time limit reached"),
    "OUT_OF_MEMORY": (State.FAILED, "out of memory"),
    "BOOT_FAIL": (State.FAILED, "the node failed to boot"),
    "DEADLINE": (State.FAILED, "Slurm deadline reached"),
    "CANCELLED": (State.CANCELLED, "cancelled (scancel)"),
    "REVOKED": (State.CANCELLED, "revoked by Slurm"),
    "PREEMPTED": (State.INTERRUPTED, "preempted"),
    "NODE_FAIL": (State.INTERRUPTED, "node failure"),
}


def lab_state(slurm_state: str) -> tuple[str, str | None]:
    """Map a Slurm state (`CANCELLED by 0`, `OUT_OF_MEMORY`, ...) to (lab state, reason)."""
    word = (slurm_state or "").split()[0].rstrip("+") if slurm_state else ""
    if word in QUEUED_STATES:
        return State.QUEUED, None
    if word in RUNNING_STATES:
        return State.RUNNING, None
    if word in FINAL_STATES:
        return FINAL_STATES[word]
    return "unknown", f"unknown Slurm state {slurm_state!r}"


# ---------------------------------------------------------------- configuration


def executor_for(setting: Setting, on: str | None = None) -> str:
    """Where a setting runs (`lab.runs.executor.executor_name`)."""
    from lab.runs.executor import executor_name

    return executor_name(setting, on)


def options_for(exp) -> dict:
    """The Slurm options of an experiment: `slurm:` of lab.yaml, overridden key by key by the report's `slurm:`."""
    merged: dict = {}
    for where, source in ((exp.workspace.root / "lab.yaml", exp.workspace.config), (exp.report_path, exp.meta())):
        value = source.get("slurm")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise BadInput(f"{where}: 'slurm' must be a mapping such as {{partition: gpu, time: '2:00:00'}}")
        for key, v in value.items():
            if key not in OPTION_KEYS and key not in OTHER_KEYS:
                known = ", ".join([*OPTION_KEYS, *OTHER_KEYS])
                raise BadInput(f"{where}: unknown slurm option {key!r} (known: {known})")
            if key in ("extra", "setup"):
                if isinstance(v, str):
                    v = [v]
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise BadInput(f"{where}: slurm.{key} must be a list of strings")
            elif key == "max_parallel":
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise BadInput(f"{where}: slurm.max_parallel must be a positive whole number")
            elif v is not None and not isinstance(v, (str, int, float)):
                raise BadInput(f"{where}: slurm.{key} must be a single value, not {type(v).__name__}")
            merged[key] = v
    return merged


def options_for_setting(setting) -> dict:
    """The Slurm options of one setting: its experiment's, with `gpus_per_run` (lab.yaml or the report, per
    setting by pattern; see lab.runs.gpus) as the GPU count of `--gres` (a type in `slurm.gpus`, such as
    `a100:1`, is kept: `a100:2`). With no `gpus_per_run` the experiment's `slurm.gpus` stands."""
    from lab.runs import gpus

    options = dict(options_for(setting.experiment))
    count = gpus.gpus_per_run(setting.experiment, setting.name)
    if count is None:
        return options
    if count == 0:
        options.pop("gpus", None)
        return options
    kind = str(options.get("gpus") or "")
    options["gpus"] = f"{kind.rsplit(':', 1)[0]}:{count}" if ":" in kind else count
    return options


def sbatch_lines(options: dict) -> list[str]:
    """The `#SBATCH` lines of a job's options (user's extra lines last, so they win)."""
    lines = []
    for key, flag in OPTION_KEYS.items():
        value = options.get(key)
        if value is None or value == "":
            continue
        if key == "gpus":
            value = f"gpu:{value}"
        elif key == "time" and isinstance(value, (int, float)):
            value = int(value)  # minutes, as sbatch reads a bare number
        lines.append(f"#SBATCH {flag}={value}")
    for line in options.get("extra") or []:
        line = line.strip()
        if not line.startswith("#SBATCH"):
            line = f"#SBATCH {line}"
        lines.append(line)
    return lines


def batch_script(root: Path, spec_path: Path, options: dict) -> str:
    """The batch script of one job (or job array): options, the user's set-up lines, then lab's entry point."""
    python = options.get("python") or sys.executable
    lines = ["#!/bin/bash", "# Written by `lab run --on slurm`; runs one setting (or one per array task) with lab.slurmjob."]
    lines += sbatch_lines(options)
    lines += ["", f"cd {shlex.quote(str(root))}"]
    lines += list(options.get("setup") or [])
    lines.append(f"exec {shlex.quote(str(python))} -m lab.runs.slurm.node {shlex.quote(str(spec_path))}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Slurm's command-line tools


def available() -> str | None:
    """None when a Slurm cluster answers here, else why not (for messages and for tests that skip)."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "Slurm's tools (sbatch, squeue) are not installed"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo did not answer: {e}"
    if proc.returncode != 0:
        return f"sinfo failed: {(proc.stderr or proc.stdout).strip().splitlines()[0] if (proc.stderr or proc.stdout).strip() else proc.returncode}"
    if not proc.stdout.strip():
        return "sinfo shows no partition"
    return None


def tool(args: list[str], check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=TOOLS_TIMEOUT, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise LabError(f"{args[0]} not found: is this a Slurm login node? (or run without --on slurm)") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{args[0]} did not answer in {TOOLS_TIMEOUT} s: is the Slurm controller up?") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{args[0]} failed: {msg[-1] if msg else f'exit status {proc.returncode}'}")
    return proc


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        tool(["scancel", *job_ids], check=False)


_ARRAY_RANGE = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def _expand(job_id: str) -> list[str]:
    """`12_[0-3,5%2]` (a pending array's tasks, as squeue and sacct show them) -> 12_0 ... 12_5."""
    m = _ARRAY_RANGE.match(job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        try:
            out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
        except ValueError:
            continue
    return out


def query(job_ids: list[str]) -> dict[str, dict]:
    """Slurm's view of jobs: id -> {state, reason, exit_code, end}. Jobs Slurm does not know are left out.

    squeue answers for jobs the controller still holds (without waiting for accounting); sacct for older ones.
    """
    wanted = set(job_ids)
    if not wanted:
        return {}
    found: dict[str, dict] = {}
    if shutil.which("squeue") is None:
        return found  # not on a Slurm host (a laptop reading the shared lab): the records are all there is
    bases = sorted({j.split("_")[0] for j in wanted})
    try:
        proc = tool(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(bases), "-o", "%i|%T|%r"], check=False)
    except LabError:
        return found  # the controller does not answer: show the records as they are
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 3:
                for jid in _expand(parts[0]):
                    if jid in wanted:
                        found[jid] = {"state": parts[1], "reason": parts[2], "exit_code": None, "end": None}
    missing = wanted - set(found)
    if missing and shutil.which("sacct"):
        ids = sorted(missing | {j.split("_")[0] for j in missing if "_" in j})
        try:
            proc = tool(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", "JobID,State,Reason,ExitCode,End"], check=False)
        except LabError:
            return found
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) < 5:
                    continue
                code, _, sig = parts[3].partition(":")
                info = {"state": parts[1], "reason": parts[2], "exit_code": int(code) if code.isdigit() else None,
                        "signal": int(sig) if sig.isdigit() and sig != "0" else None, "end": parts[4] if parts[4] not in ("Unknown", "None") else None}
                for jid in _expand(parts[0]):
                    if jid in missing:
                        found[jid] = info
    return found


# ---------------------------------------------------------------- state kept in .lab/slurm


def state_dir(workspace: Workspace) -> Path:
    return workspace.state_dir / layout.SLURM


@contextmanager
def locked(workspace: Workspace):
    """One submitter or reconciler at a time per lab root (three `lab run` at once queue each setting once)."""
    d = state_dir(workspace)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def setting_of(exp, name: str, rec: Record | None) -> Setting:
    rel = (rec or {}).get("settings_file") or f"settings/{name}.json"
    return Setting(exp, name, exp.dir / rel)


def active_records(workspace: Workspace, settings: Sequence[Setting]) -> list[tuple[Setting, Record]]:
    """(setting, record) of those settings whose record says a Slurm job is queued or running (files are the truth)."""
    pairs = [(s, records.read_record(s)) for s in settings]
    return [(s, r) for s, r in pairs
            if r and r.get("executor") == "slurm" and r.get("state") in (State.QUEUED, State.RUNNING) and r.get("slurm_job_id")]
