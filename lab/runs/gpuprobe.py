"""Asking the machine what runs on its GPUs: NVML (the `nvidia-ml-py` bindings) when it answers, else
`nvidia-smi --query-gpu=... --format=csv,noheader,nounits` and `--query-compute-apps=...`.

`probe()` returns a `Snapshot` (each GPU: index, UUID, memory in use and in total, its compute processes) or raises
`ProbeError` with one line that says what went wrong (nvidia-smi missing, hanging, printing an error or a format
lab cannot read; NVML raising in the middle of a query). A caller that gets a `ProbeError` must treat every GPU as
possibly busy.

Both paths are bounded in time: NVML is asked from a worker thread that is given up on after `TIMEOUT_S` (a wedged
driver can block an NVML call for minutes), nvidia-smi runs with the same timeout and a hung one is killed and not
waited for. After a hang or a failure, the same answer is given for `BACKOFF_S` without asking again, so a runner
round never spends the timeout twice in a row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

TIMEOUT_S = 5.0
BACKOFF_S = 15.0
GPU_FIELDS = "index,uuid,memory.total,memory.used"
APP_FIELDS = "gpu_uuid,pid,used_memory,process_name"
_MISSING = ("[N/A]", "[Not Supported]", "[Insufficient Permissions]", "[Not Found]", "[Unknown Error]", "N/A", "")


class ProbeError(Exception):
    """The machine could not say what runs on its GPUs (one line for the runner's log and `lab status`)."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    mib: float | None  # None: the driver does not say (Windows/WDDM, some containers)
    name: str = ""


@dataclass(frozen=True)
class Gpu:
    index: str
    uuid: str
    total_mib: float | None
    used_mib: float | None
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    gpus: tuple[Gpu, ...]
    source: str  # "NVML" or "nvidia-smi"
    took_s: float = 0.0
    by_key: dict = field(default_factory=dict, compare=False, repr=False)

    def find(self, gpu_id: str) -> Gpu | None:
        """The GPU lab calls `gpu_id`: its index (as nvidia-smi counts) or its UUID."""
        if not self.by_key:
            for g in self.gpus:
                self.by_key[g.index] = g
                self.by_key[g.uuid] = g
        return self.by_key.get(str(gpu_id))


# -- the one entry point ------------------------------------------------------------------------------------------

_state = {"nvml": None, "failed_at": None, "error": None, "stuck": []}
_lock = threading.Lock()


def probe(env: dict | None = None, timeout: float = TIMEOUT_S) -> Snapshot:
    """What runs on this machine's GPUs now (NVML first, else nvidia-smi); ProbeError with one line otherwise."""
    env = os.environ if env is None else env
    with _lock:
        failed_at = _state["failed_at"]
        if failed_at is not None and time.monotonic() - failed_at < BACKOFF_S:
            raise ProbeError(_state["error"])
        start = time.monotonic()
        try:
            nvml = _nvml()
            if nvml is not None:
                gpus, source = _ask_nvml(nvml, timeout), "NVML"
            else:
                gpus, source = _ask_nvidia_smi(env, timeout), "nvidia-smi"
        except ProbeError as e:
            _state["failed_at"], _state["error"] = time.monotonic(), str(e)
            raise
        _state["failed_at"] = _state["error"] = None
        return Snapshot(gpus=gpus, source=source, took_s=time.monotonic() - start)


def reset() -> None:
    """Forget the back-off and NVML's state (tests; a runner that starts over)."""
    with _lock:
        _state.update(nvml=None, failed_at=None, error=None)


# -- NVML ---------------------------------------------------------------------------------------------------------


def _nvml():
    """The initialised pynvml module, or None when NVML cannot be used here (not installed, no driver library)."""
    if _state["nvml"] is not None:
        return _state["nvml"] or None
    try:
        import pynvml  # nvidia-ml-py, optional
    except ImportError:
        _state["nvml"] = False
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...: ask nvidia-smi instead
        _state["nvml"] = False
        return None
    _state["nvml"] = pynvml
    return pynvml


def _ask_nvml(nvml, timeout: float) -> tuple[Gpu, ...]:
    result: dict = {}

    def ask():
        try:
            result["gpus"] = _read_nvml(nvml)
        except Exception as e:  # NVMLError_GpuIsLost, NVMLError_Unknown, ... in the middle of the query
            result["error"] = e

    worker = threading.Thread(target=ask, name="lab-nvml", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _state["nvml"] = False  # never again in this process: the hung call holds NVML's lock
        raise ProbeError(f"NVML did not answer within {timeout:g} s (a GPU or its driver is stuck)")
    if "error" in result:
        e = result["error"]
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
        _state["nvml"] = None  # initialise again next time
        raise ProbeError(f"NVML failed while reading the GPUs: {_one_line(str(e) or type(e).__name__)}")
    return result["gpus"]


def _read_nvml(nvml) -> tuple[Gpu, ...]:
    gpus = []
    for i in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        procs = []
        for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            used = getattr(p, "usedGpuMemory", None)
            procs.append(GpuProcess(pid=int(p.pid), mib=None if used is None else used / 2**20))
        gpus.append(Gpu(index=str(i), uuid=uuid, total_mib=mem.total / 2**20, used_mib=mem.used / 2**20,
                        processes=tuple(procs)))
    return tuple(gpus)


# -- nvidia-smi ---------------------------------------------------------------------------------------------------


def _ask_nvidia_smi(env, timeout: float) -> tuple[Gpu, ...]:
    exe = shutil.which("nvidia-smi", path=env.get("PATH", os.defpath))
    if exe is None:
        raise ProbeError("cannot check the GPUs: nvidia-smi not found on PATH and NVML (nvidia-ml-py) not usable")
    deadline = time.monotonic() + timeout
    # Both questions at once: each run of nvidia-smi pays its own start-up (tens of ms, more without persistence mode).
    gpu_proc = _start([exe, f"--query-gpu={GPU_FIELDS}", "--format=csv,noheader,nounits"], env)
    try:
        app_proc = _start([exe, f"--query-compute-apps={APP_FIELDS}", "--format=csv,noheader,nounits"], env)
    except ProbeError:
        _finish(gpu_proc, deadline, timeout)
        raise
    try:
        gpu_out = _finish(gpu_proc, deadline, timeout)
    except ProbeError:
        _finish(app_proc, time.monotonic(), timeout, quiet=True)
        raise
    gpu_rows = _csv(gpu_out, 4)
    app_rows = _csv(_finish(app_proc, deadline, timeout), 4)
    procs: dict[str, list[GpuProcess]] = {}
    for uuid, pid, mib, name in app_rows:
        if not pid.isdigit():
            raise ProbeError(f"nvidia-smi printed a process lab cannot read: {', '.join((uuid, pid, mib, name))!r}")
        procs.setdefault(uuid, []).append(GpuProcess(pid=int(pid), mib=_mib(mib), name=name))
    gpus = []
    for index, uuid, total, used in gpu_rows:
        if not index.isdigit():
            raise ProbeError(f"nvidia-smi printed a GPU lab cannot read: {', '.join((index, uuid, total, used))!r}")
        gpus.append(Gpu(index=index, uuid=uuid, total_mib=_mib(total), used_mib=_mib(used),
                        processes=tuple(procs.get(uuid, ()))))
    return tuple(gpus)


def _start(argv: list[str], env) -> subprocess.Popen:
    _reap_stuck()
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(env), text=True, errors="replace")
    except OSError as e:
        raise ProbeError(f"cannot run nvidia-smi: {e.strerror or e}") from None


def _finish(proc: subprocess.Popen, deadline: float, timeout: float, quiet: bool = False) -> str:
    """Its output, once it exits by `deadline`; a hung one is killed and never waited for."""
    try:
        out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            _state["stuck"].append(proc)  # unkillable for now (a wedged driver): reaped later, never waited for
        if quiet:
            return ""
        raise ProbeError(f"nvidia-smi did not answer within {timeout:g} s (a GPU or its driver is stuck)") from None
    if proc.returncode != 0 and not quiet:
        raise ProbeError(f"nvidia-smi failed (exit {proc.returncode}): {_one_line(out) or 'no message'}")
    return out


def _reap_stuck() -> None:
    _state["stuck"] = [p for p in _state["stuck"] if p.poll() is None]


def _csv(text: str, width: int) -> list[tuple[str, ...]]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",", width - 1)]
        if len(parts) != width:
            raise ProbeError(f"nvidia-smi printed what lab cannot read (another driver's format?): {_one_line(line)!r}")
        rows.append(tuple(parts))
    return rows


def _mib(text: str) -> float | None:
    text = text.strip()
    if text in _MISSING:
        return None
    if text.endswith("MiB"):
        text = text[:-3].strip()
    try:
        return float(text)
    except ValueError:
        raise ProbeError(f"nvidia-smi printed a memory size lab cannot read: {text!r}") from None


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
