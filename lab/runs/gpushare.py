"""Sharing a GPU machine: which of the runner's GPUs are busy with work that is not its own, and the leases that keep
labs on one machine from double-booking a GPU slot (`lab.runs.gpulease`); also what `lab gpus` shows.

The rule (each round of a runner that hands out GPUs it found or was given in lab.yaml): a GPU is busy when a process
on it is not a job of any lab (it does not descend from a supervisor that holds a lease on this machine), or when
more memory is in use on it than lab's jobs there account for plus `gpu_free_below` (default 5% of the card). A busy
GPU is as good as full for the scheduler, and a slot another lab's job holds is as good as taken; a job waits in
queue order until its GPUs free up. When the machine cannot be asked (nvidia-smi missing, hanging, failing, or
printing what lab cannot read; NVML raising), every GPU might be busy: no job starts on one.

In lab.yaml:

    gpu_check: false        # hand out the GPUs unchecked (no probe, no lease), as before
    gpu_free_below: 5%      # or 2 GiB: memory lab's jobs do not account for that still counts as free

GPUs given in `LAB_GPUS` are not checked: whoever set it handed them out (a job that runs lab gets its own GPUs
there, and its inner runner must not wait for the lease its own job holds). Slurm is untouched: none of this runs
for jobs Slurm places.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from lab.errors import BadInput
from lab.runs import gpulease, gpuprobe
from lab.runs.slots import Held, Need

DEFAULT_FREE_BELOW = "5%"
_UNITS = {"mib": 1.0, "mb": 1e6 / 2**20, "gib": 1024.0, "gb": 1e9 / 2**20}


@dataclass(frozen=True)
class Check:
    """lab.yaml's `gpu_check` and `gpu_free_below` (a fraction of the card, or MiB)."""

    enabled: bool = True
    fraction: float | None = 0.05
    mib: float | None = None

    def allowance(self, total_mib: float | None) -> float | None:
        if self.mib is not None:
            return self.mib
        return None if total_mib is None else self.fraction * total_mib


def check_options(config: dict, where: str) -> Check:
    """The checked `gpu_check` / `gpu_free_below` of lab.yaml: one BadInput line naming `where`."""
    enabled = config.get("gpu_check", True)
    if not isinstance(enabled, bool):
        raise BadInput(f"{where}: gpu_check must be true or false, not {enabled!r}")
    value = config.get("gpu_free_below", DEFAULT_FREE_BELOW)
    text = str(value).strip().lower() if isinstance(value, str) else None
    hint = f"{where}: gpu_free_below must be a share of the card such as 5% or a size such as 2 GiB, not {value!r}"
    if not text:
        raise BadInput(hint)
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return Check(enabled, fraction=pct / 100)
        for unit, scale in _UNITS.items():
            if text.endswith(unit):
                size = float(text[: -len(unit)])
                if size < 0:
                    raise ValueError
                return Check(enabled, fraction=None, mib=size * scale)
    except ValueError:
        pass
    raise BadInput(hint)


@dataclass
class Outside:
    """What a round of the runner found outside its own jobs: GPUs it must not use (and why), slots other labs'
    jobs hold, and the one line to log when the machine could not be asked."""

    blocked: dict = field(default_factory=dict)  # GPU id -> "0 busy (pid 4242, uid 1001, 21.3 GiB)"
    held: list = field(default_factory=list)  # list[Held]: other labs' jobs on our GPUs
    error: str | None = None
    keys: dict = field(default_factory=dict)  # GPU id -> lease key (its UUID)
    leases: frozenset = frozenset()  # (key, slot) of every lease held on these GPUs at the look
    took_s: float = 0.0

    def as_held(self) -> list[Held]:
        return [Held(Need(gpus=1), (g,)) for g in self.blocked] + self.held

    def reason(self) -> str | None:
        """Why a job that needs a GPU waits, when something outside this lab is in the way."""
        parts = list(self.blocked.values())
        if self.held:
            gpus = sorted({g for h in self.held for g in h.gpus})
            parts.append(f"{','.join(gpus)} in use by another lab's job" if len(gpus) == 1 else
                         f"{','.join(gpus)} in use by other labs' jobs")
        return "waiting for a GPU: " + "; ".join(parts) if parts else None


def active(lanes, check: Check) -> bool:
    """Whether this runner checks and leases its GPUs (it hands out GPUs it did not get from LAB_GPUS)."""
    return lanes.managed and check.enabled and lanes.source != "LAB_GPUS"


