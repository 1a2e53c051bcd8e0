"""The Slurm executor's overhead against plain `sbatch` running the same programs, on the local cluster.

Measured in the same run, for N settings run one after another:
- baseline: a chain of plain `sbatch --dependency=afterany:PREV --wrap "python prog.py sN.json"` jobs;
- lab: `lab run EXP --on slurm` (held submission, queued records, release; on the node `python -m lab.slurmjob`,
  which writes the log, metrics and records).
Reported: the time to submit (until the command returns), the total time until the last program ended, and the
median gap between one program's end and the next one's start (as the programs see it), with lab/baseline ratios.
Also `lab status --json` with those N runs active or finished, against `python -c pass`.

Needs a cluster (`sudo bash scripts/slurm/up.sh`). Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_slurm.py [--jobs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
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
time.sleep(s.get("sleep", 0))
with open(os.environ["BENCH_TIMES"], "a") as f:
    f.write(f"{t0} {time.time()}\\n")
"""


def env_with(times: Path) -> dict:
    env = dict(os.environ, BENCH_TIMES=str(times), PYTHONPATH=str(REPO))
    env.pop("LAB_ROOT", None)
    return env


def wait_lines(path: Path, n: int, timeout: float = 600) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            rows = [tuple(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]
            if len(rows) >= n:
                return sorted(rows)
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {n} programs to end ({path})")


def gaps(rows) -> list[float]:
    return [b[0] - a[1] for a, b in zip(rows, rows[1:])]


def bench(jobs: int, sleep: float) -> dict:
    from lab.core.workspace import Workspace, init

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp) / "lab"
        init(root)
        (root / "prog.py").write_text(PROGRAM)
        ws = Workspace(root)
        exp = ws.new_experiment("bench")
        report = exp.report_path
        report.write_text(report.read_text().replace("command: \n", 'command: "{python} prog.py {settings}"\n', 1))
        for i in range(jobs):
            (exp.settings_dir / f"s{i}.json").write_text(json.dumps({"sleep": sleep, "i": i}))

        # baseline: plain sbatch chain
        times = Path(tmp) / "sbatch-times.txt"
        out = Path(tmp) / "out"
        out.mkdir()
        t0 = time.monotonic()
        prev = None
        for i in range(jobs):
            cmd = f"{shlex.quote(sys.executable)} prog.py experiments/bench/settings/s{i}.json"
            args = ["sbatch", "--parsable", f"--chdir={root}", f"--output={out}/%j.out", "--wrap", cmd]
            if prev:
                args.insert(2, f"--dependency=afterany:{prev}")
            prev = subprocess.run(args, capture_output=True, text=True, check=True, env=env_with(times)).stdout.strip()
        base_submit = time.monotonic() - t0
        base_rows = wait_lines(times, jobs)
        base_total = time.monotonic() - t0

        # lab run --on slurm
        times = Path(tmp) / "lab-times.txt"
        lab = [sys.executable, "-m", "lab", "--root", str(root)]
        t0 = time.monotonic()
        subprocess.run([*lab, "run", "bench", "--on", "slurm"], capture_output=True, text=True, check=True, env=env_with(times))
        lab_submit = time.monotonic() - t0
        lab_rows = wait_lines(times, jobs)
        while any(r["state"] in ("queued", "running") for r in json.loads(subprocess.run(
                [*lab, "status", "--json"], capture_output=True, text=True, check=True, env=env_with(times)).stdout)):
            time.sleep(0.1)
        lab_total = time.monotonic() - t0

        pass_s = statistics.median(_timed([sys.executable, "-c", "pass"], 5))
        status_s = statistics.median(_timed([*lab, "status", "--json"], 5))
    return {
        "jobs": jobs,
        "base_submit_ms": base_submit * 1000, "lab_submit_ms": lab_submit * 1000,
        "base_total_s": base_total, "lab_total_s": lab_total,
        "base_gap_ms": statistics.median(gaps(base_rows)) * 1000 if jobs > 1 else 0.0,
        "lab_gap_ms": statistics.median(gaps(lab_rows)) * 1000 if jobs > 1 else 0.0,
        "python_ms": pass_s * 1000, "status_ms": status_s * 1000,
    }


def _timed(argv, repeat):
    out = []
    for _ in range(repeat):
        t = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True)
        out.append(time.monotonic() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.05, help="each program's own work, in seconds")
    args = parser.parse_args()
    from lab.runs.slurm.cluster import available

    reason = available()
    if reason:  # `make bench` runs every benchmark: without a cluster this one says so and passes
        print(f"bench_slurm: skipped, no Slurm cluster: {reason}", file=sys.stderr)
        return
    r = bench(args.jobs, args.sleep)
    print(f"{r['jobs']} settings one after another on the local Slurm cluster ({args.sleep * 1000:.0f} ms of work each):")
    print(f"  submit, plain sbatch chain:   {r['base_submit_ms']:8.1f} ms")
    print(f"  submit, lab run --on slurm:   {r['lab_submit_ms']:8.1f} ms   ({(r['lab_submit_ms'] - r['base_submit_ms']) / r['jobs']:.1f} ms more per job)")
    print(f"  total, plain sbatch chain:    {r['base_total_s']:8.2f} s")
    print(f"  total, lab:                   {r['lab_total_s']:8.2f} s   ({r['lab_total_s'] / r['base_total_s']:.2f}x)")
    print(f"  gap end->next start, sbatch:  {r['base_gap_ms']:8.1f} ms median")
    print(f"  gap end->next start, lab:     {r['lab_gap_ms']:8.1f} ms median   ({r['lab_gap_ms'] / max(r['base_gap_ms'], 1e-9):.2f}x)")
    print(f"  lab status --json:            {r['status_ms']:8.1f} ms   (python -c pass: {r['python_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
