"""The Slurm executor: settings as Slurm jobs on a real single-node cluster on localhost, with the same records.

Tests marked `slurm` need the cluster (`scripts/slurm/up.sh`, which `.ci/run` runs); without one they skip
and say why, except in CI (`CI=true` or `LAB_REQUIRE_SLURM=1`), where a missing cluster is an error.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest

from helpers import wait_for as _wait_for
from helpers import cancel_jobs_of, require_slurm_cluster, write_settings
from lab.runs import record as records
from lab.runs.slurm import cluster as slurm
from lab.runs.slurm import executor as slurmqueue
from lab.errors import BadInput
from lab.core.workspace import Workspace
from lab.core.settings import find_setting, list_settings

# These predicates often ask the cluster: poll it gently.
wait_for = functools.partial(_wait_for, poll=0.2)

PROGRAM = """\
import json, os, sys, time
import lab
s = json.load(open(sys.argv[1]))
for i in range(3):
    lab.log_metrics(step=i, loss=1.0 / (i + 1))
print("hello from", os.environ["LAB_SETTING"], "job", os.environ.get("SLURM_JOB_ID"), flush=True)
if s.get("sleep"):
    open(os.path.join(os.environ["LAB_OUTPUT_DIR"], "started"), "w").write(str(os.getpid()))
    time.sleep(s["sleep"])
sys.exit(s.get("code", 0))
"""


@pytest.fixture
def cluster(lab_root):
    """The cluster, and at teardown every job this test's lab submitted is cancelled."""
    require_slurm_cluster()
    yield
    cancel_jobs_of(lab_root)


def _experiment(root: Path, name: str, settings: dict) -> None:
    (root / "prog.py").write_text(PROGRAM)
    write_settings(root, name, {f"{k}.json": v for k, v in settings.items()}, command="{python} prog.py {settings}")


# ---------------------------------------------------------------- without a cluster


