"""`lab run` then at once `lab stop` (or `lab stop --now`), N times: what stop says must be what the runner did.

For each pair: `lab run e/s --rerun`, then `lab stop [--now] --json` straight after; once the runner has settled,
the setting's record must match stop's words: "stays queued" -> still queued and never started; "will finish" ->
it ran to its end (succeeded); "cancelled" -> recorded cancelled; "ended on its own" -> recorded as stop said;
nothing running and nothing queued -> it had already run to its end. Prints each mismatch and the count; exit 1 if any.
Run: .venv/bin/python benchmarks/bench_stop_race.py [--pairs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROGRAM = "import time, os\nopen(os.path.join(os.environ['LAB_ROOT'], 'starts.txt'), 'a').write('s\\n')\ntime.sleep(0.3)\n"


def make_lab(base: Path) -> Path:
    from lab.core.workspace import init

    root = base / "lab"
    init(root)
    (root / "prog.py").write_text(PROGRAM)
    exp = root / "experiments" / "e"
    (exp / "settings").mkdir(parents=True)
    (exp / "settings" / "s.json").write_text("{}")
    (exp / "report.md").write_text('---\ntitle: e\ncommand: "{python} prog.py {settings}"\n---\n')
    return root


def lab(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LAB_ROOT"}
    return subprocess.run([sys.executable, "-m", "lab", "--root", str(root), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def settle(root: Path, timeout: float = 60.0) -> dict:
    """Wait until no runner lives and the record is not `running`; return the record."""
    from lab.runs.local.lock import runner_alive

    deadline = time.monotonic() + timeout
    path = root / "experiments" / "e" / "runs" / "s.json"
    while time.monotonic() < deadline:
        rec = json.loads(path.read_text())
        if rec["state"] != "running" and not runner_alive(root / ".lab"):
            return rec
        time.sleep(0.05)
    raise TimeoutError("the runner did not settle")


def starts(root: Path) -> int:
    path = root / "starts.txt"
    return len(path.read_text().split()) if path.exists() else 0


def one_pair(root: Path, now: bool) -> str | None:
    """None when stop's words matched what happened, else what differed."""
    before = starts(root)
    queued = lab(root, "run", "e/s", "--rerun")
    if queued.returncode != 0:
        return f"lab run failed: {queued.stderr.strip()}"
    stop = lab(root, "stop", "--json", *(["--now", "--grace", "2"] if now else []))
    said = json.loads(stop.stdout)
    rec = settle(root)
    ran = starts(root) - before
    if said["cancelled"]:
        ok, words = rec["state"] == "cancelled", "cancelled"
    elif said.get("ended"):
        ok, words = rec["state"] == said["ended"].get("e/s") and ran == 1, f"ended ({said['ended']})"
    elif said["running"]:
        ok, words = rec["state"] == "succeeded" and ran == 1, "will finish"
    elif said["queued"]:
        ok, words = said["queued"] == 1 and rec["state"] == "queued" and ran == 0, "stays queued"
    else:  # it had already run to its end when stop looked
        ok, words = rec["state"] == "succeeded" and ran == 1, "nothing running, nothing queued"
    if rec["state"] == "queued":
        lab(root, "cancel", "e/s")
    return None if ok else f"stop{' --now' if now else ''} said {words!r} ({said}); the record says {rec['state']}, started {ran}x"


def run_pairs(root: Path, pairs: int) -> list[str]:
    return [m for i in range(pairs) if (m := one_pair(root, now=bool(i % 2)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_lab(Path(tmp))
        start = time.monotonic()
        try:
            mismatches = run_pairs(root, args.pairs)
        finally:
            lab(root, "stop", "--now", "--grace", "1")
        for m in mismatches:
            print(m)
        print(f"{args.pairs} pairs of lab run; lab stop (every other one --now) in {time.monotonic() - start:.0f} s: "
              f"{len(mismatches)} mismatches")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
