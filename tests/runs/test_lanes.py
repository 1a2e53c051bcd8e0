"""Parallel lanes in the local runner, with real subprocesses and pretend GPUs (LAB_GPUS): jobs overlap on distinct
GPUs, a 2-GPU job is not delayed by a later one, kill -9 and stop/cancel across lanes, notifications end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, lab_processes, wait_for, write_settings
from helpers import Receiver

# Notes each start and end (time, CUDA_VISIBLE_DEVICES, LAB_GPUS); can wait on a gate file, sleep, fail.
PROGRAM = r'''
import json, os, sys, time
s = json.load(open(sys.argv[1]))
root = os.environ["LAB_ROOT"]
me = f"{os.environ['LAB_EXPERIMENT']}/{os.environ['LAB_SETTING']}"
def note(what):
    with open(os.path.join(root, "events.jsonl"), "a") as f:
        f.write(json.dumps({"job": me, "what": what, "t": time.time(), "pid": os.getpid(),
                            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": os.environ.get("LAB_GPUS")}) + "\n")
note("start")
gate = s.get("gate")
while gate and not os.path.exists(os.path.join(root, gate)):
    time.sleep(0.02)
time.sleep(s.get("sleep", 0))
note("end")
sys.exit(s.get("exit", 0))
'''
COMMAND = "{python} prog.py {settings}"



@pytest.fixture
def llab(lab_root):
    """A lab whose experiments run PROGRAM, with four pretend GPUs; every process of it is killed at teardown."""
    (lab_root / "prog.py").write_text(PROGRAM)
    cli = LabCLI(lab_root)
    yield cli
    kill_lab_processes(lab_root)


GPUS4 = {"LAB_GPUS": "0,1,2,3"}


def experiment(root: Path, exp: str, front: str = "", **named):
    write_settings(root, exp, {f"{n}.json": v for n, v in named.items()}, command=COMMAND)
    if front:
        report = root / "experiments" / exp / "report.md"
        report.write_text(report.read_text().replace("---\n", "---\n" + front + "\n", 1))


def events(root: Path) -> list[dict]:
    path = root / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def spans(root: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for e in events(root):
        out.setdefault(e["job"], {}).update({e["what"]: e["t"], "cuda": e["cuda"], "gpus": e["gpus"]})
    return out


def starts(root: Path) -> list[str]:
    return [e["job"] for e in events(root) if e["what"] == "start"]


def record(root: Path, exp: str, name: str) -> dict:
    return json.loads((root / "experiments" / exp / "runs" / f"{name}.json").read_text())


def states(cli: LabCLI) -> dict:
    return {f"{r['experiment']}/{r['setting']}": r["state"] for r in cli.json("status")}


def finished(cli: LabCLI, ids):
    def check():
        s = states(cli)
        return all(s.get(i) in ("succeeded", "failed", "cancelled") for i in ids) and s
    return check


def runner_pid(root: Path) -> int | None:
    lock = root / ".lab" / "runner.lock"
    text = lock.read_text().strip() if lock.exists() else ""
    return int(text) if text else None


def most_at_once(sp: dict) -> int:
    points = sorted([(v["start"], 1) for v in sp.values()] + [(v["end"], -1) for v in sp.values() if "end" in v])
    most = now = 0
    for _, step in points:
        now += step
        most = max(most, now)
    return most


# -- lanes ----------------------------------------------------------------------------------------------------


def test_four_gpus_run_four_jobs_at_once_each_on_its_own_gpu(llab, lab_root):
    experiment(lab_root, "e", **{f"s{i}": {"sleep": 0.6} for i in range(1, 9)})
    llab("run", "e", "--wait", check=0, env=GPUS4, timeout=180)
    sp = spans(lab_root)
    assert len(sp) == 8 and most_at_once(sp) == 4
    for a, x in sp.items():
        assert x["cuda"] in ("0", "1", "2", "3") and x["gpus"] == x["cuda"]
        for b, y in sp.items():
            if a < b and x["start"] < y["end"] and y["start"] < x["end"]:
                assert x["cuda"] != y["cuda"], (a, b)
    rec = record(lab_root, "e", "s1")
    assert rec["state"] == "succeeded" and rec["gpus"] == [sp["e/s1"]["cuda"]]
    log = (lab_root / ".lab" / "runner.log").read_text()
    assert "started: 4 GPUs (0,1,2,3 from LAB_GPUS), 1 CPU lane" in log


def test_no_gpus_and_no_max_parallel_is_one_job_at_a_time(llab, lab_root):
    experiment(lab_root, "e", **{f"s{i}": {"sleep": 0.2} for i in range(1, 5)})
    llab("run", "e", "--wait", check=0, timeout=120)
    sp = spans(lab_root)
    assert most_at_once(sp) == 1 and starts(lab_root) == ["e/s1", "e/s2", "e/s3", "e/s4"]
    assert all(x["cuda"] is None and x["gpus"] is None for x in sp.values())  # lab touches no GPU variable
    assert "gpus" not in record(lab_root, "e", "s1")


def test_max_parallel_runs_cpu_jobs_side_by_side(llab, lab_root):
    (lab_root / "lab.yaml").write_text("max_parallel: 3\n")
    experiment(lab_root, "e", **{f"s{i}": {"sleep": 0.6} for i in range(1, 7)})
    llab("run", "e", "--wait", check=0, timeout=120)
    assert most_at_once(spans(lab_root)) == 3


def test_jobs_per_gpu_packs_two_jobs_on_each_gpu(llab, lab_root):
    (lab_root / "lab.yaml").write_text("gpus: [0, 1]\njobs_per_gpu: 2\ngpu_check: false\n")  # pretend GPUs: nothing to ask
    experiment(lab_root, "e", **{f"s{i}": {"sleep": 0.8} for i in range(1, 5)})
    llab("run", "e", "--wait", check=0, env={"LAB_GPUS_UNSET": "1"}, timeout=120)
    sp = spans(lab_root)
    assert most_at_once(sp) == 4
    assert sorted(x["cuda"] for x in sp.values()) == ["0", "0", "1", "1"]


def test_a_two_gpu_job_waits_for_two_gpus_and_a_later_one_gpu_job_does_not_delay_it(llab, lab_root):
    env = {"LAB_GPUS": "0,1"}
    experiment(lab_root, "a", a1={"gate": "go-a1"}, a2={})
    experiment(lab_root, "big", "gpus_per_run: 2", b1={"sleep": 0.3})
    experiment(lab_root, "cpu", "gpus: none", c1={})
    for target in ("a/a1", "big/b1", "a/a2", "cpu/c1"):
        llab("run", target, check=0, env=env)
    # a1 holds GPU 0; b1 needs both; a2 could take GPU 1 but would hold it for an unknown time: it waits. The
    # CPU-only job c1 uses nothing b1 could use: it starts at once.
    wait_for(lambda: {"a/a1", "cpu/c1"} <= set(spans(lab_root)), what="a1 and c1 started")
    time.sleep(1.0)
    assert set(starts(lab_root)) == {"a/a1", "cpu/c1"}, starts(lab_root)
    assert states(llab)["big/b1"] == "queued" and states(llab)["a/a2"] == "queued"
    (lab_root / "go-a1").touch()
    wait_for(finished(llab, ["a/a1", "big/b1", "a/a2", "cpu/c1"]), timeout=120, what="all finished")
    sp = spans(lab_root)
    assert sp["big/b1"]["cuda"] == "0,1" and record(lab_root, "big", "b1")["gpus"] == ["0", "1"]
    assert sp["cpu/c1"]["cuda"] == "" and sp["a/a2"]["start"] >= sp["big/b1"]["start"]
    assert sp["big/b1"]["start"] >= sp["a/a1"]["end"]


def test_a_setting_that_needs_more_gpus_than_the_lab_has_is_refused_when_queued(llab, lab_root):
    experiment(lab_root, "big", "gpus_per_run: 8", b1={})
    proc = llab("run", "big", check=2, env=GPUS4)
    assert proc.stderr.strip() == ("lab: error: experiments/big/settings/b1.json: cannot run here: it needs 8 GPUs "
                                   "and the runner has 4 (0,1,2,3)")
    assert not (lab_root / "experiments" / "big" / "runs").exists()


def test_a_bad_lanes_key_in_lab_yaml_queues_nothing(llab, lab_root):
    (lab_root / "lab.yaml").write_text("gpus: 4\n")
    experiment(lab_root, "e", s1={})
    proc = llab("run", "e", check=2)
    assert proc.stderr.startswith(f"lab: error: {lab_root / 'lab.yaml'}: gpus: 4 is ambiguous")
    assert not (lab_root / "experiments" / "e" / "runs").exists()


# -- stopping and crashes across lanes ------------------------------------------------------------------------


def three_busy(llab, lab_root, extra: int = 2):
    experiment(lab_root, "e", **{f"s{i}": {"gate": "go"} for i in range(1, 4)},
               **{f"s{i}": {} for i in range(4, 4 + extra)})
    llab("run", "e", check=0, env={"LAB_GPUS": "0,1,2"})
    wait_for(lambda: len(starts(lab_root)) == 3, what="three lanes busy")
    return [e["pid"] for e in events(lab_root) if e["what"] == "start"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_kill9_of_the_runner_with_three_lanes_busy_reattaches_and_runs_nothing_twice(llab, lab_root):
    pids = three_busy(llab, lab_root)
    os.kill(runner_pid(lab_root), signal.SIGKILL)
    time.sleep(0.3)
    assert all(alive(p) for p in pids)  # each still under its supervisor
    llab("run", check=0, env={"LAB_GPUS": "0,1,2"})
    log = lab_root / ".lab" / "runner.log"
    wait_for(lambda: log.read_text().count("reattached to e/s") == 3, what="the new runner to reattach all three")
    (lab_root / "go").touch()
    ids = [f"e/s{i}" for i in range(1, 6)]
    final = wait_for(finished(llab, ids), timeout=120, what="all finished")
    assert set(final.values()) == {"succeeded"}
    assert sorted(starts(lab_root)) == ids  # each exactly once
    assert "recovered" not in log.read_text()  # each supervisor recorded its own end
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_kill9_of_the_runner_and_its_supervisors_interrupts_all_three_and_requeues_them(llab, lab_root):
    pids = three_busy(llab, lab_root)
    runner = runner_pid(lab_root)
    supervisors = {os.getpgid(p) for p in pids}  # each job's process group is led by its supervisor
    os.kill(runner, signal.SIGKILL)
    for pgid in supervisors:
        os.kill(pgid, signal.SIGKILL)  # the supervisors die as in a crash; their programs are orphaned
    status = {r["setting"]: r for r in llab.json("status")}  # recovery: stop what is left, record, requeue
    assert [status[f"s{i}"]["state"] for i in range(1, 4)] == ["queued"] * 3
    for i in range(1, 4):
        assert record(lab_root, "e", f"s{i}")["state"] == "interrupted"
    wait_for(lambda: not any(alive(p) for p in pids), what="no job process left")
    (lab_root / "go").touch()
    llab("run", check=0, env={"LAB_GPUS": "0,1,2"})
    ids = [f"e/s{i}" for i in range(1, 6)]
    final = wait_for(finished(llab, ids), timeout=120, what="all finished")
    assert set(final.values()) == {"succeeded"}
    for i in range(1, 4):
        rec = record(lab_root, "e", f"s{i}")
        assert rec["attempt"] == 2 and [h["state"] for h in rec["history"]] == ["interrupted"]
    completed = [e["job"] for e in events(lab_root) if e["what"] == "end"]
    assert sorted(completed) == ids  # each setting completed exactly once
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


def test_stop_now_ends_every_lane(llab, lab_root):
    pids = three_busy(llab, lab_root)
    proc = llab("stop", "--now", "--grace", "2", check=0)
    assert all(not alive(p) for p in pids)
    s = states(llab)
    assert [s[f"e/s{i}"] for i in range(1, 4)] == ["cancelled"] * 3 and s["e/s4"] == "queued", proc.stderr
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


def test_stop_lets_every_lane_finish_and_starts_nothing_new(llab, lab_root):
    three_busy(llab, lab_root)
    llab("stop", check=0)
    (lab_root / "go").touch()
    wait_for(lambda: runner_pid(lab_root) is None, what="the runner to exit")
    s = states(llab)
    assert [s[f"e/s{i}"] for i in range(1, 4)] == ["succeeded"] * 3 and s["e/s4"] == s["e/s5"] == "queued"
    llab("run", check=0, env={"LAB_GPUS": "0,1,2"})
    wait_for(finished(llab, ["e/s4", "e/s5"]), what="resumed")


def test_stop_on_failure_stops_new_starts_but_lets_the_other_lanes_finish(llab, lab_root):
    experiment(lab_root, "e", s1={"gate": "go"}, s2={"exit": 3}, s3={"gate": "go"}, s4={}, s5={})
    llab("run", "e", "--stop-on-failure", check=0, env={"LAB_GPUS": "0,1,2"})
    wait_for(lambda: states(llab).get("e/s2") == "failed", what="s2 failed")
    time.sleep(0.5)
    (lab_root / "go").touch()
    wait_for(lambda: runner_pid(lab_root) is None, what="the runner to stop")
    s = states(llab)
    assert (s["e/s1"], s["e/s3"], s["e/s4"], s["e/s5"]) == ("succeeded", "succeeded", "queued", "queued")


def test_cancel_removes_queued_jobs_while_lanes_run(llab, lab_root):
    three_busy(llab, lab_root, extra=3)
    proc = llab("cancel", "e/s5", check=0)
    (lab_root / "go").touch()
    wait_for(finished(llab, [f"e/s{i}" for i in range(1, 7)]), what="all ended")
    assert states(llab)["e/s5"] == "cancelled" and "e/s5" not in starts(lab_root), proc.stderr


# -- status -----------------------------------------------------------------------------------------------------


def test_status_shows_each_running_job_s_gpus_and_the_busy_slots(llab, lab_root):
    three_busy(llab, lab_root)
    rows = {r["setting"]: r for r in llab.json("status")}
    assert sorted(rows[f"s{i}"]["gpus"][0] for i in range(1, 4)) == ["0", "1", "2"]
    assert rows["s4"]["gpus"] is None
    proc = llab("status", check=0)
    assert "running (GPU 0)" in proc.stdout and "3 of 3 GPU slots busy (GPUs 0,1,2), 0 of 1 CPU lane busy" in proc.stderr, proc
    (lab_root / "go").touch()


# -- notifications ----------------------------------------------------------------------------------------------


def bodies(receiver) -> list[dict]:
    """The JSON bodies a test_notify.Receiver got, in order."""
    return [body for _, body in receiver.posts]


def test_a_failing_job_and_the_drained_queue_each_send_one_message(llab, lab_root):
    receiver = Receiver()
    try:
        (lab_root / "lab.yaml").write_text(f"notify: [{receiver.url}]\n")
        experiment(lab_root, "e", s1={}, s2={"exit": 3}, s3={})
        llab("run", "e", "--wait", check=1, env={"LAB_GPUS": "0,1"}, timeout=120)
        wait_for(lambda: len(receiver.posts) >= 2, timeout=60, what="two messages")
        time.sleep(1.0)  # nothing more arrives
        titles = sorted(p["title"] for p in bodies(receiver))
        assert titles == [f"lab {lab_root.name}: e/s2 failed", f"lab {lab_root.name}: queue done with failures"]
        drained = next(p for p in bodies(receiver) if "queue done" in p["title"])
        assert drained["message"] == "2 succeeded, 1 failed"
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_leaves_the_queue_alone(llab, lab_root):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (lab_root / "lab.yaml").write_text(f"notify: ['json://127.0.0.1:{port}/hook']\n")
    experiment(lab_root, "e", s1={"exit": 1}, s2={})
    llab("run", "e", "--wait", check=1, timeout=120)
    assert states(llab) == {"e/s1": "failed", "e/s2": "succeeded"}
    log = lab_root / ".lab" / "runner.log"
    wait_for(lambda: log.read_text().count(f"to json://127.0.0.1:{port}/... failed") == 2, timeout=60,
             what="both failures logged")


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
@pytest.mark.parametrize("point", ["runner-claimed", "runner-forked", "supervisor-identity", "supervisor-started",
                                   "supervisor-exited", "supervisor-recorded", "supervisor-done", "runner-reaped",
                                   "runner@supervisor-started"])
def test_a_kill_at_any_step_of_starting_or_ending_a_job_on_three_lanes_runs_each_once(llab, lab_root, point):
    from lab.runs.local.faults import KILL_POINTS

    assert point.rpartition("@")[2] in KILL_POINTS
    gpus3 = {"LAB_GPUS": "0,1,2"}
    ids = [f"e/s{i}" for i in range(1, 8)]
    experiment(lab_root, "e", **{f"s{i}": {"sleep": 0.4} for i in range(1, 8)})
    llab("run", "e", check=0, env={**gpus3, "LAB_TEST_KILL": point})
    wait_for(lambda: (lab_root / ".lab" / "test-kill-fired").exists(), what=f"the kill at {point}")
    time.sleep(0.5)
    llab("run", check=0, env=gpus3)  # resume: recovery, then a runner if the old one is gone
    final = wait_for(finished(llab, ids), timeout=120, what="all finished")
    assert set(final.values()) == {"succeeded"}, final
    ends = sorted(e["job"] for e in events(lab_root) if e["what"] == "end")
    assert ends == ids  # each setting ran to its end exactly once
    for i in range(1, 8):
        rec = record(lab_root, "e", f"s{i}")
        assert rec["exit_code"] == 0 and all(h["state"] == "interrupted" for h in rec["history"])
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


@pytest.mark.slow  # a storm of kill -9
@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
@pytest.mark.parametrize("seed", [1, 2])
def test_random_kill9_of_the_runner_while_three_lanes_run_runs_each_setting_once(llab, lab_root, seed):
    import random

    rng = random.Random(seed)
    gpus3 = {"LAB_GPUS": "0,1,2"}
    ids = [f"e/s{i}" for i in range(1, 16)]
    experiment(lab_root, "e", **{f"s{i}": {"sleep": rng.choice([0.1, 0.3, 0.6])} for i in range(1, 16)})
    llab("run", "e", check=0, env=gpus3)
    kills = 0
    while kills < 8:
        time.sleep(rng.uniform(0.05, 0.6))
        pid = runner_pid(lab_root)
        if pid is None:
            if all(v in ("succeeded",) for v in states(llab).values()):
                break
            llab("run", check=0, env=gpus3)
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            kills += 1
        except ProcessLookupError:
            pass
        if rng.random() < 0.7:
            llab("run", check=0, env=gpus3)
    assert kills >= 1
    llab("run", check=0, env=gpus3)
    final = wait_for(finished(llab, ids), timeout=180, what="all finished")
    assert set(final.values()) == {"succeeded"}, final
    assert sorted(e["job"] for e in events(lab_root) if e["what"] == "end") == sorted(ids)
    assert sorted(starts(lab_root)) == sorted(ids)  # the runner alone died: no job even started twice
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


def test_lab_notify_shows_the_targets_and_test_sends_one(llab, lab_root):
    proc = llab("notify", check=2)
    assert proc.stderr.startswith("lab: error: ") and "has no notify: settings" in proc.stderr
    receiver = Receiver()
    try:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        down = s.getsockname()[1]
        s.close()
        port = receiver.server.server_address[1]
        (lab_root / "lab.yaml").write_text(f"notify:\n  urls: ['{receiver.url}?token=SECRET']\n  events: [failed]\n")
        assert llab("notify", check=0).stdout == f"json://127.0.0.1:{port}/...\n"
        out = llab.json("notify", "--test")
        assert out["results"] == [{"target": f"json://127.0.0.1:{port}/...", "ok": True, "error": None}]
        assert bodies(receiver)[0]["title"] == f"lab {lab_root.name}: test" and out["events"] == ["failed"]
        (lab_root / "lab.yaml").write_text(f"notify: ['json://127.0.0.1:{down}/x']\n")
        proc = llab("notify", "--test", check=1)
        assert proc.stdout.startswith(f"json://127.0.0.1:{down}/...: failed: ")
        assert proc.stderr.strip().endswith("lab: error: 1 of 1 target(s) failed")
    finally:
        receiver.stop()


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_sigterm_to_the_runner_interrupts_every_lane_and_requeues_them(llab, lab_root):
    pids = three_busy(llab, lab_root)
    os.kill(runner_pid(lab_root), signal.SIGTERM)
    wait_for(lambda: runner_pid(lab_root) is None, what="the runner to exit")
    wait_for(lambda: not any(alive(p) for p in pids), what="no job process left")
    s = states(llab)
    assert [s[f"e/s{i}"] for i in range(1, 6)] == ["queued"] * 5, s
    for i in range(1, 4):
        assert record(lab_root, "e", f"s{i}")["state"] == "interrupted"
    (lab_root / "go").touch()
    llab("run", check=0, env={"LAB_GPUS": "0,1,2"})
    final = wait_for(finished(llab, [f"e/s{i}" for i in range(1, 6)]), what="all finished")
    assert set(final.values()) == {"succeeded"}


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_a_crash_that_interrupts_three_lanes_sends_one_word_each(llab, lab_root):
    receiver = Receiver()
    try:
        (lab_root / "lab.yaml").write_text(f"notify: [{receiver.url}]\n")
        pids = three_busy(llab, lab_root, extra=0)
        os.kill(runner_pid(lab_root), signal.SIGKILL)
        for pgid in {os.getpgid(p) for p in pids}:
            os.kill(pgid, signal.SIGKILL)  # the supervisors die too, as in a crash
        llab("status", check=0)  # recovery: what is left is stopped, recorded interrupted, queued again
        wait_for(lambda: len(receiver.posts) >= 3, timeout=60, what="three messages")
        time.sleep(0.5)
        assert sorted(p["title"] for p in bodies(receiver)) == [f"lab {lab_root.name}: e/s{i} interrupted" for i in (1, 2, 3)]
        assert all(p["type"] == "warning" for p in bodies(receiver))
    finally:
        receiver.stop()
