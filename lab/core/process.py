"""Process groups: identify a job's process group safely and end it (SIGTERM, then SIGKILL after a grace period).

A job runs in its own session, so its process group id is its leader's pid. Before lab signals a group it did
not start in this process (crash recovery, `lab stop --now` from another shell), it checks that the leader is
still the same process (its start time and the boot id) so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a Slurm allocation, a container), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None when unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def identity(pid: int) -> dict:
    """What identifies a started process later: pid, process group, start time, boot id."""
    return {"pid": pid, "pgid": pid, "proc_start": start_time(pid), "boot_id": boot_id()}


def group_alive(pgid: int | None) -> bool:
    if not pgid or pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_our_group(pgid: int | None, proc_start: str | None = None, boot: str | None = None) -> bool:
    """Whether the process group `pgid` still belongs to the job that was started with this identity."""
    if not group_alive(pgid):
        return False
    current_boot = boot_id()
    if boot and current_boot and boot != current_boot:
        return False  # a reboot ended every process of that job; this group is someone else's
    if proc_start is None:
        return True
    leader_start = start_time(pgid)
    if leader_start is None:
        # The leader is gone but members of its group live on: Linux never hands out a pid that is still a
        # group id, so they are the job's own children.
        return True
    return leader_start == proc_start


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def live_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run (zombies, which only wait to be reaped, are left out)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pgid] if group_alive(pgid) else []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(int(entry))
    return members


def group_gone(pgid: int | None) -> bool:
    """Whether no process of the group runs any more."""
    return not group_alive(pgid) or not live_members(pgid)


def terminate_group(pgid: int | None, grace: float = 10.0, is_gone: Callable[[], bool] | None = None,
                    members: Callable[[], list[int]] | None = None) -> bool:
    """SIGTERM the group, SIGKILL it after `grace` seconds (again and again, so that nothing forked meanwhile
    escapes, for up to 10 s more); return True when it is gone.

    `is_gone` (optional) says when the caller considers the group ended (default: no member runs any more).
    `members` (optional) gives the pids to signal instead of the whole group: a supervisor that leads the group
    of its job spares itself.
    """
    if not group_alive(pgid):
        return True
    assert pgid is not None

    def send(sig: int) -> None:
        if members is None:
            signal_group(pgid, sig)
            return
        for pid in members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    if is_gone is None:
        is_gone = (lambda: not members()) if members is not None else (lambda: group_gone(pgid))
    send(signal.SIGTERM)
    if _wait(is_gone, grace):
        return True
    send(signal.SIGKILL)
    return _wait(is_gone, 10.0, again=lambda: send(signal.SIGKILL))


def _wait(done: Callable[[], bool], timeout: float, again: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        if again is not None:
            again()
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        return True


def spawn_detached(argv: list[str], log: Path | str, cwd: Path | str, env: dict | None = None):
    """Start `argv` in a new session (no terminal, stdin from /dev/null, stdout and stderr appended to `log`).

    The child imports lab from wherever this process did (an editable install, a checkout on PYTHONPATH), and
    holds none of the caller's descriptors, so it never keeps the caller's output open. Returns the Popen.
    A daemon thread waits for the child, so that a long-lived caller (a notebook through `lab.open()`, a test
    process) never keeps it as a zombie, whose pid would still look alive, once it ends.
    """
    import subprocess
    import threading

    env = dict(os.environ if env is None else env)
    package_parent = str(Path(__file__).resolve().parents[2])  # the folder that holds the lab package
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths:
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc
