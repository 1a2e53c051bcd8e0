"""How long `lab --help`, `lab search` and `lab status` take to start, against `python -c pass` in the same run.

Goal: the CLI imports none of torch, transformers, mkdocs, arxiv, so its start-up stays close to Python's own;
`lab search` and `lab status` take the click-free fast path (lab/cli/fast.py) and stay closer still (a small lab,
its index built, nothing changed: the search and the status of what a user runs again and again).
Run: .venv/bin/python benchmarks/bench_startup.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As an installed lab runs: with its compiled bytecode cached (some environments set PYTHONDONTWRITEBYTECODE,
# which would recompile lab's modules on every start).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of `argv` over `repeat` runs, in seconds. On a shared
    machine the CPU time varies far less with the load than the wall time."""
    wall, cpu = [], []
    for _ in range(repeat):
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall.append(time.monotonic() - start)
        cpu.append(usage.ru_utime + usage.ru_stime)
        assert os.waitstatus_to_exitcode(status) == 0, argv
    return statistics.median(wall), statistics.median(cpu)


def small_lab(root: Path) -> None:
    """A lab with a few experiments, settings and notes, its index built."""
    subprocess.run([sys.executable, "-m", "lab", "init", str(root)], check=True, capture_output=True, env=ENV)
    for e in range(5):
        settings = root / "experiments" / f"exp{e}" / "settings"
        settings.mkdir(parents=True)
        (settings.parent / "report.md").write_text(f"---\ntitle: Experiment {e}\n---\n\n# Warmup study {e}\n")
        for s in range(4):
            (settings / f"s{s}.json").write_text(json.dumps({"learning_rate": 1e-5 * (s + 1), "warmup_steps": 100 * s}))
    for p in range(20):
        (root / "papers" / f"p{p}.md").write_text(f"---\ntitle: Paper {p}\n---\n\nOn learning rate warmup, part {p}.\n")
    subprocess.run([sys.executable, "-m", "lab", "--root", str(root), "search", "warmup"], check=True,
                   capture_output=True, env=ENV)


def main(repeat: int = 20) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lab"
        small_lab(root)
        commands = {
            "lab --help": [py, "-m", "lab", "--help"],
            "lab search warmup": [py, "-m", "lab", "--root", str(root), "search", "warmup"],
            "lab status": [py, "-m", "lab", "--root", str(root), "status"],
        }
        timed([py, "-c", "pass"], 3)  # warm the file cache
        for argv in commands.values():
            timed(argv, 2)  # and lab's bytecode cache
        base, base_cpu = timed([py, "-c", "pass"], repeat)
        print(f"{'(median of ' + str(repeat) + ')':<20} {'wall':>9} {'ratio':>6}  {'CPU':>9} {'ratio':>6}")
        print(f"{'python -c pass':<20} {base * 1000:6.1f} ms {1:5.2f}x  {base_cpu * 1000:6.1f} ms {1:5.2f}x")
        for name, argv in commands.items():
            wall, cpu = timed(argv, repeat)
            print(f"{name:<20} {wall * 1000:6.1f} ms {wall / base:5.2f}x  {cpu * 1000:6.1f} ms {cpu / base_cpu:5.2f}x")


if __name__ == "__main__":
    main()