def test_states_map_onto_lab_states():
    assert slurm.lab_state("PENDING") == ("queued", None)
    assert slurm.lab_state("RUNNING") == ("running", None)
    assert slurm.lab_state("COMPLETED") == ("succeeded", None)
    assert slurm.lab_state("FAILED")[0] == "failed"
    assert slurm.lab_state("TIMEOUT") == ("failed", "Slurm time limit reached")
    assert slurm.lab_state("OUT_OF_MEMORY") == ("failed", "out of memory")
    assert slurm.lab_state("CANCELLED by 0")[0] == "cancelled"
    assert slurm.lab_state("PREEMPTED") == ("interrupted", "preempted")
    assert slurm.lab_state("NODE_FAIL") == ("interrupted", "node failure")
    assert slurm._expand("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]


def test_options_from_lab_yaml_with_per_experiment_overrides(lab_root):
    (lab_root / "lab.yaml").write_text(
        "executor: slurm\nslurm:\n  partition: gpu\n  time: 120\n  cpus: 4\n  gpus: 1\n  mem: 16G\n  account: nlp\n"
        "  extra: ['--constraint=a100', '#SBATCH --qos=high']\n")
    exp = write_settings(lab_root, "e1", {"s1.json": {}})
    report = exp / "report.md"
    report.write_text(report.read_text().replace("tags: []\n", "tags: []\nslurm: {partition: debug, gpus: 'a100:2'}\n", 1))
    ws = Workspace(lab_root)
    e = ws.experiment("e1")
    opts = slurm.options_for(e)
    assert opts["partition"] == "debug" and opts["cpus"] == 4 and opts["gpus"] == "a100:2"
    lines = slurm.sbatch_lines(opts)
    assert lines == ["#SBATCH --partition=debug", "#SBATCH --time=120", "#SBATCH --cpus-per-task=4",
                     "#SBATCH --gres=gpu:a100:2", "#SBATCH --mem=16G", "#SBATCH --account=nlp",
                     "#SBATCH --constraint=a100", "#SBATCH --qos=high"]
    script = slurm.batch_script(ws.root, ws.root / ".lab/slurm/jobs/x.json", opts)
    assert script.startswith("#!/bin/bash\n") and "-m lab.runs.slurm.node" in script and "#SBATCH --gres=gpu:a100:2" in script
    s1 = list_settings(e)[0]
    assert slurm.executor_for(s1) == "slurm"
    assert slurm.executor_for(s1, on="local") == "local"


@pytest.mark.parametrize("yaml_text, message", [
    ("slurm:\n  partitoin: gpu\n", "lab.yaml: unknown slurm option 'partitoin'"),
    ("slurm: gpu\n", "lab.yaml: 'slurm' must be a mapping"),
    ("slurm:\n  extra: [1, 2]\n", "lab.yaml: slurm.extra must be a list of strings"),
    ("executor: kubernetes\n", "lab.yaml: executor: unknown executor 'kubernetes'"),
])
def test_bad_configuration_is_named(lab_root, yaml_text, message):
    (lab_root / "lab.yaml").write_text(yaml_text)
    write_settings(lab_root, "e1", {"s1.json": {}})
    e = Workspace(lab_root).experiment("e1")
    with pytest.raises(BadInput) as info:
        slurm.executor_for(list_settings(e)[0])
        slurm.options_for(e)
    assert message in str(info.value)


def test_bad_slurm_options_queue_nothing(lab, lab_root):
    _experiment(lab_root, "b1", {"s1": {}})
    (lab_root / "lab.yaml").write_text("slurm:\n  gpu: 1\n")
    proc = lab("run", "b1", "--on", "slurm")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "lab.yaml: unknown slurm option 'gpu'" in proc.stderr
    assert not (lab_root / "experiments/b1/runs").exists() and not (lab_root / ".lab/slurm/jobs").exists()


def test_no_cluster_is_one_clear_error(lab, lab_root):
    _experiment(lab_root, "b2", {"s1": {}})
    proc = lab("run", "b2", "--on", "slurm", env={"PATH": "/nonexistent"})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "lab: error: cannot submit to Slurm: Slurm's tools (sbatch, squeue) are not installed"
    assert not (lab_root / "experiments/b2/runs").exists()


def test_status_without_slurm_tools_shows_the_records(lab, lab_root):
    # A laptop reading the lab on the shared filesystem has no squeue: status shows what the records say.
    _experiment(lab_root, "b3", {"s1": {}})
    ws = Workspace(lab_root)
    setting = list_settings(ws.experiment("b3"))[0]
    records.write_record(setting, slurmqueue.queued_record(setting, {}, 1, "4242", None))
    rows = lab.json("status", env={"PATH": "/nonexistent"})
    assert [(r["setting"], r["state"], r["executor"], r["slurm_job_id"]) for r in rows] == [("s1", "queued", "slurm", "4242")]
    table = lab("status", env={"PATH": "/nonexistent"}, check=0).stdout
    assert "queued (slurm 4242)" in table


# ---------------------------------------------------------------- on the cluster


def test_gpus_per_run_becomes_the_gres_of_each_setting(lab_root):
    (lab_root / "lab.yaml").write_text("slurm: {partition: gpu, gpus: 'a100:1'}\n")
    exp = write_settings(lab_root, "e1", {"small.json": {}, "big.json": {}})
    write_settings(lab_root, "cpu", {"s.json": {}})
    report = exp / "report.md"
    report.write_text(report.read_text().replace("tags: []\n", "tags: []\ngpus_per_run: {big: 2}\n", 1))
    report = lab_root / "experiments" / "cpu" / "report.md"
    report.write_text(report.read_text().replace("tags: []\n", "tags: []\ngpus: none\n", 1))
    ws = Workspace(lab_root)
    big, small = find_setting(ws.experiment("e1"), "big"), find_setting(ws.experiment("e1"), "small")
    assert "#SBATCH --gres=gpu:a100:2" in slurm.sbatch_lines(slurm.options_for_setting(big))
    assert "#SBATCH --gres=gpu:a100:1" in slurm.sbatch_lines(slurm.options_for_setting(small))
    assert not any("--gres" in line for line in slurm.sbatch_lines(slurm.options_for_setting(find_setting(ws.experiment("cpu"), "s"))))


def test_the_drained_word_goes_out_once_when_every_slurm_job_has_ended(lab_root):
    write_settings(lab_root, "e1", {"a.json": {}, "b.json": {}})
    ws = Workspace(lab_root)
    a, b = find_setting(ws.experiment("e1"), "a"), find_setting(ws.experiment("e1"), "b")

    def put(setting, state, ended, metrics=None):
        records.write_record(setting, {"experiment": "e1", "setting": setting.name, "state": state, "executor": "slurm",
                                       "slurm_job_id": "7", "attempt": 1, "ended_at": ended, "metrics": metrics or {}})

    put(a, "succeeded", "2026-01-01T00:00:01+00:00", {"eval_accuracy": 0.8})
    put(b, "running", None)
    assert slurmqueue.drained_event(ws) is None  # b still runs
    put(b, "failed", "2026-01-01T00:00:02+00:00")
    event = slurmqueue.drained_event(ws)
    assert event["message"] == "1 succeeded, 1 failed; best eval_accuracy 0.8 (e1/a)"
    assert slurmqueue.drained_event(ws) is None  # the other array task that ends at the same moment sends nothing


@pytest.mark.slurm
def test_a_failing_slurm_job_and_the_drained_queue_each_send_one_message(cluster, lab_root):
    import http.server
    import threading

    posts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (lab_root / "lab.yaml").write_text(f"notify: ['json://127.0.0.1:{server.server_address[1]}/hook']\n")
        _experiment(lab_root, "e1", {"s1": {}, "s2": {"code": 3}})
        ws = Workspace(lab_root)
        chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("e1"))]
        slurmqueue.submit(ws, chosen)
        slurmqueue.wait(ws, [s for s, _ in chosen], poll_s=0.3)
        wait_for(lambda: len(posts) >= 2, timeout=60, what="two messages")
        assert sorted(p["title"] for p in posts) == [f"lab {lab_root.name}: e1/s2 failed",
                                                     f"lab {lab_root.name}: queue done with failures"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slurm
def test_settings_run_as_slurm_jobs_in_order_with_records_logs_and_metrics(cluster, lab_root):
    _experiment(lab_root, "e1", {"s1": {}, "s2": {"code": 3}, "s10": {}})
    ws = Workspace(lab_root)
    chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("e1"))]
    done = slurmqueue.submit(ws, chosen)
    assert [d.action for d in done] == ["queued"] * 3
    ids = [d.slurm_job_id for d in done]
    queued = records.read_record(chosen[2][0])
    assert queued["state"] in ("queued", "running", "succeeded") and queued["slurm_job_id"] == ids[2]
    # each job depends on the one before it, whatever its result
    deps = subprocess.run(["scontrol", "-o", "show", "job", ids[2]], capture_output=True, text=True).stdout
    if "Dependency=(null)" not in deps:  # (null) once the dependency is fulfilled, should the machine be slow
        assert f"Dependency=afterany:{ids[1]}" in deps

    final = slurmqueue.wait(ws, [s for s, _ in chosen], poll_s=0.3)
    assert [r["state"] for r in final] == ["succeeded", "failed", "succeeded"]
    assert final[1]["exit_code"] == 3 and final[1]["reason"].startswith("exit code 3: ")
    for rec, job_id in zip(final, ids):
        assert rec["executor"] == "slurm" and rec["slurm_job_id"] == job_id
        assert rec["metrics"] == {"step": 2, "loss": pytest.approx(1 / 3)}
        assert rec["settings_hash"] and rec["argv"][1] == "prog.py"
    # one after another: each started after the previous one ended
    assert final[0]["ended_at"] <= final[1]["started_at"] and final[1]["ended_at"] <= final[2]["started_at"]
    log = (lab_root / "experiments/e1/logs/s2.log").read_text()
    assert "===== lab: attempt 1 of e1/s2" in log and f"hello from s2 job {ids[1]}" in log
    assert (lab_root / "experiments/e1/models/s2").is_dir()

    # unchanged succeeded settings are skipped; --rerun runs them again as a new attempt
    again = slurmqueue.submit(ws, chosen[:1])
    assert again[0].action == "skipped"
    rerun = slurmqueue.submit(ws, chosen[:1], rerun=True)
    assert rerun[0].action == "queued"
    [rec] = slurmqueue.wait(ws, [chosen[0][0]], poll_s=0.3)
    assert rec["state"] == "succeeded" and rec["attempt"] == 2 and rec["history"][0]["slurm_job_id"] == ids[0]