class Sharing:
    """A runner's eyes on the machine: each round `look()`, then `lease()` for each job it starts on GPUs."""

    def __init__(self, workspace, lanes, check: Check, env: dict | None = None):
        self.root = str(Path(workspace.root).resolve())
        self.lanes = lanes
        self.check = check
        self.env = dict(os.environ if env is None else env)
        self.dir = gpulease.lease_dir(self.env)
        self.last = Outside()

    def look(self, running: list[dict]) -> Outside:
        """Probe the GPUs and read the leases: what the scheduler must treat as taken this round."""
        out = Outside()
        try:
            snap = gpuprobe.probe(self.env)
        except gpuprobe.ProbeError as e:
            out.error = str(e)
            out.blocked = {g: f"{g} not checked ({e})" for g in self.lanes.gpus}
            self.last = out
            return out
        out.took_s = snap.took_s
        for g in self.lanes.gpus:
            gpu = snap.find(g)
            if gpu is None:
                out.blocked[g] = f"{g} not found by {snap.source}"
            else:
                out.keys[g] = gpu.uuid or gpu.index
        try:
            gpulease.prepare(self.dir)
            held = gpulease.holders(self.dir, out.keys.values())
        except gpulease.LeaseError as e:
            out.error = str(e)
            out.blocked = {g: f"{g} not leased ({e})" for g in self.lanes.gpus}
            self.last = out
            return out
        out.leases = frozenset((h.key, h.slot) for h in held)
        mine = {int(j["id"]) for j in running}
        by_key = {k: g for g, k in out.keys.items()}
        supervisors = {int(h.info["pid"]) for h in held if isinstance(h.info.get("pid"), int)}
        for h in held:
            g = by_key.get(h.key)
            if g is None or (h.info.get("lab") == self.root and h.info.get("job_id") in mine):
                continue
            share = _share(h)
            out.held.append(Held(Need(gpus=1, share=share), (g,)))
        for g in out.keys:
            if g in out.blocked:
                continue
            why = busy_reason(g, snap.find(g), supervisors, self.check)
            if why:
                out.blocked[g] = why
        self.last = out
        return out

    def leases_changed(self) -> bool:
        """Whether a lease on these GPUs was taken or let go since the last look (cheap: /proc/locks, no probe)."""
        if not self.last.keys:
            return False
        try:
            now = gpulease.holders(self.dir, self.last.keys.values())
        except gpulease.LeaseError:
            return False
        return frozenset((h.key, h.slot) for h in now) != self.last.leases

    def lease(self, gpu_ids: tuple[str, ...], share: Fraction) -> gpulease.Lease | None:
        """Lease a slot on each GPU for a job about to start (None: another lab took it since the look, or a lease
        file cannot be used: `self.last.error` says so)."""
        keys = tuple(self.last.keys.get(g, g) for g in gpu_ids)
        per_gpu = share.denominator if share.numerator == 1 else 1
        try:
            return gpulease.acquire(self.dir, gpu_ids, keys, per_gpu)
        except gpulease.LeaseError as e:
            self.last.error = str(e)
            for g in gpu_ids:
                self.last.blocked[g] = f"{g} not leased ({e})"
            return None

    def info(self, job: dict, supervisor: int, share: Fraction, gpu_ids) -> dict:
        """What a lease file says about its holder (for other labs' runners and `lab gpus`)."""
        return {"lab": self.root, "experiment": job["experiment"], "setting": job["setting"], "job_id": job["id"],
                "pid": supervisor, "runner": os.getpid(), "uid": os.getuid(), "user": _user(os.getuid()),
                "share": [share.numerator, share.denominator], "gpus": list(gpu_ids), "host": socket.gethostname()}


def _share(h: gpulease.Holder) -> Fraction:
    if h.slot is None:
        return Fraction(1)
    try:
        num, den = h.info.get("share") or (1, 1)
        share = Fraction(int(num), int(den))
        return share if 0 < share <= 1 else Fraction(1)
    except (TypeError, ValueError, ZeroDivisionError):
        return Fraction(1)


