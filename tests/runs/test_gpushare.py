"""Sharing a GPU machine (lab.runs.gpuprobe, gpulease, gpushare): asking the machine through a stand-in nvidia-smi
that prints recorded real answers (tests/fake_nvidia_smi.py) or a stand-in NVML, machine-wide leases with real
flocks held by real processes, and the busy rule."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from fractions import Fraction
from pathlib import Path

import pytest

from lab.core.workspace import Workspace
from lab.errors import BadInput
from lab.runs import gpulease, gpuprobe, gpus, gpushare
from helpers import REPO
from pretend_gpus import Machine




@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent: the nvidia-smi path
    gpuprobe.reset()
    m = Machine(tmp_path)
    m.env.pop("FAKE_APPS")
    m.env["PATH"] = f"{m.dir / 'bin'}:/usr/bin:/bin"
    yield m
    m.stop()
    gpuprobe.reset()


# -- asking the machine ---------------------------------------------------------------------------------------------


def test_nvidia_smi_answers_are_read_as_the_real_tool_prints_them(machine):
    machine.process_on(1, 21800)
    snap = gpuprobe.probe(machine.env)
    assert snap.source == "nvidia-smi" and [g.index for g in snap.gpus] == ["0", "1"]
    g1 = snap.find("1")
    assert g1.total_mib == 81559 and g1.used_mib == 21800 and g1.processes[0].mib == 21800
    assert snap.find(g1.uuid) is g1
    assert sorted(machine.calls()) == [  # both asked at once
        "--query-compute-apps=gpu_uuid,pid,used_memory,process_name --format=csv,noheader,nounits",
        "--query-gpu=index,uuid,memory.total,memory.used --format=csv,noheader,nounits"]


def test_a_process_on_a_gpu_makes_it_busy_with_pid_uid_and_memory(machine):
    proc = machine.process_on(1, 21800)
    snap = gpuprobe.probe(machine.env)
    assert gpushare.busy_reason("1", snap.find("1"), set(), gpushare.Check()) == \
        f"1 busy (pid {proc.pid}, uid {os.getuid()}, 21.3 GiB)"
    assert gpushare.busy_reason("0", snap.find("0"), set(), gpushare.Check()) is None


def test_memory_held_by_no_visible_process_counts_above_gpu_free_below(machine):
    machine.save(used_mib=3000)  # 3.7% of 81559 MiB: below 5%, free; above 2 GiB, busy
    gpu = gpuprobe.probe(machine.env).find("0")
    assert gpushare.busy_reason("0", gpu, set(), gpushare.Check()) is None
    check = gpushare.check_options({"gpu_free_below": "2 GiB"}, "lab.yaml")
    assert gpushare.busy_reason("0", gpu, set(), check) == "0 busy (2.9 GiB in use by no process lab can see)"


def test_a_lab_jobs_own_processes_are_not_foreign(machine):
    job = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(600)"])
    machine.procs.append(job)
    (machine.apps / str(job.pid)).write_text(json.dumps({"gpu": 0, "mib": 30000}))
    time.sleep(0.2)
    gpu = gpuprobe.probe(machine.env).find("0")
    assert gpushare.busy_reason("0", gpu, {job.pid}, gpushare.Check()) is None  # its memory is its own
    assert gpushare.busy_reason("0", gpu, set(), gpushare.Check()).startswith(f"0 busy (pid {job.pid}")


@pytest.mark.parametrize("mode,message", [
    ("error-no-driver", "nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't communicate with the "
                        "NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."),
    ("error-version-mismatch", "nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library version mismatch"),
    ("error-unknown-field", 'nvidia-smi failed (exit 2): Field "cuda_version" is not a valid field to query.'),
])
def test_nvidia_smi_printing_an_error_is_one_line(machine, mode, message):
    machine.save(mode=mode)
    with pytest.raises(gpuprobe.ProbeError) as e:
        gpuprobe.probe(machine.env)
    assert str(e.value) == message


def test_nvidia_smi_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    gpuprobe.reset()
    with pytest.raises(gpuprobe.ProbeError, match=r"^cannot check the GPUs: nvidia-smi not found on PATH"):
        gpuprobe.probe({"PATH": str(tmp_path)})


def test_a_hanging_nvidia_smi_is_given_up_and_not_asked_again_at_once(machine):
    machine.save(mode="hang")
    t = time.monotonic()
    with pytest.raises(gpuprobe.ProbeError, match=r"^nvidia-smi did not answer within 0.5 s"):
        gpuprobe.probe(machine.env, timeout=0.5)
    assert time.monotonic() - t < 3
    n = len(machine.calls())
    with pytest.raises(gpuprobe.ProbeError, match="did not answer"):  # backing off: not run again
        gpuprobe.probe(machine.env, timeout=0.5)
    assert len(machine.calls()) == n


def test_another_drivers_format_is_one_line_or_read_where_it_means_the_same(machine):
    # Windows/WDDM: every process's memory is [N/A]; the GPU's memory in use is still known.
    machine.save(capture="rtx2080-windows-load")
    machine.process_on(0, None)
    snap = gpuprobe.probe(machine.env)
    gpu = snap.find("0")
    assert gpu.total_mib == 8192 and gpu.processes[0].mib is None
    assert gpushare.busy_reason("0", gpu, set(), gpushare.Check()).startswith("0 busy (pid ")
    # A table where CSV was asked for: one line, nothing guessed.
    exe = machine.dir / "bin" / "nvidia-smi"
    exe.write_text("#!/bin/sh\necho '|   0  NVIDIA H100 80GB HBM3          On  | 00000000:00:09.0 Off |'\n")
    gpuprobe.reset()
    with pytest.raises(gpuprobe.ProbeError, match=r"^nvidia-smi printed what lab cannot read \(another driver's format\?\)"):
        gpuprobe.probe(machine.env)


class FakeNVML(types.SimpleNamespace):
    """A stand-in for nvidia-ml-py's pynvml: the calls lab makes, answering for two GPUs."""

    def __init__(self, procs=None, fail_at=None, hang=False):
        super().__init__(calls=[], procs=procs or {}, fail_at=fail_at, hang=hang)

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        if self.fail_at == i:
            raise RuntimeError("GPU is lost")  # pynvml's NVMLError_GpuIsLost, mid-query
        if self.hang:
            time.sleep(5)
        return i

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h:08x}-aaaa-bbbb-cccc-000000000000"

    def nvmlDeviceGetMemoryInfo(self, h):
        used = sum(m for _, m in self.procs.get(h, ())) * 2**20
        return types.SimpleNamespace(total=81559 * 2**20, used=used, free=81559 * 2**20 - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=mib * 2**20) for pid, mib in self.procs.get(h, ())]


