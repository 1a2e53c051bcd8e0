"""The runner's overhead against a plain shell loop running the same programs, and `lab status` on 10,000 runs.

Measured in the same run:
- a shell loop `python prog.py s1.json; python prog.py s2.json; ...` (the baseline) and `lab run EXP` on the same
  settings: total time from the start until the last job ended and was recorded. Both are run for two queue
  lengths; the runner's added time per job is the slope of (lab - shell) between them (goal: at most 50 ms),
  and what is left is the fixed cost of starting `lab run` and the runner once;
- the gap between one job's end and the next one's start, as the programs themselves see it (the time of their
  first and last statements), median over the queues, for the runner and for the shell loop; both include the
  programs' own Python start-up, so the runner's share is the difference (goal: at most 50 ms);
- `lab status --json` and `lab status` with 10,000 past runs (goal: under 200 ms), against `python -c pass`.

Run: .venv/bin/python benchmarks/bench_runner.py [--jobs 10 40] [--runs 10000]
Times are wall clock; for `lab status` also CPU time, which a busy machine disturbs less.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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


def _bytecode_env() -> None:
    """Let the commands measured here use cached bytecode, as an installed lab does, even where the shell
    says PYTHONDONTWRITEBYTECODE (the cache goes to a temporary directory, not into the checkout)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "lab-bench-pycache"))
    os.environ.pop("LAB_ROOT", None)


def lab_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lab", "--root", str(root), *args]


def make_lab(base: Path, jobs: int, sleep: float) -> Path:
    from lab.core.workspace import init, Workspace

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
    program_files(root)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"], check=True)
    return root


def program_files(root: Path, n: int = 12) -> dict[str, str]:
    """A lab's own program beside the experiments (`src/`, as a research repository has): {path: sha256}. Every run's
    code (lab.runs.code) includes them."""
    code = {}
    (root / "src").mkdir(exist_ok=True)
    for i in range(n):
        path = root / "src" / f"module{i}.py"
        path.write_text(f"# part {i} of the model and data code\n" + "def f(x):\n    return x * 2\n" * 200)
        code[f"src/module{i}.py"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return code


def read_times(path: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]


def gaps(times: list[tuple[float, float]]) -> list[float]:
    return [times[i + 1][0] - times[i][1] for i in range(len(times) - 1)]


def bench_queue(jobs: int, sleep: float) -> dict:
    """Shell loop and `lab run` on the same `jobs` settings, in one fresh lab."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_lab(Path(tmp), jobs, sleep)
        settings = sorted((root / "experiments/bench/settings").glob("*.json"), key=lambda p: int(p.stem[1:]))
        times = root / "times.txt"
        # Baseline: the same programs, one after another, from a plain shell loop (python start-up included).
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
        seen = None
        while True:  # until the last job ended and its record says so (polling gently: 2 cores are shared)
            try:
                stamp = last.stat().st_mtime_ns
                if stamp != seen:
                    seen = stamp
                    if json.loads(last.read_text()).get("state") == "succeeded":
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)
        runner_total = time.monotonic() - start
        runner_times = read_times(times)
        assert len(runner_times) == jobs
        runner_gaps = gaps(runner_times)
        lock = root / ".lab" / "runner.lock"  # let the runner exit before its directory goes
        deadline = time.monotonic() + 10
        while lock.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"jobs": jobs, "shell_total_s": shell_total, "runner_total_s": runner_total, "lab_run_returned_s": returned,
            "runner_gaps": runner_gaps, "shell_gaps": shell_gaps}


def make_records(root: Path, runs: int, per_exp: int = 100) -> None:
    """`runs` realistic records (settings, argv, provenance with a git diff, history) in runs/per_exp experiments."""
    from lab.core.fsutil import natural_key  # noqa: F401  (imports lab from this checkout)

    diff = "diff --git a/train.py b/train.py\n" + "+    x = compute(y)  # a change\n" * 60
    code = program_files(root)  # every run's code: the lab's program files (lab.runs.code)
    for e in range(runs // per_exp):
        exp_runs = root / "experiments" / f"exp{e}" / "runs"
        exp_runs.mkdir(parents=True)
        data = root / "experiments" / f"exp{e}" / "data"
        data.mkdir()
        inputs = {}
        for split in ("train", "validation", "test"):  # every run names its experiment's data (issue 18: inputs)
            (data / f"{split}.jsonl").write_text(f'{{"text": "{split}", "label": 1}}\n' * 100)
            inputs[f"experiments/exp{e}/data/{split}.jsonl"] = hashlib.sha256((data / f"{split}.jsonl").read_bytes()).hexdigest()
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
                "inputs": inputs, "code": code, "environment": "0123456789abcdef",
                "metrics": {"step": 1000, "loss": 0.1234, "eval_loss": 0.2345, "eval_accuracy": 0.9},
                "history": [],
            }
            (exp_runs / f"s{s}.json").write_text(json.dumps(rec, indent=2))


def timed(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system, of the process) of `argv`, in seconds."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        start = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.monotonic() - start)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
    return statistics.median(walls), statistics.median(cpus)


def bench_status(runs: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        from lab.core.workspace import init

        root = Path(tmp) / "lab"
        init(root)
        make_records(root, runs)
        # File times must be settled (older than 2 s) for the cache to trust a runs/ directory's mtime.
        old = time.time() - 60
        for d in (root / "experiments").iterdir():
            os.utime(d / "runs", (old, old))
        timed([sys.executable, "-c", "pass"], 2)
        result = {"runs": runs}
        result["python"] = timed([sys.executable, "-c", "pass"], repeat)
        result["help"] = timed(lab_cmd(root, "--help"), repeat)
        result["cold"] = timed(lab_cmd(root, "status", "--json"), 1)  # builds .lab/status-cache.tsv
        result["json"] = timed(lab_cmd(root, "status", "--json"), repeat)
        result["text"] = timed(lab_cmd(root, "status"), repeat)
        result["one_exp"] = timed(lab_cmd(root, "status", "exp3", "--json"), repeat)
        # One record replaced (as lab writes them): only its experiment is looked at again, only it re-read.
        from lab.core.fsutil import atomic_write_text

        rec_path = root / "experiments/exp5/runs/s5.json"
        atomic_write_text(rec_path, rec_path.read_text().replace('"succeeded"', '"failed"', 1))
        result["changed"] = timed(lab_cmd(root, "status", "--json"), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[10, 40], metavar=("SMALL", "LARGE"),
                        help="two queue lengths: the added time per job is the slope between them")
    parser.add_argument("--sleep", type=float, default=0.05, help="each program's own work, in seconds")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _bytecode_env()
    subprocess.run([sys.executable, "-m", "lab", "--help"], stdout=subprocess.DEVNULL, check=True)  # fill the cache

    small, large = (bench_queue(n, args.sleep) for n in args.jobs)
    extra_small = small["runner_total_s"] - small["shell_total_s"]
    extra_large = large["runner_total_s"] - large["shell_total_s"]
    per_job = (extra_large - extra_small) / (large["jobs"] - small["jobs"])
    fixed = extra_small - per_job * small["jobs"]
    gaps_runner = small["runner_gaps"] + large["runner_gaps"]
    gaps_shell = small["shell_gaps"] + large["shell_gaps"]
    g_runner, g_shell = statistics.median(gaps_runner), statistics.median(gaps_shell)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (others' work slows every figure; the ratios matter)")
    print(f"queues of {small['jobs']} and {large['jobs']} python programs ({args.sleep * 1000:.0f} ms of work each), lab root a git repository:")
    for q in (small, large):
        print(f"  {q['jobs']:3d} jobs: shell loop {q['shell_total_s'] * 1000:7.0f} ms, lab run {q['runner_total_s'] * 1000:7.0f} ms"
              f" (lab run returned after {q['lab_run_returned_s'] * 1000:.0f} ms); (lab - shell) / jobs = "
              f"{(q['runner_total_s'] - q['shell_total_s']) / q['jobs'] * 1000:.1f} ms")
    print(f"  added time per job (slope):    {per_job * 1000:7.1f} ms   (goal <= 50 ms)")
    print(f"  fixed cost (lab run + runner start-up): {fixed * 1000:.0f} ms once per queue")
    print(f"  gap end -> next start, median: {g_runner * 1000:7.1f} ms with the runner, {g_shell * 1000:.1f} ms in the shell loop"
          f" (the programs' own python start-up is in both)")
    print(f"  the runner's share of the gap: {(g_runner - g_shell) * 1000:7.1f} ms median   (goal <= 50 ms); ratio {g_runner / g_shell:.2f}x")
    s = bench_status(args.runs, args.repeat)
    print(f"lab status with {s['runs']} past runs (wall / CPU, median of {args.repeat}):")
    for key, label in (("python", "python -c pass"), ("help", "lab --help"), ("cold", "status --json, no cache yet"),
                       ("json", "status --json"), ("text", "status (table)"), ("one_exp", "status EXP --json"),
                       ("changed", "status --json, 1 record changed")):
        wall, cpu = s[key]
        note = "   (goal < 200 ms)" if key in ("json", "text") else ""
        print(f"  {label:32s} {wall * 1000:7.1f} ms / {cpu * 1000:6.1f} ms{note}")
    print(f"  status --json over lab --help:   {s['json'][0] / s['help'][0]:.2f}x wall, {s['json'][1] / s['help'][1]:.2f}x CPU")


if __name__ == "__main__":
    main()