@pytest.mark.slurm
def test_parallel_is_a_job_array_and_cancel_stops_a_running_job(cluster, lab_root):
    _experiment(lab_root, "e2", {"p1": {"sleep": 120}, "p2": {}})
    ws = Workspace(lab_root)
    chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("e2"))]
    done = slurmqueue.submit(ws, chosen, parallel=True)
    base = done[0].slurm_job_id.split("_")[0]
    assert [d.slurm_job_id for d in done] == [f"{base}_0", f"{base}_1"]
    # a job already queued or running is not submitted twice
    assert [d.action for d in slurmqueue.submit(ws, chosen, parallel=True)] == ["already", "already"]
    started = lab_root / "experiments/e2/models/p1/started"
    wait_for(started.exists, what="p1 to start")
    pid = int(started.read_text())
    [rec] = slurmqueue.cancel(ws, [chosen[0][0]])
    assert rec["state"] == "cancelled" and rec["signal"] == "SIGTERM"
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the program to end")
    final = slurmqueue.wait(ws, [s for s, _ in chosen], poll_s=0.3)
    assert [r["state"] for r in final] == ["cancelled", "succeeded"]


@pytest.mark.slurm
def test_a_job_cancelled_before_it_starts_is_recorded_cancelled(cluster, lab_root):
    _experiment(lab_root, "e3", {"a": {"sleep": 120}, "b": {}})
    ws = Workspace(lab_root)
    chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("e3"))]
    slurmqueue.submit(ws, chosen)
    wait_for((lab_root / "experiments/e3/models/a/started").exists, what="a to start")
    cancelled = slurmqueue.cancel(ws, running=False)  # `lab stop`: only the jobs that have not started
    assert [(r["setting"], r["state"], r["reason"]) for r in cancelled] == [("b", "cancelled", "cancelled before it started")]
    assert records.read_record(chosen[0][0])["state"] == "running"
    slurmqueue.cancel(ws)
    assert records.read_record(chosen[0][0])["state"] == "cancelled"