def test_nvml_is_asked_first_and_stays_initialised(monkeypatch):
    fake = FakeNVML(procs={1: [(4242, 21800)]})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpuprobe.reset()
    snap = gpuprobe.probe({"PATH": "/nonexistent"})
    snap = gpuprobe.probe({"PATH": "/nonexistent"})
    assert snap.source == "NVML" and fake.calls == ["init"]
    assert snap.find("1").processes[0].pid == 4242 and snap.find("1").used_mib == 21800
    gpuprobe.reset()


def test_nvml_raising_mid_query_is_one_line_and_nothing_is_free(monkeypatch, lab_root):
    fake = FakeNVML(fail_at=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpuprobe.reset()
    with pytest.raises(gpuprobe.ProbeError) as e:
        gpuprobe.probe({})
    assert str(e.value) == "NVML failed while reading the GPUs: GPU is lost"
    gpuprobe.reset()
    lanes = gpus.Lanes(gpus=("0", "1"), source="lab.yaml")
    sharing = gpushare.Sharing(Workspace(lab_root), lanes, gpushare.Check(), env={})
    out = sharing.look([])
    assert set(out.blocked) == {"0", "1"} and out.error == "NVML failed while reading the GPUs: GPU is lost"
    assert out.reason().startswith("waiting for a GPU: 0 not checked (NVML failed")
    gpuprobe.reset()


def test_nvml_hanging_is_given_up(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(hang=True))
    gpuprobe.reset()
    with pytest.raises(gpuprobe.ProbeError, match=r"^NVML did not answer within 0.3 s"):
        gpuprobe.probe({}, timeout=0.3)
    gpuprobe.reset()


def test_nvml_check_costs_well_under_20_ms(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(procs={0: [(1, 100)]}))
    gpuprobe.reset()
    gpuprobe.probe({})
    t = time.perf_counter()
    for _ in range(20):
        gpuprobe.probe({})
    assert (time.perf_counter() - t) / 20 < 0.02
    gpuprobe.reset()


# -- lab.yaml -------------------------------------------------------------------------------------------------------


def test_gpu_check_and_gpu_free_below_in_lab_yaml():
    assert gpushare.check_options({}, "lab.yaml") == gpushare.Check(True, 0.05, None)
    assert gpushare.check_options({"gpu_check": False}, "lab.yaml").enabled is False
    assert gpushare.check_options({"gpu_free_below": "10%"}, "lab.yaml").fraction == 0.1
    assert gpushare.check_options({"gpu_free_below": "512 MiB"}, "lab.yaml").mib == 512
    with pytest.raises(BadInput, match=r"^lab.yaml: gpu_free_below must be a share of the card such as 5% or a size"):
        gpushare.check_options({"gpu_free_below": 2}, "lab.yaml")
    with pytest.raises(BadInput, match=r"^lab.yaml: gpu_check must be true or false, not 'no way'"):
        gpushare.check_options({"gpu_check": "no way"}, "lab.yaml")
    with pytest.raises(BadInput, match=r"unknown key 'gpu_chek' \(did you mean 'gpu_check'\?\)"):
        gpus.options({"gpu_chek": False}, "lab.yaml")


def test_gpus_given_in_lab_gpus_are_not_checked():
    assert not gpushare.active(gpus.Lanes(gpus=("0",), source="LAB_GPUS"), gpushare.Check())
    assert gpushare.active(gpus.Lanes(gpus=("0",), source="lab.yaml"), gpushare.Check())
    assert not gpushare.active(gpus.Lanes(gpus=("0",), source="nvidia-smi"), gpushare.Check(enabled=False))
    assert not gpushare.active(gpus.Lanes(), gpushare.Check())  # no GPU: nothing to pay


# -- leases ---------------------------------------------------------------------------------------------------------

HOLD = r'''
import json, sys, time
from pathlib import Path
from lab.runs import gpulease
lease = gpulease.acquire(Path(sys.argv[1]), ("0",), ("GPU-0",), int(sys.argv[2]))
if lease is None:
    print("busy", flush=True); sys.exit(3)
lease.write_info({"lab": "/other/lab", "experiment": "e", "setting": "s", "job_id": 7, "pid": 1})
print("held", flush=True)
time.sleep(600)
'''


def hold(directory: Path, per_gpu: int = 1) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(per_gpu)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_slot_is_not_leased_twice_and_kill_9_frees_it(tmp_path):
    d = tmp_path / "leases"
    gpulease.prepare(d)
    other = hold(d)
    try:
        assert gpulease.acquire(d, ("0",), ("GPU-0",), 1) is None
        [h] = gpulease.holders(d, ["GPU-0"])
        assert (h.key, h.slot, h.info["lab"]) == ("GPU-0", None, "/other/lab")
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    lease = gpulease.acquire(d, ("0",), ("GPU-0",), 1)
    assert lease is not None and gpulease.holders(d, ["GPU-0"])[0].info["lab"] == "/other/lab"  # stale words
    lease.write_info({"lab": "/mine"})
    assert gpulease.holders(d, ["GPU-0"])[0].info == {"lab": "/mine"}
    lease.close()
    assert gpulease.holders(d, ["GPU-0"]) == []


def test_jobs_per_gpu_slots_are_shared_across_processes_and_exclude_a_whole_gpu_job(tmp_path):
    d = tmp_path / "leases"
    other = hold(d, per_gpu=2)
    try:
        mine = gpulease.acquire(d, ("0",), ("GPU-0",), 2)
        assert mine is not None  # the second slot
        assert gpulease.acquire(d, ("0",), ("GPU-0",), 2) is None  # both slots held
        assert gpulease.acquire(d, ("0",), ("GPU-0",), 1) is None  # a whole-GPU job waits for both
        assert sorted(h.slot for h in gpulease.holders(d, ["GPU-0"])) == [0, 1]
        mine.close()
    finally:
        other.kill()
        other.wait()
    whole = gpulease.acquire(d, ("0",), ("GPU-0",), 1)
    assert whole is not None and gpulease.acquire(d, ("0",), ("GPU-0",), 2) is None
    whole.close()


def test_the_lease_directory_is_shared_whatever_the_umask(tmp_path):
    d = tmp_path / "leases"
    old = os.umask(0o077)
    try:
        gpulease.prepare(d)
        lease = gpulease.acquire(d, ("0",), ("GPU-0",), 1)
    finally:
        os.umask(old)
    assert oct(d.stat().st_mode & 0o7777) == "0o1777"
    assert oct((d / "gpu-GPU-0.lock").stat().st_mode & 0o777) == "0o666"
    lease.close()


def test_a_symlink_planted_as_a_lease_file_is_refused(tmp_path):
    d = tmp_path / "leases"
    gpulease.prepare(d)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (d / "gpu-GPU-0.lock").symlink_to(victim)
    with pytest.raises(gpulease.LeaseError, match=r"a symbolic link where a GPU lease file belongs"):
        gpulease.acquire(d, ("0",), ("GPU-0",), 1)
    assert victim.read_text() == "precious\n"


AS_OTHER_USER = r'''
import sys
from pathlib import Path
from lab.runs import gpulease
try:
    lease = gpulease.acquire(Path(sys.argv[1]), ("0",), (sys.argv[2],), 1)
    print("leased" if lease else "busy")
except gpulease.LeaseError as e:
    print("error:", e)
'''


def as_nobody(*args) -> str:
    """Run AS_OTHER_USER as another user (the tests run as root here; elsewhere as the user itself)."""
    if os.getuid() != 0:
        cmd = [sys.executable, "-c", AS_OTHER_USER, *args]
    elif shutil.which("setpriv"):
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", AS_OTHER_USER, *args]
    else:
        pytest.skip("no setpriv to act as another user")
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         cwd="/")
    return out.stdout.strip() or out.stderr.strip()


