"""The sequential runner with real subprocesses: lab run, --wait, skip, concurrency, kill -9 recovery, stop, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, lab_processes, wait_for, write_settings

# The experiment's program: records each start, streams metrics, can fail, wait on a gate file, or leave a child.
PROGRAM = r'''
import json, os, subprocess, sys, time
import lab
s = json.load(open(sys.argv[1]))
def put(name, text):  # atomic, so the test never reads a half-written pid
    tmp = os.path.join(root, name + ".tmp")
    open(tmp, "w").write(text)
    os.replace(tmp, os.path.join(root, name))
root = os.environ["LAB_ROOT"]
with open(os.path.join(root, "starts.txt"), "a") as f:
    f.write(os.environ["LAB_SETTING"] + "\n")
print("env", os.environ.get("MY_VAR"), "out", os.environ["LAB_OUTPUT_DIR"], flush=True)
if s.get("child"):
    child = subprocess.Popen(["sleep", "300"])
    put(f"child-{os.environ['LAB_SETTING']}.pid", str(child.pid))
put(f"pid-{os.environ['LAB_SETTING']}", str(os.getpid()))
gate = s.get("gate")
while gate and not os.path.exists(os.path.join(root, gate)):
    time.sleep(0.02)
with open(os.environ["LAB_METRICS"], "a") as f:
    f.write("this line is not JSON\n")
for i in range(s.get("steps", 2)):
    lab.log_metrics(step=i, loss=1.0 / (i + 1), acc=0.5 + i / 100)
    time.sleep(s.get("sleep", 0))
open(os.path.join(os.environ["LAB_OUTPUT_DIR"], "model.txt"), "w").write("weights")
print("finished", os.environ["LAB_SETTING"], flush=True)
sys.exit(s.get("exit", 0))
'''

COMMAND = "{python} prog.py {settings}"



@pytest.fixture
def rlab(lab_root):
    """A lab with experiment `e` running PROGRAM; every process of the lab is killed at teardown."""
    (lab_root / "prog.py").write_text(PROGRAM)
    write_settings(lab_root, "e", {}, command=COMMAND)
    cli = LabCLI(lab_root)
    yield cli
    kill_lab_processes(lab_root)


def settings(root: Path, **named):
    write_settings(root, "e", {f"{name}.json": value for name, value in named.items()})


def starts(root: Path) -> list[str]:
    path = root / "starts.txt"
    return path.read_text().split() if path.exists() else []


def record(root: Path, name: str, exp: str = "e") -> dict:
    return json.loads((root / "experiments" / exp / "runs" / f"{name}.json").read_text())


def states(cli: LabCLI) -> dict:
    return {row["setting"]: row["state"] for row in cli.json("status")}


def all_finished(cli: LabCLI, names):
    def check():
        s = states(cli)
        return all(s.get(n) in ("succeeded", "failed", "cancelled") for n in names) and s
    return check


def runner_pid(root: Path) -> int | None:
    text = (root / ".lab" / "runner.lock").read_text().strip() if (root / ".lab" / "runner.lock").exists() else ""
    return int(text) if text else None


def test_run_returns_at_once_and_runs_in_order_in_background(rlab, lab_root):
    settings(lab_root, s1={"gate": "go"}, s2={"exit": 3}, s10={"steps": 3})
    proc = rlab("run", "e", check=0, env={"MY_VAR": "from-the-shell"})
    # lab run returned while the first job still waits for its gate: it runs in the background.
    assert "queued e/s1" in proc.stderr and "logs/s1.log" in proc.stderr
    wait_for(lambda: states(rlab).get("s1") == "running", what="s1 running")
    assert states(rlab) == {"s1": "running", "s2": "queued", "s10": "queued"}
    (lab_root / "go").touch()
    final = wait_for(all_finished(rlab, ["s1", "s2", "s10"]), what="all finished")
    assert final == {"s1": "succeeded", "s2": "failed", "s10": "succeeded"}
    assert starts(lab_root) == ["s1", "s2", "s10"]  # natural order, each once

    failed = record(lab_root, "s2")
    assert failed["state"] == "failed" and failed["exit_code"] == 3 and failed["signal"] is None
    rec = record(lab_root, "s10")
    assert rec["state"] == "succeeded" and rec["exit_code"] == 0 and rec["attempt"] == 1
    assert rec["metrics"] == {"step": 2, "loss": pytest.approx(1 / 3), "acc": pytest.approx(0.52)}  # non-JSON line ignored
    for key in ("started_at", "ended_at", "duration_s", "argv", "settings", "settings_hash", "host", "python", "packages", "git", "history"):
        assert key in rec, key
    assert rec["started_at"].endswith("+00:00") and rec["settings"] == {"steps": 3}
    assert rec["argv"][0] == sys.executable and rec["argv"][1] == "prog.py"
    assert rec["history"] == [] and rec["git"] is None
    exp = lab_root / "experiments" / "e"
    assert (exp / "models" / "s10" / "model.txt").read_text() == "weights"
    log = (exp / "logs" / "s10.log").read_text()
    assert log.startswith("===== lab: attempt 1 of e/s10 at ") and "prog.py" in log.splitlines()[0]
    assert "env from-the-shell" in log and "finished s10" in log

    rows = rlab.json("status", "e")
    assert {"experiment", "setting", "state", "exit_code", "started_at", "ended_at", "duration_s", "metrics"} <= set(rows[0])
    assert [r["setting"] for r in rows] == ["s1", "s2", "s10"]
    assert rows[1]["exit_code"] == 3
    text = rlab("status", check=0).stdout
    assert "e/s2" in text and "failed" in text and "loss" in text
    wait_for(lambda: not lab_processes(lab_root), what="runner exit")


def test_unchanged_succeeded_setting_is_skipped_and_rerun_forces(rlab, lab_root):
    settings(lab_root, a={}, b={"exit": 1})
    assert rlab("run", "e", "--wait").returncode == 1
    assert starts(lab_root) == ["a", "b"]
    again = rlab("run", "e", "--wait")
    assert "skipped e/a" in again.stderr and again.returncode == 1  # b failed again
    assert starts(lab_root) == ["a", "b", "b"]
    settings(lab_root, a={"steps": 3})  # changed settings run again
    assert rlab("run", "e/a", "--wait").returncode == 0
    assert rlab("run", "e/a", "--wait").returncode == 0  # skipped now
    assert rlab("run", "e/a", "--rerun", "--wait", check=0)
    assert starts(lab_root) == ["a", "b", "b", "a", "a"]
    rec = record(lab_root, "a")
    assert rec["attempt"] == 3 and [h["attempt"] for h in rec["history"]] == [1, 2]


def test_a_moved_lab_still_skips_what_succeeded(rlab, lab_root, tmp_path):
    import shutil

    settings(lab_root, a={})
    assert rlab("run", "e", "--wait").returncode == 0
    wait_for(lambda: not lab_processes(lab_root), what="runner exit")
    moved = tmp_path / "moved"
    shutil.copytree(lab_root, moved, ignore=shutil.ignore_patterns(".lab"))
    proc = LabCLI(moved)("run", "e", check=0)
    assert "skipped e/a" in proc.stderr
    wait_for(lambda: not lab_processes(moved), what="runner of the moved lab exits")


def test_three_concurrent_runs_run_each_setting_once(rlab, lab_root):
    settings(lab_root, **{f"s{i}": {} for i in range(1, 6)})
    env = dict(os.environ)
    env.pop("LAB_ROOT", None)
    procs = [subprocess.Popen([sys.executable, "-m", "lab", "--root", str(lab_root), "run", "e"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    names = [f"s{i}" for i in range(1, 6)]
    assert set(wait_for(all_finished(rlab, names), what="all finished").values()) == {"succeeded"}
    assert sorted(starts(lab_root)) == sorted(names)
    assert sum(e.count("queued e/") for e in errs) == 5, errs


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_kill9_of_runner_mid_queue_then_lab_run_finishes_everything_once(rlab, lab_root):
    """The job outlives its runner under its supervisor; the next runner reattaches: nothing runs twice."""
    settings(lab_root, s1={}, s2={"gate": "go", "child": True}, s3={}, s4={})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "pid-s2").exists() and (lab_root / "child-s2.pid").exists(), what="s2 started")
    job_pid = int((lab_root / "pid-s2").read_text())
    os.kill(runner_pid(lab_root), signal.SIGKILL)
    time.sleep(0.2)
    assert _alive(job_pid)  # still supervised
    proc = rlab("run", "e", check=0)
    assert "skipped e/s1" in proc.stderr and "e/s2 is already running" in proc.stderr
    assert _alive(job_pid)
    wait_for(lambda: "reattached to e/s2" in (lab_root / ".lab" / "runner.log").read_text(), what="the new runner reattaches")
    (lab_root / "go").touch()
    final = wait_for(all_finished(rlab, ["s1", "s2", "s3", "s4"]), what="all finished")
    assert set(final.values()) == {"succeeded"}
    assert starts(lab_root) == ["s1", "s2", "s3", "s4"]  # nothing started twice
    rec = record(lab_root, "s2")
    assert rec["attempt"] == 1 and rec["history"] == [] and rec["exit_code"] == 0
    wait_for(lambda: not lab_processes(lab_root), what="no process left")


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_status_shows_a_job_that_outlived_its_runner_and_it_records_its_own_end(rlab, lab_root):
    settings(lab_root, s1={"gate": "go"}, s2={})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "pid-s1").exists(), what="s1 started")
    job_pid = int((lab_root / "pid-s1").read_text())
    os.kill(runner_pid(lab_root), signal.SIGKILL)
    wait_for(lambda: not _runner_alive(lab_root), what="runner gone")
    rlab("status", check=0)
    assert _alive(job_pid)
    assert states(rlab) == {"s1": "running", "s2": "queued"}
    (lab_root / "go").touch()  # it ends while no runner lives: its supervisor records it
    wait_for(lambda: states(rlab).get("s1") == "succeeded", what="s1 recorded by its supervisor")
    assert record(lab_root, "s1")["exit_code"] == 0 and states(rlab)["s2"] == "queued"
    assert "resume with: lab run" in rlab("status", check=0).stderr
    rlab("run", check=0)
    wait_for(lambda: states(rlab).get("s2") == "succeeded", what="s2 after lab run")
    assert starts(lab_root) == ["s1", "s2"]


def test_stop_now_leaves_no_process_behind(rlab, lab_root):
    settings(lab_root, s1={"gate": "never", "child": True}, s2={})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "child-s1.pid").exists(), what="s1 started")
    child_pid = int((lab_root / "child-s1.pid").read_text())
    assert "e/s1 is running; end it with: lab stop --now" in rlab("cancel", "e/s1", check=0).stderr
    proc = rlab("stop", "--now", "--grace", "2", check=0)
    assert "cancelled e/s1" in proc.stderr
    rec = record(lab_root, "s1")
    assert rec["state"] == "cancelled" and rec["signal"] == "SIGTERM", ({k: rec.get(k) for k in ("reason", "exit_code", "duration_s")}, (lab_root / ".lab" / "runner.log").read_text())
    assert not _alive(child_pid)
    wait_for(lambda: not lab_processes(lab_root), what="no process left")
    assert states(rlab) == {"s1": "cancelled", "s2": "queued"}  # no other job started
    assert starts(lab_root) == ["s1"]
    # lab cancel removes the queued job; its record says cancelled.
    out = rlab("cancel", "e", check=0)
    assert "cancelled 1 queued job(s): e/s2" in out.stderr
    assert states(rlab) == {"s1": "cancelled", "s2": "cancelled"}
    assert record(lab_root, "s2")["started_at"] is None


def test_stop_lets_the_running_job_finish_and_run_resumes(rlab, lab_root):
    settings(lab_root, s1={"gate": "go"}, s2={})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "pid-s1").exists(), what="s1 started")
    proc = rlab("stop", check=0)
    assert "e/s1 will finish" in proc.stderr
    (lab_root / "go").touch()
    wait_for(lambda: states(rlab).get("s1") == "succeeded", what="s1 finished")
    wait_for(lambda: not _runner_alive(lab_root), what="runner exit")
    assert states(rlab) == {"s1": "succeeded", "s2": "queued"}
    assert rlab("run", "--wait", check=0)
    wait_for(lambda: states(rlab).get("s2") == "succeeded", what="s2 finished after resume")


def test_stop_on_failure_and_wait_exit_status(rlab, lab_root):
    settings(lab_root, s1={"exit": 2}, s2={})
    proc = rlab("run", "e", "--stop-on-failure", "--wait")
    assert proc.returncode == 1
    assert "failed e/s1: exit code 2: finished s1" in proc.stderr and "still queued" in proc.stderr
    assert states(rlab) == {"s1": "failed", "s2": "queued"}
    # Without it, a failure does not stop the others; --wait exits 1 all the same.
    proc = rlab("run", "e", "--wait")
    assert proc.returncode == 1
    assert states(rlab) == {"s1": "failed", "s2": "succeeded"}
    settings(lab_root, s1={})
    assert rlab("run", "e", "--wait").returncode == 0


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_runner_sigterm_requeues_the_job_and_leaves_no_process(rlab, lab_root):
    settings(lab_root, s1={"gate": "go", "child": True})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "child-s1.pid").exists(), what="s1 started")
    os.kill(runner_pid(lab_root), signal.SIGTERM)
    wait_for(lambda: not lab_processes(lab_root), what="no process left")
    assert record(lab_root, "s1")["state"] == "interrupted"
    assert states(rlab) == {"s1": "queued"}


def test_logs_print_and_follow(rlab, lab_root):
    settings(lab_root, s1={"gate": "go", "steps": 2})
    rlab("run", "e", check=0)
    wait_for(lambda: (lab_root / "pid-s1").exists(), what="s1 started")
    env = dict(os.environ)
    follower = subprocess.Popen([sys.executable, "-m", "lab", "--root", str(lab_root), "logs", "e/s1", "-f"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.3)
    (lab_root / "go").touch()
    out, err = follower.communicate(timeout=60)  # -f ends when the run ends
    assert follower.returncode == 0, err
    assert out.startswith("===== lab: attempt 1 of e/s1") and "finished s1" in out
    assert "finished s1" in rlab("logs", "e/s1", check=0).stdout
    missing = rlab("logs", "e/s2", check=2).stderr
    assert "no setting 's2'" in missing and "settings of e: s1" in missing and "lab run" not in missing
    bad = rlab("logs", "e", check=2)
    assert "EXP/SETTING" in bad.stderr


def test_bad_setting_queues_nothing(rlab, lab_root):
    settings(lab_root, s1={}, s2='{"lr": 1,}')
    proc = rlab("run", "e", check=2)
    assert "experiments/e/settings/s2.json:1:" in proc.stderr and "nothing was queued" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (lab_root / ".lab" / "queue.db").exists()
    assert not (lab_root / "experiments" / "e" / "runs").exists() or not any((lab_root / "experiments" / "e" / "runs").iterdir())
    assert not lab_processes(lab_root)
    missing = rlab("run", "e/nope", check=2)
    assert "no setting 'nope'" in missing.stderr
    assert rlab("run", "nosuch", check=2).stderr.startswith("lab: error: no experiment 'nosuch'")


@pytest.mark.parametrize("command, message", [
    ("{python} prog.py {setings}", "unknown placeholder {setings}"),
    ("no-such-program-xyz {settings}", "program 'no-such-program-xyz' not found on PATH"),
    ("python 'unclosed", "No closing quotation"),
])
def test_bad_command_queues_nothing(rlab, lab_root, command, message):
    write_settings(lab_root, "bad", {"s1.json": {}}, command=command)
    proc = rlab("run", "bad", check=2)
    assert message in proc.stderr and "experiments/bad/report.md" in proc.stderr
    assert not (lab_root / ".lab" / "queue.db").exists()


def test_training_program_settings_are_validated_before_queueing(lab_root, monkeypatch):
    """lab run asks lab.train.validate_settings (when it exists) about settings for lab's own program."""
    import types

    from lab.errors import BadInput
    from lab.runs.control import check
    from lab.core.workspace import Workspace

    write_settings(lab_root, "t", {"good.json": {"learning_rate": 1e-4}, "bad.json": {"learning_rat": 1}})
    calls = []

    def validate_settings(resolved, where, experiment_dir=None):
        calls.append(where)
        if "learning_rat" in resolved:
            raise BadInput(f"{where}: unknown key 'learning_rat'")

    fake = types.SimpleNamespace(validate_settings=validate_settings)
    monkeypatch.setitem(sys.modules, "lab.train", fake)
    import lab

    monkeypatch.setattr(lab, "train", fake, raising=False)  # when an earlier test imported the real one
    with pytest.raises(BadInput, match=r"experiments/t/settings/bad.json: unknown key 'learning_rat'"):
        check(Workspace(lab_root), ["t"])
    assert calls == ["experiments/t/settings/bad.json", "experiments/t/settings/good.json"]
    # Without validate_settings (lab.train not written yet) the check is skipped.
    monkeypatch.setitem(sys.modules, "lab.train", types.SimpleNamespace())
    monkeypatch.setattr(lab, "train", sys.modules["lab.train"])
    assert [p.setting.name for p in check(Workspace(lab_root), ["t"])] == ["bad", "good"]


