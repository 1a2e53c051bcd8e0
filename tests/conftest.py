"""The fixtures every wing shares: a fresh lab under tmp_path, a way to run the `lab` command against it, the loopback
server of recorded answers, and an embedded lab. Shared helpers (functions, texts) are in helpers.py."""

from __future__ import annotations

import pytest

# Test modules import these from helpers; conftest re-exports them for test files written before helpers.py existed.
from helpers import (  # noqa: F401
    FIXTURES, REPO, LabCLI, kill_lab_processes, lab_processes, wait_for, write, write_settings,
)
from helpers import OTHER_REPORT, RAMP_REPORT, WARMUP_REPORT


@pytest.fixture
def lab_root(tmp_path):
    """A new, empty lab (its background embedder, if a search started one, stopped at teardown)."""
    from lab.core.workspace import init

    root = tmp_path / "lab"
    init(root)
    yield root
    from lab.search import embed

    embed.stop(root)  # a search may have started the lab's background embedder


@pytest.fixture(autouse=True)
def _lab_cli_kind(request):
    """Every LabCLI of a test marked `real_process` runs `python -m lab` as a real process; otherwise in this one."""
    LabCLI.real_by_default = request.node.get_closest_marker("real_process") is not None
    yield
    LabCLI.real_by_default = False


@pytest.fixture
def lab(lab_root) -> LabCLI:
    """`lab --root LAB_ROOT ...`: in this process, or as a real process in a test marked `real_process` (LabCLI)."""
    return LabCLI(lab_root)


@pytest.fixture
def real_lab(lab_root) -> LabCLI:
    """`python -m lab --root LAB_ROOT ...` as a real process, always."""
    return LabCLI(lab_root, real=True)


@pytest.fixture
def server():
    """A loopback HTTP server of the recorded arXiv answers and feeds (tests/fixture_server.py), stopped at teardown."""
    from fixture_server import FixtureServer

    s = FixtureServer()
    yield s
    s.stop()


@pytest.fixture
def embedded(lab, lab_root):
    """Three reports (helpers.WARMUP_REPORT, RAMP_REPORT, OTHER_REPORT), every document embedded with the real model."""
    pytest.importorskip("numpy")
    write(lab_root / "experiments" / "warm" / "report.md", WARMUP_REPORT)
    write(lab_root / "experiments" / "ramp" / "report.md", RAMP_REPORT)
    write(lab_root / "experiments" / "tok" / "report.md", OTHER_REPORT)
    lab("reindex", check=0)
    return lab_root


def pytest_collection_modifyitems(items):
    """Under pytest-xdist's --dist loadgroup (make test), the tests that need the Slurm cluster run in one worker,
    one after another: there is one cluster, with few slots, and their waits assume it is theirs."""
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
