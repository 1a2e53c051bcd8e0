"""The runner's overhead against a plain shell loop running the same programs, and `lab status` on 10,000 runs.

Measured in the same run:
- a shell loop `for s in ...; do python prog.py s.json; done` (the baseline) and `lab run EXP` on the same N
  settings: total time from the start until the last job ended and was recorded; the runner's added time per
  job is (runner - shell) / N (goal: at most 50 ms);
- the gap between one job's end and the next one's start, as the programs themselves see it (the time of their
  first and last statements), median over the queue, for the runner and for the shell loop (goal: at most 50 ms);
- `lab status --json` and `lab status` with 10,000 past runs (goal: under 200 ms), against `python -c pass`.

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_runner.py [--jobs 20] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
out = os.environ.get("BENCH_TIMES") or os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "times.txt")
s = json.load(open(sys.argv[1]))
time.sleep(s.get("sleep", 0))
with open(out, "a") as f:
    f.write(f"{t0} {time.time()}\\n")
"""


def lab_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lab", "--root", str(root), *args]


def make_lab(base: Path, jobs: int, sleep: float) -> Path:
    from lab.workspace import init, Workspace

    root = base / "lab"
    init(root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    ws = Workspace(root)
    exp = ws.new_experiment("bench")
    report = exp.report_path.read_text().replace("command: \n", 'command: "{python} prog.py {settings}"\n', 1)
    exp.report_path.write_text(report)
    for i in range(1, jobs + 1):
        (exp.settings_dir / f"s{i}.json").write_text(json.dumps({"sleep": sleep, "i": i}))
    (root / "prog.py").write_text(PROGRAM)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"], check=True)
    return root


def read_times(path: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]


def gaps(times: list[tuple[float, float]]) -> list[float]:
    return [times[i + 1][0] - times[i][1] for i in range(len(times) - 1)]


def bench_queue(jobs: int, sleep: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_lab(Path(tmp), jobs, sleep)
        settings = sorted((root / "experiments/bench/settings").glob("*.json"), key=lambda p: int(p.stem[1:]))
        times = root / "times.txt"
        # Baseline: the same programs, one after another, from a plain shell loop (python startup included).
        script = "; ".join(f"{sys.executable} prog.py {s}" for s in settings)
        start = time.monotonic()
        subprocess.run(["sh", "-c", script], cwd=root, check=True)
        shell_total = time.monotonic() - start
        shell_gaps = gaps(read_times(times))
        times.unlink()

        runs = root / "experiments/bench/runs"
        last = runs / f"{settings[-1].stem}.json"
        start = time.monotonic()
        subprocess.run(lab_cmd(root, "run", "bench"), check=True, stderr=subprocess.DEVNULL)
        returned = time.monotonic() - start
        while True:
            try:
                if json.loads(last.read_text()).get("state") == "succeeded":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        runner_total = time.monotonic() - start
        runner_times = read_times(times)
        assert len(runner_times) == jobs
        runner_gaps = gaps(runner_times)
        # Let the runner exit before the directory goes.
        lock = root / ".lab" / "runner.lock"
        deadline = time.monotonic() + 10
        while lock.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {
        "jobs": jobs,
        "shell_total_s": shell_total,
        "runner_total_s": runner_total,
        "lab_run_returned_s": returned,
        "added_per_job_ms": (runner_total - shell_total) / jobs * 1000,
        "gap_median_ms": statistics.median(runner_gaps) * 1000,
        "gap_max_ms": max(runner_gaps) * 1000,
        "shell_gap_median_ms": statistics.median(shell_gaps) * 1000,
    }


def make_records(root: Path, runs: int, per_exp: int = 100) -> None:
    """`runs` realistic records (settings, argv, provenance with a git diff, history) in runs/per_exp experiments."""
    from lab.fsutil import natural_key  # noqa: F401  (imports lab from this checkout)

    diff = "diff --git a/train.py b/train.py\n" + "+    x = compute(y)  # a change\n" * 60
    for e in range(runs // per_exp):
        exp_runs = root / "experiments" / f"exp{e}" / "runs"
        exp_runs.mkdir(parents=True)
        for s in range(per_exp):
            rec = {
                "experiment": f"exp{e}", "setting": f"s{s}", "state": "succeeded" if s % 7 else "failed",
                "attempt": 1, "executor": "local", "exit_code": 0 if s % 7 else 1, "signal": None,
                "started_at": "2026-11-27T03:00:00.000+00:00", "ended_at": "2026-11-27T03:10:00.000+00:00",
                "duration_s": 600.0, "command": "{python} -m lab.train {settings}",
                "argv": [sys.executable, "-m", "lab.train", f"experiments/exp{e}/runs/s{s}.settings.json"],
                "settings": {"learning_rate": 1e-4 * (s + 1), "num_train_epochs": 3, "model": {"name": "minilm", "layers": 6}},
                "settings_hash": "ab" * 32, "host": "node1", "python": "3.11.9",
                "packages": {"lab": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"},
                "git": {"commit": "f" * 40, "dirty": True, "diff": diff},
                "metrics": {"step": 1000, "loss": 0.1234, "eval_loss": 0.2345, "eval_accuracy": 0.9},
                "history": [],
            }
            (exp_runs / f"s{s}.json").write_text(json.dumps(rec, indent=2))


def timed(argv: list[str], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.monotonic() - start)
    return samples


def bench_status(runs: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        from lab.workspace import init

        root = Path(tmp) / "lab"
        init(root)
        make_records(root, runs)
        timed([sys.executable, "-c", "pass"], 2)
        base = statistics.median(timed([sys.executable, "-c", "pass"], repeat))
        cold = timed(lab_cmd(root, "status", "--json"), 1)[0]  # builds the summary cache
        warm_json = statistics.median(timed(lab_cmd(root, "status", "--json"), repeat))
        warm_text = statistics.median(timed(lab_cmd(root, "status"), repeat))
        one_exp = statistics.median(timed(lab_cmd(root, "status", "exp3", "--json"), repeat))
        # One record changed: only it is read again.
        rec_path = root / "experiments/exp5/runs/s5.json"
        rec_path.write_text(rec_path.read_text().replace('"succeeded"', '"failed"', 1))
        changed = timed(lab_cmd(root, "status", "--json"), 1)[0]
        shutil.rmtree(root / ".lab", ignore_errors=True)
    return {"runs": runs, "python_ms": base * 1000, "cold_json_ms": cold * 1000, "json_ms": warm_json * 1000,
            "text_ms": warm_text * 1000, "one_experiment_ms": one_exp * 1000, "after_one_change_ms": changed * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.05, help="each program's own work, in seconds")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    q = bench_queue(args.jobs, args.sleep)
    print(f"queue of {q['jobs']} jobs ({args.sleep * 1000:.0f} ms of work each), lab root a git repository:")
    print(f"  shell loop total:        {q['shell_total_s'] * 1000:8.1f} ms")
    print(f"  lab run total:           {q['runner_total_s'] * 1000:8.1f} ms   (lab run itself returned after {q['lab_run_returned_s'] * 1000:.0f} ms)")
    print(f"  added time per job:      {q['added_per_job_ms']:8.1f} ms   (goal <= 50 ms)")
    print(f"  gap end->next start:     {q['gap_median_ms']:8.1f} ms median, {q['gap_max_ms']:.1f} ms max   (goal <= 50 ms median)")
    print(f"  shell loop gap:          {q['shell_gap_median_ms']:8.1f} ms median (python start-up alone)")
    print(f"  gap ratio runner/shell:  {q['gap_median_ms'] / q['shell_gap_median_ms']:8.2f}x")
    s = bench_status(args.runs, args.repeat)
    print(f"lab status with {s['runs']} past runs (median of {args.repeat}):")
    print(f"  python -c pass:          {s['python_ms']:8.1f} ms")
    print(f"  status --json, cold:     {s['cold_json_ms']:8.1f} ms   (first call builds .lab/status-cache.json)")
    print(f"  status --json:           {s['json_ms']:8.1f} ms   (goal < 200 ms; {s['json_ms'] / s['python_ms']:.1f}x python start-up)")
    print(f"  status (table):          {s['text_ms']:8.1f} ms")
    print(f"  status EXP --json:       {s['one_experiment_ms']:8.1f} ms")
    print(f"  after one record changed:{s['after_one_change_ms']:8.1f} ms")


if __name__ == "__main__":
    main()
