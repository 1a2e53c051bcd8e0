"""Helpers shared by the tests of every wing: the one module test files import from (no test module imports
another; the fixtures are in conftest.py).

- The lab: REPO and FIXTURES, a `lab` command runner (LabCLI), settings files, waiting, the processes of a lab.
- Search: files written "a while ago", a small lab of every indexed kind, reports and real sentences for ranking.
- Runs: a webhook receiver on 127.0.0.1, the Slurm cluster's presence and clean-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded real answers, with their provenance in its README


def wait_for(predicate, timeout=60.0, what="condition", poll=0.05):
    """Poll `predicate` until it returns something true (returned), or fail after `timeout` seconds."""
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
    for pid in lab_processes(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class LabCLI:
    """Runs `lab --root ROOT ARGS...` against one lab and returns a subprocess.CompletedProcess (text stdout, stderr).

    By default the command runs in this process: lab's entry point (lab.cli.fast.main, which hands everything but a
    plain search or status to click) inside click's CliRunner isolation, with its own stdin, stdout, stderr,
    environment (the caller's, LAB_ROOT removed, `env` added) and working directory (`cwd`, else the lab root), and
    SystemExit as the exit status. That saves a Python start-up and lab's imports (~0.3 s) per call.

    A real `python -m lab` process instead where the process is the point (detaching, kill -9, signals, what a
    command imports, start-up): `LabCLI(root, real=True)`, any LabCLI in a test marked `real_process`, or every
    LabCLI with LAB_TEST_REAL_CLI=1 in the environment (to check that both ways agree). `timeout` applies to a real
    process only.
    """

    real_by_default = False  # conftest sets it for each test from its `real_process` mark

    def __init__(self, root: Path, real: bool | None = None):
        self.root = root
        self.real = real

    @property
    def is_real(self) -> bool:
        if self.real is not None:
            return self.real
        return LabCLI.real_by_default or os.environ.get("LAB_TEST_REAL_CLI") == "1"

    def __call__(self, *args, check=None, env=None, input=None, timeout=120, cwd=None) -> subprocess.CompletedProcess:
        argv = ["--root", str(self.root), *map(str, args)]
        if self.is_real:
            full_env = dict(os.environ)
            full_env.pop("LAB_ROOT", None)
            full_env.update(env or {})
            proc = subprocess.run([sys.executable, "-m", "lab", *argv], capture_output=True, text=True, env=full_env,
                                  input=input, timeout=timeout, cwd=cwd or self.root)
        else:
            proc = run_in_process(argv, env=env, input=input, cwd=cwd or self.root)
        if check is not None:
            assert proc.returncode == check, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        return proc

    def json(self, *args, **kwargs):
        proc = self(*args, "--json", check=0, **kwargs)
        return json.loads(proc.stdout)


def run_in_process(argv: list[str], env: dict | None = None, input: str | None = None,
                   cwd: Path | str | None = None) -> subprocess.CompletedProcess:
    """`lab ARGV` in this process, as `python -m lab ARGV` would run it: see LabCLI. Everything the command may
    change in this process (the environment, the working directory, signal handlers) is put back afterwards, and
    the search's forked helper (lab.search.prefork) is switched off, so that no search forks the test process."""
    from click import formatting
    from click.testing import CliRunner

    from lab.cli.fast import main
    from lab.search import prefork

    saved_env, saved_cwd, saved_prefork = dict(os.environ), os.getcwd(), prefork.enabled
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    with CliRunner().isolation(input=input, env={"LAB_ROOT": None, **(env or {})}) as (out, err, _):
        try:
            formatting.FORCED_WIDTH = None  # help as wide as a real process makes it (CliRunner forces 80 columns)
            prefork.enabled = False
            if cwd is not None:
                os.chdir(cwd)
            main(argv)
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:  # as Python does: a message on stderr, status 1
                sys.stderr.write(f"{e.code}\n")
                code = 1
        except BaseException:  # as Python does with an uncaught exception (`lab --debug`)
            import traceback

            traceback.print_exc(file=sys.stderr)
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.chdir(saved_cwd)
            prefork.enabled = saved_prefork
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler)
        stdout, stderr = out.getvalue(), err.getvalue()
    os.environ.clear()
    os.environ.update(saved_env)

    def text(data: bytes) -> str:  # decoded as subprocess.run(text=True) does: universal newlines
        return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")

    return subprocess.CompletedProcess(["lab", *argv], code, text(stdout), text(stderr))


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


# -- search: files, a small lab, reports to rank, real sentences ------------------------------------------------------


REPORT = """\
---
title: Learning rate warmup on small data
tags: [warmup, minilm]
command: python run.py {settings}
---


# Learning rate warmup on small data

## Question

学習率ウォームアップの効果を調べる。Does a linear schedule help?

## Results

<!-- lab:results -->
The eval loss went down with a state-of-the-art schedule; see the zebrafish table.

### Table

Numbers for the okapi runs.
"""

PAPER = """\
---
arxiv_id: '1908.03265'
title: On the Variance of the Adaptive Learning Rate and Beyond
authors: [Liyuan Liu, Haoming Jiang]
tags: [optimizers]
experiments: [exp1]
---

The learning rate warmup heuristic stabilizes training of adaptive optimizers.

## Notes

Try RAdam instead. The C++ kernels are at hep-th/9901001 (not really).
"""