@pytest.mark.slurm
def test_a_requeued_job_is_interrupted_and_queued_again(cluster, lab_root):
    # `scontrol requeue` does to a running job what preemption or a node failure does: Slurm ends it and queues
    # it again under the same job id (it starts again only after a delay of minutes, so the test stops there).
    _experiment(lab_root, "e4", {"r": {"sleep": 120}})
    ws = Workspace(lab_root)
    chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("e4"))]
    [done] = slurmqueue.submit(ws, chosen)
    wait_for((lab_root / "experiments/e4/models/r/started").exists, what="r to start")
    subprocess.run(["scontrol", "requeue", done.slurm_job_id], check=True)
    rec = wait_for(lambda: (r := records.read_record(chosen[0][0]))["state"] == "queued" and r, what="queued again")
    assert rec["attempt"] == 2 and rec["slurm_job_id"] == done.slurm_job_id
    assert [(h["state"], h["reason"]) for h in rec["history"]] == [("interrupted", "Slurm requeued the job")]
    shown = wait_for(lambda: [r for r in slurmqueue.refresh(ws) if r["state"] == "queued"], what="Slurm to queue it again")
    assert shown[0]["slurm_state"] == "PENDING"


# ---------------------------------------------------------------- through the `lab` command


def _rows(lab, *targets):
    return {f"{r['experiment']}/{r['setting']}": r for r in lab.json("status", *targets)}


@pytest.mark.slurm
def test_lab_run_on_slurm_wait_and_status(cluster, lab, lab_root):
    _experiment(lab_root, "c1", {"s1": {}, "s2": {"code": 3}})
    proc = lab("run", "c1", "--on", "slurm", "--wait", timeout=180)
    assert proc.returncode == 1, proc.stderr  # one job failed
    assert "submitted c1/s1 (Slurm job" in proc.stderr and "failed c1/s2" in proc.stderr
    rows = _rows(lab, "c1")
    assert rows["c1/s1"]["state"] == "succeeded" and rows["c1/s1"]["executor"] == "slurm"
    assert rows["c1/s2"]["state"] == "failed" and rows["c1/s2"]["exit_code"] == 3
    assert rows["c1/s1"]["slurm_job_id"] and rows["c1/s1"]["metrics"]["loss"] == pytest.approx(1 / 3)
    table = lab("status", "c1", check=0).stdout
    assert f"succeeded (slurm {rows['c1/s1']['slurm_job_id']})" in table
    log = lab("logs", "c1/s1", check=0).stdout
    assert "hello from s1" in log
    # skipped as for local runs
    again = lab("run", "c1/s1", "--on", "slurm", check=0)
    assert "skipped c1/s1" in again.stderr


@pytest.mark.slurm
def test_default_executor_from_lab_yaml_and_parallel(cluster, lab, lab_root):
    (lab_root / "lab.yaml").write_text("executor: slurm\nslurm:\n  time: 10\n")
    _experiment(lab_root, "c2", {"a": {}, "b": {}})
    out = lab.json("run", "c2", "--parallel")
    assert [r["executor"] for r in out] == ["slurm", "slurm"]
    base = out[0]["slurm_job_id"].split("_")[0]
    assert [r["slurm_job_id"] for r in out] == [f"{base}_0", f"{base}_1"]
    wait_for(lambda: all(r["state"] == "succeeded" for r in _rows(lab, "c2").values()), what="both to succeed")
    # --on local overrides the configuration; --parallel only means something on Slurm
    bad = lab("run", "c2", "--on", "local", "--parallel")
    assert bad.returncode == 2 and "--parallel runs Slurm jobs at once" in bad.stderr


