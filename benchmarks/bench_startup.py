"""How long `lab --help` takes to start, against `python -c pass` in the same run.

Goal: the CLI imports none of torch, transformers, mkdocs, arxiv, so its start-up stays close to Python's own.
Run: .venv/bin/python benchmarks/bench_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time


# As an installed lab runs: with its compiled bytecode cached (some environments set PYTHONDONTWRITEBYTECODE,
# which would recompile lab's modules on every start).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], repeat: int) -> float:
    """Median wall time of `argv` over `repeat` runs, in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        samples.append(time.monotonic() - start)
    return statistics.median(samples)


def main(repeat: int = 20) -> None:
    timed([sys.executable, "-c", "pass"], 3)  # warm the file cache
    timed([sys.executable, "-m", "lab", "--help"], 2)  # and lab's bytecode cache
    base = timed([sys.executable, "-c", "pass"], repeat)
    lab = timed([sys.executable, "-m", "lab", "--help"], repeat)
    print(f"python -c pass:  {base * 1000:7.1f} ms (median of {repeat})")
    print(f"lab --help:      {lab * 1000:7.1f} ms (median of {repeat})")
    print(f"ratio:           {lab / base:7.2f}x")


if __name__ == "__main__":
    main()