def busy_reason(gpu_id: str, gpu: gpuprobe.Gpu, supervisors: set[int], check: Check) -> str | None:
    """Why this GPU is busy with work outside lab's jobs (`supervisors`: pids of lease-holding supervisors), or
    None when it is free for them."""
    foreign = [p for p in gpu.processes if not is_lab_job(p.pid, supervisors)]
    if foreign:
        biggest = max(foreign, key=lambda p: p.mib or 0)
        more = f", and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        return f"{gpu_id} busy ({process_text(biggest)}{more})"
    if gpu.used_mib is None:
        return f"{gpu_id} busy (the driver does not say how much memory is in use)"
    ours = sum(p.mib or 0 for p in gpu.processes)
    allowance = check.allowance(gpu.total_mib)
    if allowance is None:
        return f"{gpu_id} busy (the driver does not say how much memory the card has)"
    rest = gpu.used_mib - ours
    if rest > allowance:
        return f"{gpu_id} busy ({gib(rest)} in use by no process lab can see)"
    return None


def process_text(p: gpuprobe.GpuProcess) -> str:
    uid = uid_of(p.pid)
    return f"pid {p.pid}, uid {'?' if uid is None else uid}" + (f", {gib(p.mib)}" if p.mib is not None else "")


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _user(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return None if uid != os.getuid() else getpass.getuser()


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, session) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[2]), int(fields[3])
    except (IndexError, ValueError):
        return None


def is_lab_job(pid: int, supervisors: set[int]) -> bool:
    """Whether `pid` is a process of a lab job: in a supervisor's session or process group, or its descendant."""
    return supervisor_of(pid, supervisors) is not None


def supervisor_of(pid: int, supervisors: set[int]) -> int | None:
    """The supervisor (of `supervisors`) whose job `pid` belongs to, or None."""
    if not supervisors:
        return None
    seen = 0
    while pid > 1 and seen < 64:
        if pid in supervisors:
            return pid
        st = _stat(pid)
        if st is None:
            return None
        ppid, pgid, sid = st
        for candidate in (sid, pgid):
            if candidate in supervisors:
                return candidate
        pid, seen = ppid, seen + 1
    return None


# -- lab gpus -----------------------------------------------------------------------------------------------------


def machine(workspace, env: dict | None = None) -> dict:
    """The machine's GPUs for `lab gpus`: memory, the lab jobs on each (this lab's and other labs', from their
    leases) and the other processes (pid, user, memory); `error` says what could not be asked."""
    env = dict(os.environ if env is None else env)
    root = str(Path(workspace.root).resolve())
    directory = gpulease.lease_dir(env)
    out: dict = {"source": None, "lease_dir": str(directory), "error": None, "gpus": []}
    try:
        snap = gpuprobe.probe(env)
    except gpuprobe.ProbeError as e:
        out["error"] = str(e)
        return out
    out["source"] = snap.source
    try:
        held = gpulease.holders(directory, [g.uuid or g.index for g in snap.gpus]) if directory.is_dir() else []
    except (gpulease.LeaseError, OSError) as e:
        out["error"], held = str(e), []
    supervisors = {int(h.info["pid"]): h for h in held if isinstance(h.info.get("pid"), int)}
    check = Check()
    try:
        check = check_options(workspace.config, str(Path(workspace.root) / "lab.yaml"))
    except BadInput:
        pass
    for gpu in snap.gpus:
        key = gpu.uuid or gpu.index
        jobs = []
        for h in held:
            if h.key != key:
                continue
            info = h.info
            jobs.append({"lab": info.get("lab"), "this_lab": info.get("lab") == root,
                         "experiment": info.get("experiment"), "setting": info.get("setting"),
                         "job_id": info.get("job_id"), "pid": info.get("pid"), "user": info.get("user"),
                         "uid": info.get("uid"), "slot": h.slot})
        procs = []
        for p in gpu.processes:
            sup = supervisor_of(p.pid, set(supervisors))
            uid = uid_of(p.pid)
            job = supervisors[sup].info if sup is not None else None
            procs.append({"pid": p.pid, "uid": uid, "user": _user(uid), "memory_mib": p.mib, "name": p.name,
                          "lab_job": None if job is None else f"{job.get('experiment')}/{job.get('setting')}",
                          "lab": None if job is None else job.get("lab")})
        out["gpus"].append({"index": gpu.index, "uuid": gpu.uuid, "memory_total_mib": gpu.total_mib,
                            "memory_used_mib": gpu.used_mib, "jobs": jobs, "processes": procs,
                            "busy": busy_reason(gpu.index, gpu, set(supervisors), check)})
    return out