@pytest.fixture
def open_tmp():
    """A directory another user can reach (pytest's tmp_path is under a 0700 directory)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="lab-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_another_user_leases_in_the_shared_directory_and_a_read_only_lease_file_still_locks(open_tmp):
    d = open_tmp / "leases"
    gpulease.prepare(d)
    # A lease file made by this user (0666): another user opens and locks it.
    gpulease.acquire(d, ("0",), ("GPU-A",), 1).close()
    assert as_nobody(str(d), "GPU-A") == "leased"
    # One left 0644 by an older version or a strict admin: read-only, but its lock works all the same.
    (d / "gpu-GPU-B.lock").write_text("")
    (d / "gpu-GPU-B.lock").chmod(0o644)
    if os.getuid() == 0:
        assert as_nobody(str(d), "GPU-B") == "leased"


def test_a_lease_directory_without_write_permission_is_one_line(open_tmp):
    d = open_tmp / "locked"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    out = as_nobody(str(d), "GPU-C") if os.getuid() == 0 else None
    if out is None:
        d.chmod(0o555)
        try:
            with pytest.raises(gpulease.LeaseError) as e:
                gpulease.acquire(d, ("0",), ("GPU-C",), 1)
            out = f"error: {e.value}"
        finally:
            d.chmod(0o755)
    assert out == (f"error: {d}: cannot make GPU lease files (Permission denied); set LAB_GPU_LEASES to a directory "
                   "every user of this machine can write")


def test_a_stale_lease_file_from_a_crashed_machine_is_taken_over(tmp_path):
    d = tmp_path / "leases"
    gpulease.prepare(d)
    (d / "gpu-GPU-0.lock").write_text(json.dumps({"lab": "/gone", "pid": 99999, "boot_id": "another boot"}))
    assert gpulease.holders(d, ["GPU-0"]) == []  # no lock: nobody holds it, whatever it says
    lease = gpulease.acquire(d, ("0",), ("GPU-0",), 1)
    assert lease is not None
    lease.close()


# -- the runner's look ----------------------------------------------------------------------------------------------


def test_the_runners_look_blocks_a_foreign_gpu_and_counts_other_labs_slots(machine, lab_root):
    proc = machine.process_on(1, 21800)
    lanes = gpus.Lanes(gpus=("0", "1", "2"), source="lab.yaml", jobs_per_gpu=2)
    sharing = gpushare.Sharing(Workspace(lab_root), lanes, gpushare.Check(), env=machine.env)
    out = sharing.look([])
    assert out.blocked == {"1": f"1 busy (pid {proc.pid}, uid {os.getuid()}, 21.3 GiB)",
                           "2": "2 not found by nvidia-smi"}
    lease = sharing.lease(("0",), Fraction(1, 2))
    lease.write_info(sharing.info({"experiment": "e", "setting": "s", "id": 1}, os.getpid(), Fraction(1, 2), ("0",)))
    other = gpushare.Sharing(Workspace(lab_root / "experiments"), lanes, gpushare.Check(), env=machine.env)
    seen = other.look([])
    assert [(h.gpus, h.need.share) for h in seen.held] == [(("0",), Fraction(1, 2))]
    assert "0 in use by another lab's job" in seen.reason()
    assert sharing.look([{"id": 1}]).held == []  # its own job
    lease.close()


def test_threads_do_not_double_lease(tmp_path):
    d = tmp_path / "leases"
    gpulease.prepare(d)
    got = []

    def take():
        lease = gpulease.acquire(d, ("0",), ("GPU-0",), 1)
        if lease is not None:
            got.append(lease)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1
    got[0].close()
