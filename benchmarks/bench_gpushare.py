"""Sharing a GPU machine: two labs against one, and what the GPU check costs per job start.

Measured in the same run:
- makespan: one lab running N jobs with `gpu_check: false` (the runner as before), then checked: the same through
  the stand-in nvidia-smi (a Python program: its start-up, twice a round, is the price shown, not NVML's);
- makespan: one lab running N jobs (`gpus: auto`) on a pretend 2-GPU machine (the test suite's stand-in nvidia-smi,
  tests/fake_nvidia_smi.py, serving recorded real answers), against two labs running N/2 each at once on the same
  machine (two runners, leases between them). Goal: two labs within 1.10 x one lab; and no GPU ever held by two jobs
  (each job notes the other processes the pretend driver lists on its GPU when it starts: there must be none).
- the check per job start with NVML: `Sharing.look()` (ask NVML, read the leases) plus taking and handing on the
  lease, in this process, with the real NVML when it answers here (a GPU machine), else with a stand-in for
  nvidia-ml-py (then it measures lab's own share of the cost). Goal: at most 20 ms. A runner without GPUs does none
  of it (checked: no call at all).

Run: .venv/bin/python benchmarks/bench_gpushare.py [--jobs 20] [--sleep 1.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PROGRAM = r'''
import json, os, sys, time
s = json.load(open(sys.argv[1]))
apps, gpu = os.environ["FAKE_APPS"], os.environ.get("CUDA_VISIBLE_DEVICES")
tmp = os.path.join(apps, ".%d.tmp" % os.getpid())
with open(tmp, "w") as f:
    json.dump({"gpu": int(gpu), "mib": 900}, f)
os.replace(tmp, os.path.join(apps, str(os.getpid())))
others = []
for name in os.listdir(apps):
    if name.isdigit() and int(name) != os.getpid():
        try:
            os.kill(int(name), 0)
            if json.load(open(os.path.join(apps, name)))["gpu"] == int(gpu):
                others.append(int(name))
        except (OSError, ValueError):
            pass
time.sleep(s["sleep"])
with open(os.environ["GPU_EVENTS"], "a") as f:
    f.write(json.dumps({"gpu": gpu, "others": others}) + "\n")
'''


def make_lab(root: Path, jobs: int, sleep: float, check: bool = True) -> None:
    from lab.core.workspace import Workspace, init

    init(root)
    exp = Workspace(root).new_experiment("bench")
    exp.report_path.write_text(exp.report_path.read_text().replace("command: \n", 'command: "{python} prog.py {settings}"\n', 1))
    for i in range(jobs):
        (exp.settings_dir / f"s{i:02d}.json").write_text(json.dumps({"sleep": sleep}))
    (root / "prog.py").write_text(PROGRAM)
    (root / "lab.yaml").write_text("gpus: auto\n" + ("" if check else "gpu_check: false\n"))


def makespan(labs: int, jobs: int, sleep: float, check: bool = True) -> dict:
    from pretend_gpus import Machine

    with tempfile.TemporaryDirectory() as tmp:
        machine = Machine(Path(tmp))
        events = Path(tmp) / "events.jsonl"
        env = {**os.environ, **machine.env, "GPU_EVENTS": str(events)}
        for key in ("LAB_GPUS", "CUDA_VISIBLE_DEVICES", "LAB_ROOT"):
            env.pop(key, None)
        roots = [Path(tmp) / f"lab{i}" for i in range(labs)]
        for root in roots:
            make_lab(root, jobs // labs, sleep, check)
        start = time.monotonic()
        for root in roots:
            subprocess.run([sys.executable, "-m", "lab", "--root", str(root), "run", "bench"], check=True, env=env,
                           stderr=subprocess.DEVNULL)
        deadline = start + 60 + jobs * sleep * 2
        while time.monotonic() < deadline:
            done = sum(1 for r in roots for p in (r / "experiments/bench/runs").glob("s*.json")
                       if not p.name.endswith(".settings.json") and json.loads(p.read_text()).get("state") == "succeeded")
            if done == jobs:
                break
            time.sleep(0.05)
        took = time.monotonic() - start
        seen = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
        return {"makespan_s": took, "jobs": len(seen), "clashes": sum(1 for e in seen if e["others"])}


class _NVML(types.SimpleNamespace):
    """Stands in for nvidia-ml-py where no GPU answers: two GPUs, one process each."""

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-{h:08x}-bench"

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(total=81559 * 2**20, used=900 * 2**20)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=1, usedGpuMemory=900 * 2**20)] if h == 0 else []


def check_cost(rounds: int = 200) -> dict:
    from lab.core.workspace import Workspace, init
    from lab.runs import gpuprobe, gpus, gpushare

    real = True
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        real = False
        sys.modules["pynvml"] = _NVML()
    gpuprobe.reset()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lab"
        init(root)
        env = {"LAB_GPU_LEASES": str(Path(tmp) / "leases"), "PATH": "/nonexistent"}
        snap = gpuprobe.probe(env)
        lanes = gpus.Lanes(gpus=tuple(g.index for g in snap.gpus), source="NVML")
        sharing = gpushare.Sharing(Workspace(root), lanes, gpushare.Check(), env=env)
        sharing.look([])  # NVML initialised, the lease directory made, /proc/locks checked once
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            out = sharing.look([])
            free = [g for g in lanes.gpus if g not in out.blocked]
            lease = sharing.lease((free[-1],), Fraction(1)) if free else None
            if lease is not None:
                lease.write_info(sharing.info({"experiment": "e", "setting": "s", "id": 1}, os.getpid(), Fraction(1), lease.gpus))
                lease.close()
            times.append(time.perf_counter() - t)
        times.sort()
        idle = gpus.Lanes()
        calls = []
        gpuprobe.probe = lambda *a, **k: calls.append(1)  # a runner without GPUs must not ask at all
        from lab.runs.local.gpugate import GpuGate

        gate = GpuGate(Workspace(root), idle, lambda m: None)
        gate.outside([])
    return {"nvml": "real" if real else "stand-in", "gpus": len(lanes.gpus), "median_ms": times[len(times) // 2] * 1e3,
            "p95_ms": times[int(len(times) * 0.95)] * 1e3, "no_gpu_calls": len(calls)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "lab-bench-pycache"))
    unchecked = makespan(1, args.jobs, args.sleep, check=False)
    one = makespan(1, args.jobs, args.sleep)
    two = makespan(2, args.jobs, args.sleep)
    cost = check_cost()
    ratio = two["makespan_s"] / one["makespan_s"]
    ok = (ratio <= 1.10 and one["clashes"] == two["clashes"] == 0 and one["jobs"] == two["jobs"] == args.jobs
          and cost["median_ms"] <= 20 and cost["no_gpu_calls"] == 0)
    result = {"one_lab_unchecked": unchecked, "one_lab": one, "two_labs": two, "ratio": ratio, "check": cost, "ok": ok}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"one lab, {args.jobs} jobs of {args.sleep} s on 2 pretend GPUs, gpu_check: false: {unchecked['makespan_s']:.2f} s")
        print(f"one lab, same, checked through the stand-in nvidia-smi: {one['makespan_s']:.2f} s")
        print(f"two labs, {args.jobs // 2} jobs each, same machine: {two['makespan_s']:.2f} s "
              f"({ratio:.3f} x; goal <= 1.10); jobs that found their GPU in use: {one['clashes'] + two['clashes']}")
        print(f"GPU check per job start ({cost['nvml']} NVML, {cost['gpus']} GPUs): median {cost['median_ms']:.2f} ms, "
              f"p95 {cost['p95_ms']:.2f} ms (goal <= 20 ms); calls without GPUs: {cost['no_gpu_calls']}")
        print("bench_gpushare:", "ok" if ok else "NOT ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
