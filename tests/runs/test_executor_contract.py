"""One contract for every executor (in the manner of huey's storage tests): the same test class runs against
the local runner and against Slurm (marked `slurm`: it needs the cluster of scripts/slurm/up.sh).

Runs start as `lab run` starts them (`lab.runs.control.submit` and `wait`); then every method of the executor
interface (`lab.runs.executor.Executor`: submit, active, reconcile, stop, cancel, wait) is asked directly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from helpers import kill_lab_processes, lab_processes, wait_for, write_settings
from lab.core.workspace import Workspace
from lab.runs import control
from lab.runs.executor import get
from lab.core.settings import list_settings

PROGRAM = """\
import json, os, sys, time
import lab
s = json.load(open(sys.argv[1]))
with open(os.path.join(os.environ["LAB_ROOT"], "executions.txt"), "a") as f:
    f.write(os.environ["LAB_SETTING"] + "\\n")
lab.log_metrics(step=1, loss=0.5)
time.sleep(s.get("sleep", 0))
if s.get("code"):
    print("ValueError: the learning rate is negative", flush=True)
print("bye", flush=True)
sys.exit(s.get("code", 0))
"""

# The keys of a record of a job that waits, on every executor (plus the executor's own job id key).
QUEUED_KEYS = {"experiment", "setting", "state", "attempt", "executor", "exit_code", "signal", "queued_at", "started_at",
               "ended_at", "duration_s", "command", "argv", "settings", "settings_hash", "settings_file", "log_path",
               "metrics_path", "output_dir", "metrics", "history", "fixed_when_queued"}


class ExecutorContract:
    executor: str
    job_key: str

    def lab(self, root, settings: dict) -> Workspace:
        (root / "prog.py").write_text(PROGRAM)
        write_settings(root, "e", {f"{k}.json": v for k, v in settings.items()}, command="{python} prog.py {settings}")
        return Workspace(root)

    def run(self, ws, targets, rerun=False, wait=True):
        entries = control.submit(ws, targets, rerun=rerun, executor=self.executor, env=dict(os.environ))
        if not wait:
            return entries
        waiting = [e for e in entries if e["action"] != "skipped"]
        views = {v["id"]: v for v in control.wait(ws, waiting, poll=0.2)} if waiting else {}
        return entries, views

    def record(self, ws, name):
        return json.loads((ws.root / "experiments" / "e" / "runs" / f"{name}.json").read_text())

    def executions(self, ws):
        path = ws.root / "executions.txt"
        return path.read_text().split() if path.exists() else []

    def test_a_setting_runs_once_and_its_record_says_how(self, lab_root):
        ws = self.lab(lab_root, {"a": {}, "b": {"code": 3}})
        entries, views = self.run(ws, ["e"])
        assert [e["action"] for e in entries] == ["queued", "queued"]
        assert all(e["executor"] == self.executor for e in entries)
        assert views["e/a"]["state"] == "succeeded" and views["e/b"]["state"] == "failed"
        a, b = self.record(ws, "a"), self.record(ws, "b")
        assert a["executor"] == self.executor and a[self.job_key] is not None
        assert a["state"] == "succeeded" and a["exit_code"] == 0 and a["metrics"] == {"step": 1, "loss": 0.5}
        assert a["command"] == "{python} prog.py {settings}" and a["argv"][1] == "prog.py"
        assert b["exit_code"] == 3 and b["reason"] == "exit code 3: ValueError: the learning rate is negative"
        assert views["e/b"]["reason"] == b["reason"]
        from lab.runs.status import table_rows

        cells = {row[0]: row for row in table_rows(ws)}
        assert cells["e/b"][4] == "3" and cells["e/b"][5].endswith("(ValueError: the learning rate is negative)")
        assert sorted(self.executions(ws)) == ["a", "b"]

    def test_what_succeeded_is_skipped_and_rerun_forces_it(self, lab_root):
        ws = self.lab(lab_root, {"a": {}})
        self.run(ws, ["e"])
        entries, _ = self.run(ws, ["e"])
        assert [e["action"] for e in entries] == ["skipped"]
        entries, _ = self.run(ws, ["e"], rerun=True)
        assert [e["action"] for e in entries] == ["queued"]
        assert self.executions(ws) == ["a", "a"]
        assert self.record(ws, "a")["attempt"] == 2

    def test_a_moved_lab_skips_what_succeeded(self, lab_root, tmp_path):
        ws = self.lab(lab_root, {"a": {}})
        self.run(ws, ["e"])
        wait_for(lambda: not lab_processes(lab_root), what="the runner exits")
        moved = tmp_path / "moved"
        shutil.copytree(lab_root, moved, ignore=shutil.ignore_patterns(".lab"))
        entries = self.run(Workspace(moved), ["e"], wait=False)
        assert [e["action"] for e in entries] == ["skipped"]
        assert self.executions(Workspace(moved)) == ["a"]

    def test_a_waiting_job_has_the_same_record_keys_on_every_executor(self, lab_root):
        ws = self.lab(lab_root, {"a": {"sleep": 3}, "b": {}})
        entries = self.run(ws, ["e"], wait=False)
        wait_for(lambda: self.record(ws, "a")["state"] == "running", what="a runs")
        queued = self.record(ws, "b")
        assert queued["state"] == "queued"
        assert set(queued) == QUEUED_KEYS | {self.job_key}
        assert queued["executor"] == self.executor
        active = control.follow_state(ws, list_settings(ws.experiment("e"))[1])
        assert active
        control.wait(ws, entries, poll=0.2)

    def test_active_answers_the_queued_and_running_runs(self, lab_root):
        ws = self.lab(lab_root, {"a": {"sleep": 3}, "b": {}})
        entries = self.run(ws, ["e"], wait=False)
        wait_for(lambda: self.record(ws, "a")["state"] == "running", what="a runs")
        executor = get(self.executor)
        runs = {r["setting"]: r for r in executor.active(ws)}
        assert {name: r["state"] for name, r in runs.items()} == {"a": "running", "b": "queued"}
        assert all(r["executor"] == self.executor and r["why"].startswith("already ") for r in runs.values())
        b = list_settings(ws.experiment("e"))[1]
        assert [r["setting"] for r in executor.active(ws, [b])] == ["b"]
        control.wait(ws, entries, poll=0.2)
        assert executor.active(ws) == []

    def test_cancel_removes_a_queued_run_and_says_so(self, lab_root):
        ws = self.lab(lab_root, {"a": {"sleep": 3}, "b": {}})
        entries = self.run(ws, ["e"], wait=False)
        wait_for(lambda: self.record(ws, "a")["state"] == "running", what="a runs")
        result = get(self.executor).cancel(ws, ["e/b"])
        assert set(result) == {"cancelled", "running"} and result["cancelled"] == ["e/b"]
        assert self.record(ws, "b")["state"] == "cancelled"
        views = {v["id"]: v for v in control.wait(ws, entries, poll=0.2)}
        assert views["e/a"]["state"] == "succeeded" and views["e/b"]["state"] == "cancelled"
        assert self.executions(ws) == ["a"]

    def test_stop_now_ends_the_running_run_and_records_it_cancelled(self, lab_root):
        ws = self.lab(lab_root, {"a": {"sleep": 60}, "b": {}})
        self.run(ws, ["e"], wait=False)
        wait_for(lambda: self.executions(ws) == ["a"], what="a runs")
        result = get(self.executor).stop(ws, now=True, grace=2.0)
        assert {"runner", "running", "cancelled", "queued"} <= set(result) <= {"runner", "running", "cancelled", "queued", "ended"}
        assert "e/a" in result["cancelled"]
        wait_for(lambda: self.record(ws, "a")["state"] == "cancelled", what="a recorded cancelled")
        assert self.executions(ws) == ["a"]  # b never started: the local queue stays stopped, Slurm cancelled it

    def test_reconcile_settles_a_run_that_ended_behind_labs_back(self, lab_root):
        ws = self.lab(lab_root, {"a": {"sleep": 60}})
        self.run(ws, ["e"], wait=False)
        wait_for(lambda: self.record(ws, "a")["state"] == "running", what="a runs")
        executor = get(self.executor)
        assert all(r.get("state") == "running" for r in executor.reconcile(ws))  # a live run is left alone
        assert self.record(ws, "a")["state"] == "running"
        self.end_behind_labs_back(ws, self.record(ws, "a"))
        wait_for(lambda: any(r.get("setting") == "a" and r.get("state") not in ("queued", "running")
                             for r in executor.reconcile(ws)) or self.record(ws, "a")["state"] not in ("queued", "running"),
                 what="reconcile settles a")
        assert self.record(ws, "a")["state"] in ("interrupted", "cancelled")


@pytest.fixture
def no_process_left(lab_root):
    yield
    kill_lab_processes(lab_root)


@pytest.mark.usefixtures("no_process_left")
class TestLocalExecutor(ExecutorContract):
    executor = "local"
    job_key = "job_id"

    def end_behind_labs_back(self, ws, rec):
        """kill -9 the runner, then the job's supervisor with its program: nobody is left to record the end."""
        from lab.runs.local.lock import runner_pid

        os.kill(runner_pid(ws.state_dir), signal.SIGKILL)
        wait_for(lambda: runner_pid(ws.state_dir) is None, what="the runner is gone")
        os.killpg(rec["pgid"], signal.SIGKILL)


@pytest.fixture
def slurm_cluster(lab_root):
    from helpers import cancel_jobs_of, require_slurm_cluster

    require_slurm_cluster()
    yield
    cancel_jobs_of(lab_root)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
class TestSlurmExecutor(ExecutorContract):
    executor = "slurm"
    job_key = "slurm_job_id"

    def end_behind_labs_back(self, ws, rec):
        """scancel the job from outside lab: only Slurm knows it ended."""
        subprocess.run(["scancel", "--signal=KILL", "--full", rec["slurm_job_id"]], check=True)