def test_cancel_and_status_bad_input(rlab, lab_root):
    assert "no experiment 'zzz'" in rlab("cancel", "zzz", check=2).stderr
    assert "bad experiment name" in rlab("status", "../x", check=2).stderr
    assert "nothing queued" in rlab("cancel", "e", check=0).stderr
    assert rlab.json("status") == []


def test_status_sees_changed_records(rlab, lab_root):
    settings(lab_root, s1={})
    assert rlab("run", "e", "--wait").returncode == 0
    assert rlab.json("status")[0]["state"] == "succeeded"  # now cached
    path = lab_root / "experiments" / "e" / "runs" / "s1.json"
    rec = json.loads(path.read_text())
    rec["state"] = "failed"
    rec["exit_code"] = 9
    from lab.core.fsutil import atomic_write_json

    atomic_write_json(path, rec)
    row = rlab.json("status")[0]
    assert row["state"] == "failed" and row["exit_code"] == 9
    path.unlink()
    assert rlab.json("status") == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _runner_alive(root: Path) -> bool:
    import fcntl

    path = root / ".lab" / "runner.lock"
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_runner_survives_the_shell_closing(rlab, lab_root):
    """The runner is its own session: a hang-up of the shell that ran `lab run` does not reach it (as nohup)."""
    settings(lab_root, s1={"gate": "go"}, s2={})
    env = dict(os.environ)
    env.pop("LAB_ROOT", None)
    shell = subprocess.Popen(["sh", "-c", f"'{sys.executable}' -m lab --root '{lab_root}' run e && sleep 60"],
                             start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (lab_root / "pid-s1").exists(), what="s1 started")
    os.killpg(shell.pid, signal.SIGHUP)  # what closing the terminal sends to the shell's session
    shell.wait(timeout=30)
    (lab_root / "go").touch()
    assert set(wait_for(all_finished(rlab, ["s1", "s2"]), what="all finished").values()) == {"succeeded"}


@pytest.mark.real_process  # the runner is killed: orphaned, as a real `lab run` leaves it, not a child of pytest
def test_wait_outlives_a_killed_runner(rlab, lab_root):
    """`lab run --wait` notices a dead runner and starts a new one, which reattaches; all runs succeed once."""
    settings(lab_root, s1={}, s2={"gate": "go"}, s3={})
    env = dict(os.environ)
    env.pop("LAB_ROOT", None)
    waiter = subprocess.Popen([sys.executable, "-m", "lab", "--root", str(lab_root), "run", "e", "--wait"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (lab_root / "pid-s2").exists(), what="s2 started")
    old = runner_pid(lab_root)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: runner_pid(lab_root) not in (None, old), what="a new runner started by the waiter")
    (lab_root / "go").touch()
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert starts(lab_root) == ["s1", "s2", "s3"]
    assert record(lab_root, "s2")["history"] == []
