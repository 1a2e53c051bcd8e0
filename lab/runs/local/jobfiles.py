"""The job-file protocol: what a job's supervisor and the rest of lab tell each other through `.lab/jobs/`.

- `ID.json`, the identity: who supervises this start of job ID (token, pid = its process group, start time, boot
  id, attempt), written before the program starts and while the supervisor still holds the runner lock;
- `ID.exit`, the end: `TOKEN RETURNCODE DURATION`, written in place into room made before the program started (so
  writing it needs no new disk space);
- `ID.stop`, a stop request: `lab stop --now` asks the supervisor to end the job (SIGKILL after `grace`).
Every file carries the token of the job's claim, so a file left from an earlier start of the same job is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.core import layout, process
from lab.core.fsutil import atomic_write_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab.runs.local.queue import QueueRow

EXIT_FILE_SIZE = 128


def jobs_dir(state_dir: Path) -> Path:
    return Path(state_dir) / layout.JOBS


def exit_file(state_dir: Path, job_id: int) -> Path:
    return jobs_dir(state_dir) / f"{job_id}.exit"


def identity_file(state_dir: Path, job_id: int) -> Path:
    return jobs_dir(state_dir) / f"{job_id}.json"


def stop_file(state_dir: Path, job_id: int) -> Path:
    return jobs_dir(state_dir) / f"{job_id}.stop"


def identity(state_dir: Path, job: QueueRow) -> dict | None:
    """Who supervises this start of `job` (`.lab/jobs/ID.json`, written before its program starts): pid (its
    process group), start time, boot id, attempt; None when no supervisor said so."""
    try:
        data = json.loads(identity_file(state_dir, job["id"]).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and job.get("token") and data.get("token") == job["token"] else None


def write_identity(state_dir: Path, job: QueueRow, attempt: int, pid: int) -> None:
    atomic_write_json(identity_file(state_dir, job["id"]), {"token": job["token"], "attempt": attempt, **process.identity(pid)},
                      fsync=False)


def supervisor_alive(ident: dict | None) -> bool:
    """Whether the supervisor an identity names (pid, start time, boot id) still runs."""
    if not ident:
        return False
    pid = ident.get("pid")
    if not pid or not process.pid_alive(pid):
        return False
    boot = process.boot_id()
    if ident.get("boot_id") and boot and ident["boot_id"] != boot:
        return False
    return ident.get("proc_start") is None or process.start_time(pid) == ident["proc_start"]


def request_stop(state_dir: Path, job: QueueRow, grace: float) -> None:
    """`lab stop --now`: tell the job's supervisor to end it, SIGKILL after `grace` seconds, and record it cancelled."""
    path = stop_file(state_dir, job["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_json(path, {"token": job.get("token"), "grace": grace}, fsync=False)
    except FileNotFoundError:
        pass  # the job ended meanwhile and the runner removed its files (`remove_all_but`): nothing is left to stop


def stop_request(state_dir: Path, job: QueueRow) -> dict | None:
    try:
        data = json.loads(stop_file(state_dir, job["id"]).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("grace"), (int, float)):
        return None
    return data if data.get("token") in (None, job.get("token")) else None


def make_exit_room(state_dir: Path, job: QueueRow) -> Path:
    """Make the exit file before anything runs, so that writing the exit status later needs no new disk space. No
    fsync: what it guards against is a process killed, after which the page cache still holds it; a power loss
    ends the program too."""
    ending = exit_file(state_dir, job["id"])
    ending.parent.mkdir(parents=True, exist_ok=True)
    with open(ending, "w") as f:
        f.write(" " * EXIT_FILE_SIZE)
    return ending


def write_exit(state_dir: Path, job: QueueRow, returncode: int, duration: float) -> None:
    ending = exit_file(state_dir, job["id"])
    try:
        f = open(ending, "r+")  # in place: no new disk space needed
    except FileNotFoundError:
        f = open(ending, "w")
    with f:
        f.write(f"{job['token']} {returncode} {duration}".ljust(EXIT_FILE_SIZE))


def read_exit(state_dir: Path, job: QueueRow) -> dict | None:
    """What a supervisor wrote when the program of `job` (this start of it) ended, or None."""
    try:
        text = exit_file(state_dir, job["id"]).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 3 or parts[0] != job.get("token"):
        return None
    try:
        return {"returncode": int(parts[1]), "duration_s": float(parts[2])}
    except ValueError:
        return None


def forget(state_dir: Path, job: QueueRow) -> None:
    """Remove a settled job's files."""
    for path in (exit_file(state_dir, job["id"]), identity_file(state_dir, job["id"]), stop_file(state_dir, job["id"])):
        try:
            path.unlink()
        except OSError:
            pass


def remove_all_but(state_dir: Path, running: set[str]) -> None:
    """Remove the files of every job not in `running` (job ids as text): left by a supervisor killed after it
    marked its job done."""
    try:
        # `.ID.stop.XXXX.tmp`: a file being written (atomic_write_text) belongs to its job like the file it becomes.
        left = [p for p in jobs_dir(state_dir).iterdir() if p.name.lstrip(".").split(".")[0] not in running]
    except OSError:
        left = []
    for path in left:
        path.unlink(missing_ok=True)
