"""Bad state in the runs wing heals or gives one clear line: odd setting names, NaN metrics, bad
grace values, wrongly typed record fields, a damaged queue, a garbage record, a full disk."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers import LabCLI, kill_lab_processes, wait_for, write_settings
from lab.core.settings import list_settings

PROGRAM = r"""
import json, os, sys
s = json.load(open(sys.argv[1]))
with open(os.environ["LAB_METRICS"], "a") as f:
    f.write('{"step": 1, "loss": NaN, "best": Infinity, "worst": -Infinity, "acc": 0.5}\n')
sys.exit(s.get("exit", 0))
"""


@pytest.fixture
def slab(lab_root):
    (lab_root / "prog.py").write_text(PROGRAM)
    write_settings(lab_root, "e", {}, command="{python} prog.py {settings}")
    yield LabCLI(lab_root)
    kill_lab_processes(lab_root)


def runs_dir(root):
    return root / "experiments" / "e" / "runs"


def test_a_setting_named_with_a_tab_or_newline_does_not_break_status(slab, lab_root):
    # Such names are refused when queued (they cannot be shown safely) ...
    write_settings(lab_root, "e", {"a\tb.json": {}, "c\nd.json": {}, "plain.json": {}})
    refused = slab("run", "e", "--wait")
    assert refused.returncode == 2 and "cannot be shown safely" in refused.stderr
    assert not runs_dir(lab_root).exists() or not list(runs_dir(lab_root).glob("*.json"))
    # ... but records of them (written by an older lab, or by hand) never break the status cache.
    for name in ("a\tb", "c\nd"):
        (lab_root / "experiments" / "e" / "settings" / f"{name}.json").unlink()
    assert slab("run", "e", "--wait").returncode == 0
    plain = json.loads((runs_dir(lab_root) / "plain.json").read_text())
    for name in ("a\tb", "c\nd"):
        (runs_dir(lab_root) / f"{name}.json").write_text(json.dumps({**plain, "setting": name}))
    for _ in range(2):  # the cache is written, then read back
        rows = slab.json("status")
        assert sorted(r["setting"] for r in rows) == ["a\tb", "c\nd", "plain"]
        assert all(r["state"] == "succeeded" for r in rows)
    table = slab("status", check=0).stdout
    assert "e/a?b" in table and "e/c?d" in table


def test_nan_and_infinity_never_reach_json(slab, lab_root):
    write_settings(lab_root, "e", {"a.json": {}})
    assert slab("run", "e", "--wait").returncode == 0
    text = slab("status", "--json", check=0).stdout
    assert "NaN" not in text.replace('"NaN"', "")
    [row] = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert row["metrics"] == {"step": 1, "loss": "NaN", "best": "Infinity", "worst": "-Infinity", "acc": 0.5}
    rec = (runs_dir(lab_root) / "a.json").read_text()
    json.loads(rec, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c} in the record"))


@pytest.mark.parametrize("grace", ["nan", "-1", "inf"])
def test_stop_grace_must_be_a_finite_number(slab, grace):
    proc = slab("stop", "--now", "--grace", grace)
    assert proc.returncode == 2 and "--grace must be a finite number of seconds" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("field, value, message", [
    ("history", "oops", "'history' must be a list of records"),
    ("history", [1, 2], "'history' must be a list of records"),
    ("attempt", "two", "'attempt' must be a whole number"),
])
def test_a_record_with_a_wrongly_typed_field_is_bad_input(slab, lab_root, field, value, message):
    write_settings(lab_root, "e", {"a.json": {}})
    runs_dir(lab_root).mkdir(exist_ok=True)
    (runs_dir(lab_root) / "a.json").write_text(json.dumps({"state": "succeeded", field: value}))
    proc = slab("run", "e")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"lab: error: experiments/e/runs/a.json: {message}")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["garbage", "empty", "half"])
def test_a_damaged_queue_is_kept_aside_and_rebuilt_from_the_records(slab, lab_root, damage):
    write_settings(lab_root, "e", {"a.json": {}, "b.json": {}})
    slab("status", check=0)
    from lab.core.workspace import Workspace
    from lab.runs import record as records
    from lab.runs.local.queue import Queue

    ws = Workspace(lab_root)
    queue = Queue(ws.state_dir)  # a queue with both jobs, as lab run leaves it before its runner takes them
    with queue.transaction():
        for setting in list_settings(ws.experiment("e")):
            job_id = queue.insert("e", setting.name, {}, "h", {})
            records.write_record(setting, records.queued(setting, executor="local", resolved={}, hash_="h", template=None,
                                                         argv=None, extra={"job_id": job_id}))
    queue.close()
    db = lab_root / ".lab" / "queue.db"
    raw = db.read_bytes()
    for suffix in ("-wal", "-shm"):
        (lab_root / ".lab" / f"queue.db{suffix}").unlink(missing_ok=True)
    db.write_bytes({"garbage": b"this is not a database" * 100, "empty": b"", "half": raw[: len(raw) // 2]}[damage])
    proc = slab("status", "--json", check=0)
    assert "was damaged" in proc.stderr and "rebuilt from the run records: 2 queued job(s)" in proc.stderr
    assert len(list((lab_root / ".lab").glob("queue.db.damaged-*"))) >= 1
    assert {r["setting"]: r["state"] for r in json.loads(proc.stdout)} == {"a": "queued", "b": "queued"}
    assert slab("run", "--wait").returncode == 0
    wait_for(lambda: {r["setting"]: r["state"] for r in slab.json("status")} == {"a": "succeeded", "b": "succeeded"},
             what="both ran from the rebuilt queue")


def test_a_garbage_record_is_kept_beside_the_new_one(slab, lab_root):
    write_settings(lab_root, "e", {"a.json": {}})
    runs_dir(lab_root).mkdir(exist_ok=True)
    (runs_dir(lab_root) / "a.json").write_text("{ this is not json")
    assert slab("run", "e", "--wait").returncode == 0
    kept = list(runs_dir(lab_root).glob("a.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{ this is not json"
    assert json.loads((runs_dir(lab_root) / "a.json").read_text())["state"] == "succeeded"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_on_a_full_disk_nothing_finished_runs_again(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        from lab.core.workspace import init

        root = mnt / "lab"
        init(root)
        (root / "prog.py").write_text(
            "import os, sys\nopen(os.path.join(os.environ['LAB_ROOT'], 'executions.txt'), 'a').write(os.environ['LAB_SETTING'] + '\\n')\n"
            "if os.environ['LAB_SETTING'] == 'a':\n"
            "    import time\n"
            "    rec = os.path.join(os.environ['LAB_ROOT'], 'experiments', 'e', 'runs', 'a.json')\n"
            "    while '\"running\"' not in open(rec).read(): time.sleep(0.01)\n"  # fill the disk once the job runs
            "    try:\n"
            "        with open(os.path.join(os.environ['LAB_ROOT'], 'fill'), 'wb') as f:\n"
            "            while True: f.write(b'x' * 4096); f.flush()\n"
            "    except OSError: pass\n")
        write_settings(root, "e", {"a.json": {}, "b.json": {}}, command="{python} prog.py {settings}")
        lab = LabCLI(root)
        lab("run", "e", check=0)
        from lab.runs.local.lock import runner_alive

        wait_for(lambda: (root / "executions.txt").exists(), what="a started")
        wait_for(lambda: not runner_alive(root / ".lab"), what="the runner exits")
        log = (root / ".lab" / "runner.log").read_text()
        assert "Traceback" not in log  # (its last line, "runner ... stops: ...", is written where the log has room)
        assert (root / "executions.txt").read_text().split() == ["a"], log
        (root / "fill").unlink()
        lab("run", check=0)
        wait_for(lambda: {r["setting"]: r["state"] for r in lab.json("status")} == {"a": "succeeded", "b": "succeeded"},
                 what="all recorded once space is back: " + (root / ".lab" / "runner.log").read_text())
        assert (root / "executions.txt").read_text().split() == ["a", "b"]  # a did not run again
        kill_lab_processes(root)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
