"""Shared test fixtures: a fresh lab under tmp_path and a way to run the real `lab` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded real answers, with their provenance in its README


def wait_for(predicate, timeout=60.0, what="condition", poll=0.05):
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def lab_processes(root: Path) -> list[int]:
    """Every live process that belongs to the lab at `root`: the runner (its --root), `lab` commands, supervisors
    and jobs (LAB_ROOT in their environment)."""
    found = []
    marker_env = f"LAB_ROOT={root}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(root).encode() in cmdline or marker_env in environ.split(b"\0")):
            found.append(int(entry))
    return found


def kill_lab_processes(root: Path) -> None:
    """SIGKILL every process of the lab at `root` (a test's teardown: nothing outlives it)."""
    import signal

    for pid in lab_processes(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class LabCLI:
    """Runs `python -m lab` as a real process against one lab root."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, *args, check=None, env=None, input=None, timeout=120, cwd=None) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        full_env.pop("LAB_ROOT", None)
        full_env.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-m", "lab", "--root", str(self.root), *map(str, args)],
            capture_output=True, text=True, env=full_env, input=input, timeout=timeout, cwd=cwd or self.root,
        )
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        return proc

    def json(self, *args, **kwargs):
        proc = self(*args, "--json", check=0, **kwargs)
        return json.loads(proc.stdout)


@pytest.fixture
def lab_root(tmp_path):
    """A new, empty lab (its background embedder, if a search started one, stopped at teardown)."""
    from lab.core.workspace import init

    root = tmp_path / "lab"
    init(root)
    yield root
    from lab.search import embed

    embed.stop(root)  # a search may have started the lab's background embedder


@pytest.fixture
def lab(lab_root) -> LabCLI:
    return LabCLI(lab_root)


@pytest.fixture
def server():
    """A loopback HTTP server of the recorded arXiv answers and feeds (tests/fixture_server.py), stopped at teardown."""
    from fixture_server import FixtureServer

    s = FixtureServer()
    yield s
    s.stop()


def write_settings(root: Path, exp: str, settings: dict[str, object], command: str | None = None) -> Path:
    """Make experiment EXP (if needed) with the given settings files (name with suffix -> dict or raw text)."""
    from lab.core.workspace import Workspace

    ws = Workspace(root)
    exp_dir = ws.experiments_dir / exp
    if not exp_dir.exists():
        ws.new_experiment(exp)
    if command is not None:
        report = exp_dir / "report.md"
        text = report.read_text()
        report.write_text(text.replace("command: \n", f"command: {json.dumps(command)}\n", 1))
    for name, content in settings.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (exp_dir / "settings" / name).write_text(text)
    return exp_dir


@pytest.fixture
def embedded(lab, lab_root):
    """The three reports of test_semantic, every document embedded with the real model."""
    pytest.importorskip("numpy")
    from test_semantic import OTHER_REPORT, RAMP_REPORT, WARMUP_REPORT
    from test_index import write

    write(lab_root / "experiments" / "warm" / "report.md", WARMUP_REPORT)
    write(lab_root / "experiments" / "ramp" / "report.md", RAMP_REPORT)
    write(lab_root / "experiments" / "tok" / "report.md", OTHER_REPORT)
    lab("reindex", check=0)
    return lab_root
