"""The program is an input: a changed program file makes the runs that used it stale, `lab run` runs them again,
`lab diff` names the change, and a run of a script git does not track can be reproduced.

Real parts: the real `lab` command and runner, a real program in `src/`, real git in tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import LabCLI, kill_lab_processes, wait_for, write_settings

TRAIN = """\
import json, os, sys, time
import lab
s = json.load(open(sys.argv[1]))
time.sleep(s.get("sleep", 0))
with open(os.path.join(os.environ["LAB_ROOT"], "starts.txt"), "a") as f:
    f.write(os.environ["LAB_SETTING"] + "\\n")
lab.log_metrics(step=1, score=s["lr"] * 2)
"""


def git(root: Path, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}).stdout


def starts(root: Path) -> list[str]:
    path = root / "starts.txt"
    return path.read_text().split() if path.exists() else []


def record(root: Path, exp: str, name: str) -> dict:
    return json.loads((root / "experiments" / exp / "runs" / f"{name}.json").read_text())


@pytest.fixture
def glab(lab_root):
    """A git-tracked lab with exp2 (two settings) run by src/train.py; processes killed at teardown."""
    (lab_root / "src").mkdir()
    (lab_root / "src" / "train.py").write_text(TRAIN)
    (lab_root / "src" / "helpers.py").write_text("SCALE = 1\n")
    write_settings(lab_root, "exp2", {"lr-high.json": {"lr": 0.1}, "lr-low.json": {"lr": 0.01}},
                   command="{python} src/train.py {settings}")
    (lab_root / ".gitignore").write_text((lab_root / ".gitignore").read_text() + "starts.txt\n")
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "exp2")
    cli = LabCLI(lab_root)
    yield cli
    kill_lab_processes(lab_root)


def test_record_holds_the_hashes_of_the_program_files(glab, lab_root):
    glab("run", "exp2/lr-low", "--wait", check=0)
    rec = record(lab_root, "exp2", "lr-low")
    assert set(rec["code"]) == {"src/train.py", "src/helpers.py"}  # tracked program files; no report, no lab.yaml
    assert "untracked" not in rec


@pytest.mark.parametrize("commit", [False, True], ids=["uncommitted", "committed"])
def test_edited_script_makes_runs_stale_and_lab_run_runs_them_again(glab, lab_root, commit):
    glab("run", "exp2", "--wait", check=0)
    assert sorted(starts(lab_root)) == ["lr-high", "lr-low"]
    proc = glab("run", "exp2", "--wait", check=0)  # an unchanged tree skips as before
    assert len(starts(lab_root)) == 2, proc.stderr

    train = lab_root / "src" / "train.py"
    train.write_text(train.read_text() + "# fix\n")
    if commit:
        git(lab_root, "commit", "-q", "-am", "fix")
    rows = {r["setting"]: r for r in glab.json("status")}
    assert {n: r["state"] for n, r in rows.items()} == {"lr-high": "stale", "lr-low": "stale"}
    assert rows["lr-high"]["changed_inputs"] == ["src/train.py"]
    assert glab("status", check=0).stdout.count("stale (src/train.py changed)") == 2

    proc = glab("run", "exp2", "--wait", check=0)
    assert "queued exp2/lr-high" in proc.stderr and "queued exp2/lr-low" in proc.stderr
    assert len(starts(lab_root)) == 4
    assert {r["state"] for r in glab.json("status")} == {"succeeded"}
    glab("run", "exp2", "--wait", check=0)
    assert len(starts(lab_root)) == 4  # up to date again


def test_prose_and_experiment_files_are_not_code(glab, lab_root):
    glab("run", "exp2/lr-low", "--wait", check=0)
    (lab_root / "NOTES.md").write_text("thoughts\n")
    git(lab_root, "add", "NOTES.md")
    report = lab_root / "experiments" / "exp2" / "report.md"
    report.write_text(report.read_text() + "\nA finding.\n")
    assert glab.json("status")[0]["state"] == "succeeded"


def test_code_globs_in_the_report_choose_the_program_files(glab, lab_root):
    report = lab_root / "experiments" / "exp2" / "report.md"
    report.write_text(report.read_text().replace("tags: []", "tags: []\ncode: ['src/train.py']", 1))
    glab("run", "exp2/lr-low", "--wait", check=0)
    assert set(record(lab_root, "exp2", "lr-low")["code"]) == {"src/train.py"}
    (lab_root / "src" / "helpers.py").write_text("SCALE = 2\n")  # not in the code set any more
    assert glab.json("status")[0]["state"] == "succeeded"


def test_a_bad_code_glob_is_one_line_and_nothing_is_queued(glab, lab_root):
    (lab_root / "lab.yaml").write_text("code: 3\n")
    proc = glab("run", "exp2")
    assert proc.returncode == 2 and "lab.yaml: 'code' must be a glob or a list of globs" in proc.stderr
    assert not (lab_root / "experiments" / "exp2" / "runs").exists()


def test_diff_shows_the_code_that_changed_between_runs(glab, lab_root):
    glab("run", "exp2/lr-low", "--wait", check=0)
    train = lab_root / "src" / "train.py"
    train.write_text(train.read_text() + "# fix\n")
    glab("run", "exp2/lr-low", "--wait", check=0)
    d = glab.json("diff", "exp2/lr-low@1", "exp2/lr-low@2")
    assert list(d["code_files"]) == ["src/train.py"]
    assert "src/train.py" in glab("diff", "exp2/lr-low@1", "exp2/lr-low@2", check=0).stdout


def test_an_untracked_script_is_kept_and_reproduces(glab, lab_root):
    new = lab_root / "src" / "train_new.py"
    new.write_text(TRAIN.replace("* 2", "* 3"))
    write_settings(lab_root, "exp5", {"s1.json": {"lr": 0.5}}, command="{python} src/train_new.py {settings}")
    glab("run", "exp5", "--wait", check=0)
    rec = record(lab_root, "exp5", "s1")
    assert rec["state"] == "succeeded" and rec["untracked"] == ["src/train_new.py"] and rec["git"]["dirty"] is True
    kept = lab_root / "experiments" / "exp5" / "runs" / "files" / rec["code"]["src/train_new.py"]
    assert kept.read_text() == new.read_text()
    new.unlink()  # gone from the lab; the record's copy remains
    proc = glab("reproduce", "exp5/s1", check=0)
    assert "reproduced exactly" in proc.stderr, proc.stderr


def test_a_misspelled_script_is_refused_when_queued(glab, lab_root):
    report = lab_root / "experiments" / "exp2" / "report.md"
    report.write_text(report.read_text().replace("src/train.py", "src/trian.py"))
    proc = glab("run", "exp2")
    assert proc.returncode == 2 and "command: 'src/trian.py' does not exist" in proc.stderr
    assert not (lab_root / "experiments" / "exp2" / "runs").exists()


def test_a_queued_job_runs_its_settings_and_command_as_queued_and_says_so(glab, lab_root):
    write_settings(lab_root, "slow", {"s.json": {}}, command='{python} -c "import time; time.sleep(60)" {settings}')
    glab("run", "slow", check=0)  # holds the runner, so exp2/lr-low waits in the queue
    wait_for(lambda: record(lab_root, "slow", "s")["state"] == "running", what="slow/s running")
    glab("run", "exp2/lr-low", check=0)
    setting = lab_root / "experiments" / "exp2" / "settings" / "lr-low.json"
    setting.write_text(json.dumps({"lr": 0.02}))
    report = lab_root / "experiments" / "exp2" / "report.md"
    (lab_root / "src" / "other.py").write_text(TRAIN.replace("* 2", "* 5"))
    report.write_text(report.read_text().replace("src/train.py", "src/other.py"))
    proc = glab("run", "exp2/lr-low")
    assert proc.returncode == 0
    assert "exp2/lr-low is already queued" in proc.stderr and "settings and command changed since it was queued" in proc.stderr
    assert "lab cancel exp2/lr-low && lab run exp2/lr-low" in proc.stderr
    glab("stop", "--now", "--grace", "1", check=0)  # ends slow/s; exp2/lr-low stays queued
    glab("run", check=0)  # resume: what was queued runs
    wait_for(lambda: record(lab_root, "exp2", "lr-low")["state"] == "succeeded", what="exp2/lr-low succeeded")
    rec = record(lab_root, "exp2", "lr-low")
    assert rec["settings"] == {"lr": 0.01} and rec["command"] == "{python} src/train.py {settings}"
    assert rec["metrics"]["score"] == 0.02 and rec["fixed_when_queued"] == ["settings", "command"]


def test_the_files_a_command_names_are_found_and_bookkeeping_is_not(tmp_path):
    from lab.runs.code import is_program_file, missing_program, named_files

    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "train.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "run.py").write_text("")
    (tmp_path / "experiments" / "e" / "runs").mkdir(parents=True)
    (tmp_path / "experiments" / "e" / "runs" / "s.settings.json").write_text("{}")
    (tmp_path / "conf.yaml").write_text("")
    argv = ["/usr/bin/python3", "src/train.py", "--config=conf.yaml", str(tmp_path / "experiments/e/runs/s.settings.json")]
    assert named_files(tmp_path, argv) == ["src/train.py", "conf.yaml"]
    assert named_files(tmp_path, ["python", "-m", "pkg.run"]) == ["pkg/run.py"]
    assert missing_program(tmp_path, ["python", "src/trian.py", "x"]) == "src/trian.py"
    assert missing_program(tmp_path, ["python", "-u", "src/train.py"]) is None
    assert missing_program(tmp_path, ["python", "-m", "nowhere"]) is None
    assert [p for p in ("src/a.py", "README.md", "lab.yaml", "docs/x.py", "experiments/e/p.py", ".github/w.yml")
            if is_program_file(p)] == ["src/a.py"]


def test_an_interrupted_reproduction_leaves_lab_status_as_it_was(glab, lab_root):
    import signal

    write_settings(lab_root, "exp2", {"slow.json": {"lr": 0.3, "sleep": 1.5}})
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "slow")
    glab("run", "exp2/slow", "--wait", check=0)
    original = record(lab_root, "exp2", "slow")
    before = glab.json("status", "exp2")
    proc = subprocess.Popen([sys.executable, "-m", "lab", "--root", str(lab_root), "reproduce", "exp2/slow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (lab_root / "experiments/exp2/logs/reproduce/slow.log").exists(), what="the reproduction starts")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "the setting's record and state are unchanged" in err
    after = glab.json("status", "exp2")
    assert [(r["setting"], r["state"], r["attempt"], r["metrics"]) for r in after] == \
           [(r["setting"], r["state"], r["attempt"], r["metrics"]) for r in before]
    rec = record(lab_root, "exp2", "slow")
    assert rec["state"] == "succeeded" and rec["metrics"] == original["metrics"] and rec["reproduction"]["state"] == "cancelled"
    assert "skipped exp2/slow" in glab("run", "exp2/slow", check=0).stderr
