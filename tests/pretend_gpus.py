"""A pretend GPU machine for tests: the stand-in nvidia-smi (fake_nvidia_smi.py) first on PATH, the file that says
what the machine looks like, real processes it lists on its GPUs, and a lease directory of its own (so that tests
never touch the machine-wide one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


class Machine:
    def __init__(self, tmp_path: Path, n: int = 2, capture: str = "h100-load"):
        self.dir = tmp_path / "machine"
        (self.dir / "bin").mkdir(parents=True)
        self.apps = self.dir / "apps"
        self.apps.mkdir()
        self.leases = self.dir / "leases"
        self.state_path = self.dir / "state.json"
        exe = self.dir / "bin" / "nvidia-smi"
        exe.write_text(f'#!/bin/sh\nexec {sys.executable} {TESTS / "fake_nvidia_smi.py"} "$@"\n')
        exe.chmod(0o755)
        self.state = {"capture": capture, "gpus": n, "apps_dir": str(self.apps), "mode": "ok",
                      "calls": str(self.dir / "calls.log")}
        self.save()
        self.procs: list[subprocess.Popen] = []
        self.env = {"PATH": f"{self.dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "FAKE_GPUS": str(self.state_path), "FAKE_APPS": str(self.apps), "LAB_GPU_LEASES": str(self.leases)}

    def save(self, **changes):
        from lab.runs import gpuprobe

        self.state.update(changes)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_path)
        gpuprobe.reset()

    def process_on(self, gpu: int, mib: float | None = 20000) -> subprocess.Popen:
        """A real process (another user's notebook, say) that the pretend driver lists on `gpu`."""
        proc = subprocess.Popen(["sleep", "600"])
        self.procs.append(proc)
        register(self.apps, proc.pid, gpu, mib)
        return proc

    def calls(self) -> list[str]:
        path = self.dir / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def register(apps: Path, pid: int, gpu: int, mib: float | None, name: str = "python") -> None:
    """Make the pretend driver list `pid` on `gpu` (what creating a CUDA context does), atomically."""
    tmp = apps / f".{pid}.tmp"
    tmp.write_text(json.dumps({"gpu": gpu, "mib": mib, "name": name}))
    os.replace(tmp, apps / str(pid))
