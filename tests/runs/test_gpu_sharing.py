"""Two real labs with real runners on one pretend 2-GPU machine (tests/pretend_gpus.py: a stand-in nvidia-smi that
prints recorded real answers, and the processes the test puts on its GPUs): no GPU slot ever holds two jobs, a GPU a
foreign process holds is not used until it goes, `lab gpus` and `lab status` say who is where and why a job waits,
and random kill -9 of runners and supervisors changes none of it."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, wait_for, write_settings
from pretend_gpus import Machine

# A job: it appears on its GPU as a CUDA program does (the pretend driver lists it from now on), notes which other
# live processes the driver lists on that GPU at that moment (there must be none), works, and notes its end.
PROGRAM = r'''
import json, os, sys, time
s = json.load(open(sys.argv[1]))
apps, events = os.environ["FAKE_APPS"], os.environ["GPU_EVENTS"]
gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
me = {"lab": os.environ["LAB_ROOT"], "job": os.environ["LAB_EXPERIMENT"] + "/" + os.environ["LAB_SETTING"],
      "gpu": gpu, "pid": os.getpid()}
def note(what, **kw):
    with open(events, "a") as f:
        f.write(json.dumps({**me, "what": what, "t": time.time(), **kw}) + "\n")
def alive(pid):  # a zombie (ended, not yet reaped) holds no GPU memory: the driver no longer lists it
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
if gpu:
    tmp = os.path.join(apps, ".%d.tmp" % os.getpid())
    with open(tmp, "w") as f:
        json.dump({"gpu": int(gpu), "mib": 900, "name": "python"}, f)
    os.replace(tmp, os.path.join(apps, str(os.getpid())))
others = []
for name in os.listdir(apps):
    if name.isdigit() and int(name) != os.getpid() and alive(int(name)):
        try:
            if json.load(open(os.path.join(apps, name)))["gpu"] == int(gpu):
                others.append(int(name))
        except (OSError, ValueError):
            pass
note("start", others=others)
while s.get("gate") and not os.path.exists(os.path.join(os.environ["LAB_ROOT"], s["gate"])):
    time.sleep(0.02)
time.sleep(s.get("sleep", 0))
note("end")
'''


@pytest.fixture
def machine(tmp_path):
    m = Machine(tmp_path)
    m.env["GPU_EVENTS"] = str(tmp_path / "events.jsonl")
    yield m
    m.stop()


@pytest.fixture
def two_labs(tmp_path, machine):
    from lab.core.workspace import init

    roots = []
    for name in ("alice", "bob"):
        root = tmp_path / name
        init(root)
        (root / "prog.py").write_text(PROGRAM)
        (root / "lab.yaml").write_text("gpus: auto\n")
        roots.append(root)
    yield roots
    for root in roots:
        kill_lab_processes(root)


def queue(root: Path, n: int, sleep: float, exp: str = "e", gate: str | None = None):
    write_settings(root, exp, {f"s{i:02d}.json": {"sleep": sleep, "gate": gate} for i in range(n)},
                   command="{python} prog.py {settings}")


def events(machine) -> list[dict]:
    path = Path(machine.env["GPU_EVENTS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def records(root: Path, exp: str = "e") -> dict:
    runs = root / "experiments" / exp / "runs"
    return {p.name[:-5]: json.loads(p.read_text()) for p in runs.glob("*.json") if not p.name.endswith(".settings.json")}


def all_done(roots, n):
    def check():
        for root in roots:
            recs = records(root)
            if len(recs) < n or any(r["state"] != "succeeded" for r in recs.values()):
                return False
        return True
    return check


def assert_no_gpu_shared(machine):
    """No job ever started while the driver listed another live process on its GPU."""
    starts = [e for e in events(machine) if e["what"] == "start"]
    assert starts and all(e["gpu"] in ("0", "1") for e in starts)
    clashes = [e for e in starts if e["others"]]
    assert not clashes, clashes


def test_two_labs_on_one_machine_never_put_two_jobs_on_one_gpu(two_labs, machine):
    alice, bob = two_labs
    for root in two_labs:
        queue(root, 10, 0.4)
    for root in two_labs:
        LabCLI(root)("run", "e", check=0, env=machine.env)
    wait_for(all_done(two_labs, 10), timeout=180, what="all 20 jobs done")
    assert_no_gpu_shared(machine)
    starts = [e for e in events(machine) if e["what"] == "start"]
    assert sorted((e["lab"], e["job"]) for e in starts) == sorted((str(r), f"e/s{i:02d}") for r in two_labs for i in range(10))
    for root in two_labs:
        assert all(r["gpus"] in (["0"], ["1"]) and r["attempt"] == 1 for r in records(root).values())
    log = (alice / ".lab" / "runner.log").read_text()
    assert "started: 2 GPUs (0,1 from nvidia-smi)" in log


def test_a_foreign_process_keeps_jobs_off_its_gpu_until_it_goes(two_labs, machine):
    alice, _ = two_labs
    notebook = machine.process_on(1, 21800)
    queue(alice, 4, 0.1, gate="go")
    LabCLI(alice)("run", "e", check=0, env=machine.env)

    def starts():
        return [e for e in events(machine) if e["what"] == "start"]

    wait_for(lambda: starts(), what="a job started")
    time.sleep(1.5)
    assert [e["gpu"] for e in starts()] == ["0"]  # GPU 1 is the notebook's
    status = LabCLI(alice).json("status", env=machine.env)
    waiting = [r for r in status if r["state"] == "queued"]
    assert len(waiting) == 3 and all(
        r["waiting"] == f"waiting for a GPU: 1 busy (pid {notebook.pid}, uid {os.getuid()}, 21.3 GiB)" for r in waiting)
    text = LabCLI(alice)("status", env=machine.env).stderr
    assert f"waiting for a GPU: 1 busy (pid {notebook.pid}" in text
    notebook.kill()
    notebook.wait()
    wait_for(lambda: len(starts()) == 2, what="a job started on GPU 1 once the notebook went")
    assert [e["gpu"] for e in starts()] == ["0", "1"]
    (alice / "go").touch()
    wait_for(all_done([alice], 4), timeout=120, what="all 4 jobs done")
    assert_no_gpu_shared(machine)
    assert "waiting" not in LabCLI(alice).json("status", env=machine.env)[0]


def test_lab_gpus_lists_both_labs_jobs_and_the_foreign_process(two_labs, machine):
    alice, bob = two_labs
    notebook = machine.process_on(1, 21800)
    queue(alice, 1, 60)
    queue(bob, 1, 60)
    LabCLI(alice)("run", "e", check=0, env=machine.env)
    wait_for(lambda: any(e["lab"] == str(alice) for e in events(machine)), what="alice's job started")
    LabCLI(bob)("run", "e", check=0, env=machine.env)
    time.sleep(1.5)
    notebook.kill()
    notebook.wait()
    wait_for(lambda: any(e["lab"] == str(bob) for e in events(machine)), what="bob's job started")
    machine.process_on(1, 5000)  # a second foreign process joins bob's job on GPU 1
    data = LabCLI(alice).json("gpus", env=machine.env)
    assert data["source"] == "nvidia-smi" and data["error"] is None
    g0, g1 = data["gpus"]
    assert [(j["this_lab"], j["lab"], j["experiment"], j["setting"]) for j in g0["jobs"]] == [(True, str(alice), "e", "s00")]
    assert [(j["this_lab"], j["lab"], j["setting"]) for j in g1["jobs"]] == [(False, str(bob), "s00")]
    others = [p for p in g1["processes"] if p["lab_job"] is None]
    assert len(others) == 1 and others[0]["uid"] == os.getuid() and others[0]["memory_mib"] == 5000
    assert [p["lab"] for p in g1["processes"] if p["lab_job"]] == [str(bob)]
    assert g1["busy"].startswith(f"1 busy (pid {others[0]['pid']}")
    text = LabCLI(bob)("gpus", env=machine.env, check=0).stdout
    assert f"lab {alice}: e/s00" in text and "this lab e/s00" in text and f"process {others[0]['pid']}" in text


def test_without_a_gpu_tool_gpu_jobs_wait_with_one_line_and_cpu_jobs_run(two_labs, machine):
    alice, _ = two_labs
    (alice / "lab.yaml").write_text("gpus: [0, 1]\n")
    queue(alice, 1, 0)
    write_settings(alice, "cpu", {"c.json": {}}, command="{python} prog.py {settings}")
    report = alice / "experiments" / "cpu" / "report.md"
    report.write_text(report.read_text().replace("---\n", "---\ngpus: none\n", 1))
    env = {**machine.env, "PATH": os.environ["PATH"]}  # no nvidia-smi anywhere (and no NVML driver here)
    LabCLI(alice)("run", "e", "cpu", check=0, env={**env, "FAKE_APPS": machine.env["FAKE_APPS"]})
    wait_for(lambda: records(alice, "cpu").get("c", {}).get("state") == "succeeded", what="the CPU job ran")
    time.sleep(1.0)
    assert records(alice)["s00"]["state"] == "queued"
    log = (alice / ".lab" / "runner.log").read_text()
    assert log.count("GPUs not handed out: cannot check the GPUs: nvidia-smi not found on PATH") == 1
    status = LabCLI(alice).json("status", env=env)
    [waiting] = [r for r in status if r["state"] == "queued"]
    assert waiting["waiting"].startswith("waiting for a GPU: 0 not checked (cannot check the GPUs")


@pytest.mark.parametrize("seed", [1])
def test_random_kill9_of_runners_and_supervisors_across_two_labs(two_labs, machine, seed):
    from lab.core.workspace import Workspace
    from lab.runs.local.lock import runner_pid
    from lab.runs.local.spawn import ensure_runner

    rng = random.Random(seed)
    machine.process_on(1, 20000)  # GPU 1 is someone else's for the first seconds
    for root in two_labs:
        queue(root, 20, 0.15)
    for root in two_labs:
        LabCLI(root)("run", "e", check=0, env=machine.env)
    env = {**os.environ, **machine.env}
    workspaces = [Workspace(r) for r in two_labs]
    kills = {"runner": 0, "supervisor": 0}
    deadline = time.monotonic() + 90
    freed = False
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.3))
        if not freed and time.monotonic() > deadline - 85:
            foreign_until = time.time()
            machine.stop()
            freed = True
        ws = rng.choice(workspaces)
        if all_done(two_labs, 20)():
            break
        if rng.random() < 0.5:
            pid = runner_pid(ws.state_dir)
            if pid is not None and kills["runner"] < 15:
                os.kill(pid, signal.SIGKILL)
                kills["runner"] += 1
        else:
            idents = list((ws.state_dir / "jobs").glob("*.json")) if (ws.state_dir / "jobs").exists() else []
            if idents and kills["supervisor"] < 15:
                try:
                    pid = json.loads(rng.choice(idents).read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    kills["supervisor"] += 1
                except (OSError, ValueError, KeyError):
                    pass
        for w in workspaces:
            if runner_pid(w.state_dir) is None:
                ensure_runner(w, env)

    def finished():
        if all_done(two_labs, 20)():
            return True
        for w in workspaces:
            if runner_pid(w.state_dir) is None:
                ensure_runner(w, env)
        return False

    wait_for(finished, timeout=120, poll=0.2, what="all 40 jobs done")
    assert kills["runner"] and kills["supervisor"]
    assert_no_gpu_shared(machine)
    starts = [e for e in events(machine) if e["what"] == "start"]
    assert not [e for e in starts if e["gpu"] == "1" and e["t"] < foreign_until]
    reruns: dict = {}
    for root in two_labs:
        recs = records(root)
        assert sorted(recs) == [f"s{i:02d}" for i in range(20)]
        assert all(r["state"] == "succeeded" for r in recs.values())
        # Every job succeeded once; only a start cut short by a supervisor's kill -9 was run again (stopped and
        # queued again; recorded interrupted when its running record was written before the kill).
        again = 0
        for name, r in recs.items():
            n = sum(1 for e in starts if e["lab"] == str(root) and e["job"] == f"e/{name}")
            assert n >= 1 and all(h["state"] == "interrupted" for h in r["history"]), (name, n, r["history"])
            again += n - 1
        reruns[str(root)] = again
    assert sum(reruns.values()) <= kills["supervisor"]


def test_gpus_from_lab_gpus_or_gpu_check_false_are_handed_out_without_asking_the_machine(two_labs, machine):
    alice, bob = two_labs
    machine.process_on(0, 30000)  # would make GPU 0 busy, were it checked
    (bob / "lab.yaml").write_text("gpus: [0]\ngpu_check: false\n")
    queue(alice, 2, 0)
    queue(bob, 2, 0)
    LabCLI(alice)("run", "e", "--wait", check=0, env={**machine.env, "LAB_GPUS": "0"}, timeout=120)
    LabCLI(bob)("run", "e", "--wait", check=0, env=machine.env, timeout=120)
    assert machine.calls() == []  # no nvidia-smi, no lease
    assert not machine.leases.exists()
    assert all(r["state"] == "succeeded" and r["gpus"] == ["0"] for root in two_labs for r in records(root).values())