@pytest.mark.slurm
def test_lab_stop_now_cancels_a_running_slurm_job(cluster, lab, lab_root):
    _experiment(lab_root, "c3", {"long": {"sleep": 300}, "next": {}})
    lab("run", "c3", "--on", "slurm", check=0)
    started = lab_root / "experiments/c3/models/long/started"
    wait_for(started.exists, what="the job to start")
    pid = int(started.read_text())
    assert _rows(lab, "c3")["c3/long"]["state"] == "running"
    # plain `lab stop` cancels only what has not started
    stop = lab("stop", "--json", check=0)
    assert json.loads(stop.stdout)["slurm_cancelled"] == ["c3/next"]
    assert _rows(lab, "c3")["c3/long"]["state"] == "running"
    lab("stop", "--now", check=0, timeout=120)
    rows = _rows(lab, "c3")
    assert rows["c3/long"]["state"] == "cancelled" and rows["c3/long"]["signal"] == "SIGTERM"
    assert rows["c3/next"]["state"] == "cancelled"
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the program to end")


@pytest.mark.slurm
def test_lab_cancel_names_slurm_jobs(cluster, lab, lab_root):
    _experiment(lab_root, "c4", {"x": {"sleep": 300}, "y": {"sleep": 300}})
    lab("run", "c4", "--on", "slurm", check=0)
    wait_for((lab_root / "experiments/c4/models/x/started").exists, what="x to start")
    # a setting queued or running on Slurm is not queued locally too
    local = lab.json("run", "c4/x", "--on", "local")
    assert local[0]["action"] == "already running" and local[0]["executor"] == "slurm"
    proc = lab("cancel", "c4/y", check=0)
    assert "c4/y" in proc.stderr
    rows = _rows(lab, "c4")
    assert rows["c4/y"]["state"] == "cancelled" and rows["c4/x"]["state"] == "running"
    lab("cancel", "c4", check=0, timeout=120)
    assert _rows(lab, "c4")["c4/x"]["state"] == "cancelled"


@pytest.mark.slurm
def test_a_node_failure_is_interrupted_and_submitted_again(cluster, lab_root, monkeypatch):
    # A node failure cannot be staged on a one-node cluster, so Slurm's answer for that one job is stood in for;
    # the new submission is real.
    _experiment(lab_root, "e5", {"n": {}})
    ws = Workspace(lab_root)
    setting = list_settings(ws.experiment("e5"))[0]
    running = dict(slurmqueue.queued_record(setting, setting.resolve(), 1, "999999", None), state="running",
                   started_at=records.now_iso())
    records.write_record(setting, running)
    real_query = slurm.query
    monkeypatch.setattr(slurm, "query", lambda ids: {**real_query([i for i in ids if i != "999999"]),
                                                    **({"999999": {"state": "NODE_FAIL", "reason": "None", "exit_code": 0, "end": None}} if "999999" in ids else {})})
    [shown] = slurmqueue.refresh(ws, [setting])
    assert shown["state"] == "queued" and shown["attempt"] == 2 and shown["slurm_job_id"] != "999999"
    assert [(h["state"], h["slurm_job_id"]) for h in shown["history"]] == [("interrupted", "999999")]
    assert "node failure" in shown["history"][0]["reason"]
    [rec] = slurmqueue.wait(ws, [setting], poll_s=0.3)
    assert rec["state"] == "succeeded" and rec["attempt"] == 2


def test_a_slurm_jobs_metrics_are_captured_on_the_node(cluster, lab_root):
    """A program that prints its metrics (no LAB_METRICS) run as a Slurm job: the node captures them as the local
    runner does, and the record says where they came from."""
    (lab_root / "printer.py").write_text("print('step 1: loss=0.5 acc=0.7')\nprint('step 2: loss=0.25 acc=0.8')\n")
    write_settings(lab_root, "cap", {"s1.json": {}}, command="{python} printer.py")
    ws = Workspace(lab_root)
    chosen = [(s, s.resolve()) for s in list_settings(ws.experiment("cap"))]
    slurmqueue.submit(ws, chosen)
    [rec] = slurmqueue.wait(ws, [chosen[0][0]], poll_s=0.3)
    assert rec["state"] == "succeeded" and rec["executor"] == "slurm"
    assert rec["metrics"] == {"loss": 0.25, "acc": 0.8}
    assert rec["metrics_sources"] == {"loss": "output", "acc": "output"}
    rows = (lab_root / "experiments/cap" / rec["metrics_path"]).read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2]