FEED_ITEM = {
    "id": "http://arxiv.org/abs/2302.00001v1", "title": "Warmup-free training with gravitas",
    "authors": ["Ada Byron"], "summary": "We remove the quokka schedule entirely.",
    "link": "http://arxiv.org/abs/2302.00001v1", "published": "2023-02-01T00:00:00Z", "arxiv_id": "2302.00001",
    "feed": "cs.LG", "added_at": "2026-01-01T00:00:00+00:00",
}


def write(path: Path, text: str) -> Path:
    """Write a file as if written a while ago (so the index trusts its mtime), each write 1 ms after the last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    mtime = max(old + 1_000_000, time.time_ns() - 60_000_000_000)
    os.utime(path, ns=(mtime, mtime))
    return path


def make_lab(root: Path) -> Path:
    """A small lab with one file of every indexed kind, written the way their owners write them."""
    exp = root / "experiments" / "exp1"
    write(exp / "report.md", REPORT)
    write(exp / "settings" / "s1.json", '{"learning_rate": 2e-5, "warmup_steps": 500, "model": {"layers": 4}}\n')
    write(exp / "settings" / "bad.json", '{"learning_rate": 3e-4,, "pangolin": 1}\n')
    record = {
        "experiment": "exp1", "setting": "s1", "state": "succeeded", "attempt": 1, "exit_code": 0,
        "metrics": {"eval_loss": 0.53, "wombat_score": 0.9}, "settings": {"learning_rate": 2e-05, "warmup_steps": 500},
        "executor": "local", "history": [],
    }
    write(exp / "runs" / "s1.json", json.dumps(record, indent=2))
    write(exp / "runs" / "s1.settings.json", '{"capybara": 1}')  # not a run record: ignored
    write(root / "experiments" / "exp2" / "report.md", "---\ntitle: Tokenizer study\ntags: [data]\n---\n\nNo warmup here.\n")
    write(root / "papers" / "1908.03265.md", PAPER)
    write(root / "papers" / "reading" / "plain.md", "# Attention Is All You Need\n\nNo front matter; the narwhal layer.\n")
    write(root / "feeds" / "items" / "cs.LG.jsonl", json.dumps(FEED_ITEM) + "\n")
    return root


def search(root: Path, text: str, **kw) -> list[dict]:
    """The index's own search (lab.search.query) on the lab at `root`, in this process."""
    from lab.search import index, query

    conn, _ = index.open_index(root)
    try:
        return query.search(conn, text, **kw)
    finally:
        conn.close()


WARMUP_REPORT = """\
---
title: Stabilising early training
tags: [optimizers]
---

## Findings

A warm-up of the learning rate over the first 500 steps removed the loss spikes we saw with AdamW.
"""

RAMP_REPORT = """\
---
title: Early optimisation study
tags: [optimizers]
---

## Findings

We used a linear ramp of the step size at the start of training; without it the first updates diverged.
"""

OTHER_REPORT = """\
---
title: Tokenizer coverage
tags: [data]
---

## Findings

Japanese text is split into characters by the tokenizer; the vocabulary lacks most kanji compounds.
"""


# Real text: claims and abstract openings from SciFact (benchmarks/data/scifact-dev, with its provenance),
# a Japanese sentence, and lab's own README sentences; long enough that some are truncated at 256 tokens.
SENTENCES = [
    "0-dimensional biomaterials lack inductive properties.",
    "Does warmup help small-batch fine-tuning?",
    "A linear ramp of the step size at the start of training.",
    "学習率ウォームアップの効果を調べる。",
    "Every word must match; the best matches come first (bm25, with titles above headings above text).",
    "",
]


def corpus_texts(n: int) -> list[str]:
    """The first `n` abstracts of SciFact's corpus (benchmarks/data/scifact-dev): real text, some of it long."""
    path = REPO / "benchmarks" / "data" / "scifact-dev" / "corpus.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def searched(root, *args) -> tuple[list[dict], set[str]]:
    """`lab search ARGS --json` in its own process: (its results, the top-level modules it imported)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "lab", "--root", str(root), "search", *args, "--json"],
                          capture_output=True, text=True, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return json.loads(proc.stdout), {name.split(".")[0] for name in imported}


SEARCHES = [
    ("learning rate warmup",),
    ("linear ramp of the step size at the start of training", "--mode", "semantic"),
    ("a linear ramp of the step size", "--type", "experiment"),
    ("training", "--exp", "ramp", "--mode", "hybrid"),
    ('"learning rate" schedule of the first steps',),
]


# -- runs: notifications and Slurm ------------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST (path, JSON body); `hang` keeps requests waiting."""

    def __init__(self, hang: bool = False):
        self.posts: list[tuple[str, dict]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    outer.release.wait(30)
                outer.posts.append((self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def require_slurm_cluster() -> None:
    """Skip the test where no Slurm cluster runs on localhost, or fail it in CI, which brings one up."""
    from lab.runs.slurm import cluster as slurm

    reason = slurm.available()
    if reason is None:
        return
    if os.environ.get("LAB_REQUIRE_SLURM") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"no Slurm cluster, but CI requires one: {reason} (.ci/run brings it up with scripts/slurm/up.sh)")
    pytest.skip(f"no Slurm cluster on this machine: {reason} (bring one up with: sudo bash scripts/slurm/up.sh)")


def cancel_jobs_of(root) -> None:
    """Cancel every Slurm job whose working directory lies in the lab at `root`."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%Z"], capture_output=True, text=True).stdout
    mine = [line.split("|")[0] for line in out.splitlines() if line.split("|", 1)[-1].startswith(str(root))]
    if mine:
        subprocess.run(["scancel", *mine], capture_output=True)
