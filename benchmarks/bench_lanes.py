"""Parallel lanes: the makespan of a queue on four pretend GPUs against the ideal, and the runner's per-job cost.

Measured in the same run, on one lab of N settings whose program sleeps S seconds and notes its start, end and
CUDA_VISIBLE_DEVICES:
- the fixed cost F: `lab run` of one job that does nothing, from the command to its record (starting `lab run`
  and the runner, writing the record: paid once per queue, whatever the lanes);
- the baseline: `lab run EXP` with one lane (no GPUs: the sequential runner); its makespan minus the programs' own
  time and F, divided by N, is the runner's per-job overhead c (each program's Python start-up included);
- `LAB_GPUS=0,1,...` with L lanes: the makespan (from `lab run` until the last record says succeeded) against the
  ideal, total job time / L. Goal: makespan <= 1.10 x ideal + F + c x ceil(N / L) (each lane pays the per-job
  overhead once per job it runs);
- while running, every pair of jobs that overlapped in time saw different CUDA_VISIBLE_DEVICES, and at most L ran
  at once (checked; the script exits 1 if not).

Run: .venv/bin/python benchmarks/bench_lanes.py [--jobs 12] [--lanes 4] [--sleep 1.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROGRAM = """\
import time; t0 = time.time()
import json, os, sys
s = json.load(open(sys.argv[1]))
time.sleep(s["sleep"])
with open(os.path.join(os.environ["LAB_ROOT"], "times.jsonl"), "a") as f:
    f.write(json.dumps({"i": s["i"], "start": t0, "end": time.time(),
                        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\\n")
"""


def _bytecode_env() -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "lab-bench-pycache"))
    os.environ.pop("LAB_ROOT", None)


def make_lab(base: Path, jobs: int, sleep: float) -> Path:
    from lab.core.workspace import Workspace, init

    root = base / "lab"
    init(root)
    exp = Workspace(root).new_experiment("bench")
    report = exp.report_path.read_text().replace("command: \n", 'command: "{python} prog.py {settings}"\n', 1)
    exp.report_path.write_text(report)
    for i in range(1, jobs + 1):
        (exp.settings_dir / f"s{i}.json").write_text(json.dumps({"sleep": sleep, "i": i}))
    (root / "prog.py").write_text(PROGRAM)
    return root


def run_queue(jobs: int, sleep: float, gpus: str | None) -> dict:
    """`lab run bench` in a fresh lab, until every record says succeeded: makespan and what each job saw."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_lab(Path(tmp), jobs, sleep)
        env = dict(os.environ)
        env.pop("LAB_GPUS", None)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        if gpus is not None:
            env["LAB_GPUS"] = gpus
        runs = root / "experiments" / "bench" / "runs"
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "lab", "--root", str(root), "run", "bench"], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        deadline = start + 60 + jobs * sleep * 3
        while True:
            done = 0
            for i in range(1, jobs + 1):
                try:
                    done += json.loads((runs / f"s{i}.json").read_text()).get("state") in ("succeeded", "failed")
                except (OSError, ValueError):
                    pass
            if done == jobs:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench_lanes: the queue did not finish within {deadline - start:.0f} s")
            time.sleep(0.02)
        makespan = time.monotonic() - start
        seen = [json.loads(line) for line in (root / "times.jsonl").read_text().splitlines()]
        lock = root / ".lab" / "runner.lock"  # let the runner exit before its directory goes
        wait = time.monotonic() + 10
        while lock.exists() and lock.read_text().strip() and time.monotonic() < wait:
            time.sleep(0.02)
    return {"makespan_s": makespan, "jobs": seen}


def overlaps(seen: list[dict]) -> tuple[int, list[tuple[int, int]]]:
    """The most jobs that ran at once, and the pairs that overlapped on the same CUDA_VISIBLE_DEVICES."""
    points = sorted([(j["start"], 1) for j in seen] + [(j["end"], -1) for j in seen], key=lambda p: (p[0], p[1]))
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    clashes = []
    for a in seen:
        for b in seen:
            if a["i"] < b["i"] and a["start"] < b["end"] and b["start"] < a["end"] and a["gpus"] == b["gpus"]:
                clashes.append((a["i"], b["i"]))
    return most, clashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _bytecode_env()

    single = run_queue(1, 0.0, None)
    fixed = single["makespan_s"] - sum(j["end"] - j["start"] for j in single["jobs"])
    sequential = run_queue(args.jobs, args.sleep, None)
    seq_work = sum(j["end"] - j["start"] for j in sequential["jobs"])
    overhead = max(0.0, (sequential["makespan_s"] - seq_work - fixed) / args.jobs)
    lanes = run_queue(args.jobs, args.sleep, ",".join(str(i) for i in range(args.lanes)))
    work = sum(j["end"] - j["start"] for j in lanes["jobs"])
    ideal = work / args.lanes
    most, clashes = overlaps(lanes["jobs"])
    goal = 1.10 * ideal + fixed + overhead * math.ceil(args.jobs / args.lanes)
    result = {
        "jobs": args.jobs, "lanes": args.lanes, "sleep_s": args.sleep,
        "fixed_cost_s": round(fixed, 3), "sequential_makespan_s": round(sequential["makespan_s"], 3),
        "per_job_overhead_s": round(overhead, 3),
        "lanes_makespan_s": round(lanes["makespan_s"], 3), "ideal_s": round(ideal, 3),
        "ratio_to_ideal": round(lanes["makespan_s"] / ideal, 3),
        "ratio_to_ideal_after_fixed_cost": round((lanes["makespan_s"] - fixed) / ideal, 3), "goal_s": round(goal, 3),
        "speedup_over_sequential": round(sequential["makespan_s"] / lanes["makespan_s"], 2),
        "most_at_once": most, "same_gpu_overlaps": clashes,
        "gpus_seen": sorted({j["gpus"] or "" for j in lanes["jobs"]}),
    }
    ok = most == args.lanes and not clashes and lanes["makespan_s"] <= goal
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"fixed cost (lab run to the record of one empty job): {fixed:.2f} s")
        print(f"sequential runner: {result['sequential_makespan_s']:.2f} s for {args.jobs} jobs of {args.sleep:g} s "
              f"(per-job overhead {overhead * 1000:.0f} ms)")
        print(f"{args.lanes} lanes (LAB_GPUS): {result['lanes_makespan_s']:.2f} s; ideal {ideal:.2f} s; "
              f"ratio {result['ratio_to_ideal']:.3f} ({result['ratio_to_ideal_after_fixed_cost']:.3f} without the fixed "
              f"cost); goal <= {goal:.2f} s: {'met' if lanes['makespan_s'] <= goal else 'NOT met'}")
        print(f"at most {most} jobs at once; CUDA_VISIBLE_DEVICES seen: {', '.join(result['gpus_seen'])}; "
              f"same-GPU overlaps: {clashes or 'none'}")
    if most <= 1:
        print("bench_lanes: the jobs ran one at a time: the runner does not run lanes", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
