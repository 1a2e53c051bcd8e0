"""What a run depended on, and drift from it: inputs and environments in run records, stale runs, lab reproduce,
lab diff, sweeps.

Real parts: the real `lab` command, the real runner and real programs (a tiny deterministic one that reads its
settings' files the way lab.train does), exp1's own settings and data copied from the repository, and real git.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import LabCLI, REPO, kill_lab_processes, write_settings

# Reads the data files its settings name (relative to the experiment directory, as lab.train does) and logs
# metrics that depend on the data, the settings and FACTOR, deterministically.
PROGRAM = r'''
import hashlib, json, os, sys
import lab
FACTOR = 1
s = json.load(open(sys.argv[1]))
exp = os.environ["LAB_EXPERIMENT_DIR"]
with open(os.path.join(os.environ["LAB_ROOT"], "starts.txt"), "a") as f:
    f.write(os.environ["LAB_SETTING"] + "\n")
data = open(os.path.join(exp, s["train_file"]), "rb").read()
digest = int(hashlib.sha256(data).hexdigest()[:8], 16) / 16**8
lab.log_metrics(step=1, loss=round(1 - digest * s["learning_rate"] * 1000, 12))
lab.log_metrics(step=2, eval_accuracy=round(FACTOR * digest * s["learning_rate"] * 1000, 12), lines=data.count(b"\n"))
open(os.path.join(os.environ["LAB_OUTPUT_DIR"], "model.txt"), "w").write(f"factor {FACTOR}\n")
'''
COMMAND = "{python} prog.py {settings}"



@pytest.fixture
def dlab(lab_root):
    """A lab with a copy of the repository's exp1 (settings, data, report) run by PROGRAM; processes killed at teardown."""
    (lab_root / "prog.py").write_text(PROGRAM)
    exp = lab_root / "experiments" / "exp1"
    shutil.copytree(REPO / "experiments" / "exp1" / "settings", exp / "settings")
    shutil.copytree(REPO / "experiments" / "exp1" / "data", exp / "data")
    shutil.copy(REPO / "experiments" / "exp1" / "report.md", exp / "report.md")
    report = exp / "report.md"
    report.write_text(report.read_text().replace("\ncommand:\n", f"\ncommand: {json.dumps(COMMAND)}\n", 1))
    cli = LabCLI(lab_root)
    yield cli
    kill_lab_processes(lab_root)


def record(root: Path, name: str, exp: str = "exp1") -> dict:
    return json.loads((root / "experiments" / exp / "runs" / f"{name}.json").read_text())


def starts(root: Path) -> list[str]:
    path = root / "starts.txt"
    return path.read_text().split() if path.exists() else []


def git(root: Path, *args) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}).stdout


# -- inputs and environment in the record ----------------------------------------------------------------------


def test_record_holds_input_hashes_and_the_environment_once(dlab, lab_root):
    dlab("run", "exp1", "--wait", check=0)
    rec = record(lab_root, "lr-high")
    data = lab_root / "experiments" / "exp1" / "data"
    import hashlib

    want = hashlib.sha256((data / "train.jsonl").read_bytes()).hexdigest()
    assert rec["inputs"]["experiments/exp1/data/train.jsonl"] == want
    assert set(rec["inputs"]) == {f"experiments/exp1/data/{n}.jsonl" for n in ("train", "validation", "test")} | {
        "experiments/exp1/settings/lr-high.jsonnet"}
    # The package set: stored once, beside the records, named by its hash; the record holds only the hash.
    env_file = lab_root / "experiments" / "exp1" / "runs" / "env" / f"{rec['environment']}.txt"
    lines = env_file.read_text().splitlines()
    from importlib import metadata

    assert f"click=={metadata.version('click')}" in lines and len(lines) > 20
    assert record(lab_root, "lr-low")["environment"] == rec["environment"]
    assert [p.name for p in env_file.parent.iterdir()] == [env_file.name]


def test_lab_bookkeeping_is_never_an_input(tmp_path):
    from lab.core.workspace import Workspace, init
    from lab.runs.inputs import input_paths

    root = tmp_path / "lab"
    init(root)
    write_settings(root, "e", {"s.json": {}})
    other = write_settings(root, "other", {})
    exp = root / "experiments" / "e"
    for d in ("models/s", "models/s/sub", "runs", "logs", "data/imgs"):
        (exp / d).mkdir(parents=True, exist_ok=True)
    (other / "models" / "best").mkdir(parents=True)
    (exp / "data" / "imgs" / "a.png").write_bytes(b"x")
    resolved = {"output_dir": "models/s", "nested": {"out": "models/s/sub", "logs": "logs", "runs": "runs"},
                "everything": ".", "root": "../..", "lab": str(root), "outside": "/etc/hostname",
                "images": ["data/imgs"], "warm_start": "../other/models/best", "hub": "bert-base-uncased",
                "state": str(root / ".lab"), "url": "https://example.org/data"}
    found = input_paths(root, exp, resolved, output_dir=exp / "models" / "s")
    assert sorted(found) == ["experiments/e/data/imgs", "experiments/other/models/best"]
    ws = Workspace(root)
    assert ws.root == root


def test_directory_hash_covers_its_files_and_the_cache_avoids_rereading(tmp_path):
    from lab.runs.inputs import HashCache

    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"a" * 1000)
    (d / "sub" / "b.txt").write_text("b")
    cache = HashCache(tmp_path / "cache.tsv")
    first = cache.hash_path(str(d))
    cache.save()
    again = HashCache(tmp_path / "cache.tsv")
    assert again.hash_path(str(d)) == first and not again.changed  # all from the cache
    (d / "sub" / "b.txt").write_text("c")
    assert again.hash_path(str(d)) != first
    (d / "sub" / "b.txt").write_text("b")
    os.rename(d / "sub" / "b.txt", d / "sub" / "renamed.txt")
    assert again.hash_path(str(d)) != first  # names count too


def test_environment_is_read_from_metadata_like_pip_freeze():
    from importlib import metadata

    from lab.runs import environment

    digest, text = environment.current([sys.executable])
    pkgs = environment.parse_freeze(text)
    for name in ("click", "pytest", "PyYAML"):
        assert pkgs.get(metadata.metadata(name)["Name"]) == metadata.version(name)
    assert digest == environment.env_hash(text) and len(digest) == 16


def test_a_record_with_100_inputs_and_300_packages_stays_small(tmp_path):
    from lab.core.settings import find_setting
    from lab.core.workspace import Workspace, init
    from lab.runs.attempt import Attempt

    root = tmp_path / "lab"
    init(root)
    exp = write_settings(root, "e", {})
    (exp / "data").mkdir()
    files = []
    for i in range(100):
        (exp / "data" / f"shard-{i:03d}.jsonl").write_text(f"{i}\n")
        files.append(f"data/shard-{i:03d}.jsonl")
    (exp / "settings" / "s.json").write_text(json.dumps({"train_files": files, "learning_rate": 1e-4}))
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").write_text("")
    (venv / "pyvenv.cfg").write_text("home = /nonexistent/bin\ninclude-system-site-packages = false\n")
    for i in range(300):
        info = site / f"package_number_{i:03d}-{i}.0.{i}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: package-number-{i:03d}\nVersion: {i}.0.{i}\n\nlong text\n")
    setting = find_setting(Workspace(root).experiment("e"), "s")
    att = Attempt(setting, setting.resolve(), base_env={"PATH": os.defpath})
    att.argv = [str(venv / "bin" / "python"), "train.py", "{settings}"]
    rec = att._running("2026-01-01T00:00:00+00:00")  # the record of the attempt as it starts
    assert len(rec["inputs"]) == 101  # 100 shards and the setting's own file
    from lab.runs.environment import flush

    flush()  # the environment file is written beside the record, in a thread
    env_file = exp / "runs" / "env" / f"{rec['environment']}.txt"
    assert len(env_file.read_text().splitlines()) == 300
    size = len((json.dumps(rec, indent=2, ensure_ascii=False) + "\n").encode())
    assert size < 20_000, size


# -- stale runs --------------------------------------------------------------------------------------------------


def test_changed_training_data_makes_both_runs_stale_and_lab_run_trains_them_again(dlab, lab_root):
    dlab("run", "exp1", "--wait", check=0)
    assert starts(lab_root) == ["lr-high", "lr-low"]
    # Nothing changed: both are skipped.
    proc = dlab("run", "exp1", "--wait", check=0)
    assert "skipped 2 settings that already succeeded; --rerun runs them" in proc.stderr and starts(lab_root) == ["lr-high", "lr-low"]
    assert {r["state"] for r in dlab.json("status")} == {"succeeded"}

    train = lab_root / "experiments" / "exp1" / "data" / "train.jsonl"
    data = bytearray(train.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")  # one byte
    train.write_bytes(bytes(data))

    rows = {r["setting"]: r for r in dlab.json("status")}
    assert {n: r["state"] for n, r in rows.items()} == {"lr-high": "stale", "lr-low": "stale"}
    assert rows["lr-high"]["changed_inputs"] == ["experiments/exp1/data/train.jsonl"]
    table = dlab("status", check=0).stdout
    assert table.count("stale (data/train.jsonl changed)") == 2
    compare = dlab.json("compare", "exp1")
    assert {r["setting"]: r["state"] for r in compare["runs"]} == {"lr-high": "stale", "lr-low": "stale"}
    assert compare["runs"][0]["changed_inputs"] == ["experiments/exp1/data/train.jsonl"]
    assert "lr-high is stale: data/train.jsonl changed since it ran" in dlab("compare", "exp1", check=0).stdout

    proc = dlab("run", "exp1", "--wait", check=0)
    assert "queued exp1/lr-high" in proc.stderr and "queued exp1/lr-low" in proc.stderr
    assert starts(lab_root) == ["lr-high", "lr-low", "lr-high", "lr-low"]
    assert {r["state"] for r in dlab.json("status")} == {"succeeded"}
    dlab("run", "exp1", "--wait", check=0)  # and now they are up to date again
    assert len(starts(lab_root)) == 4
    # A changed settings file that resolves to the same settings is not a reason to run again.
    setting = lab_root / "experiments" / "exp1" / "settings" / "lr-high.jsonnet"
    setting.write_text("// a comment\n" + setting.read_text())
    dlab("run", "exp1", "--wait", check=0)
    assert len(starts(lab_root)) == 4
    dlab("run", "exp1/lr-low", "--rerun", "--wait", check=0)  # --rerun still forces
    assert len(starts(lab_root)) == 5


def test_a_deleted_input_makes_the_run_stale(dlab, lab_root):
    dlab("run", "exp1/lr-low", "--wait", check=0)
    (lab_root / "experiments" / "exp1" / "data" / "test.jsonl").unlink()
    rows = dlab.json("status")
    assert rows[0]["state"] == "stale" and rows[0]["changed_inputs"] == ["experiments/exp1/data/test.jsonl"]


# -- lab diff ----------------------------------------------------------------------------------------------------


def test_diff_of_the_shipped_exp1_runs_shows_only_the_learning_rate_and_the_metric_deltas():
    cli = LabCLI(REPO)
    d = cli.json("diff", "exp1/lr-low", "exp1/lr-high")
    low = json.loads((REPO / "experiments/exp1/runs/lr-low.json").read_text())
    high = json.loads((REPO / "experiments/exp1/runs/lr-high.json").read_text())
    assert d["settings"] == {"learning_rate": [low["settings"]["learning_rate"], high["settings"]["learning_rate"]]}
    assert d["command"] is None and d["code"]["same"]
    acc = d["metrics"]["eval_accuracy"]
    assert acc == {"a": low["metrics"]["eval_accuracy"], "b": high["metrics"]["eval_accuracy"],
                   "delta": pytest.approx(high["metrics"]["eval_accuracy"] - low["metrics"]["eval_accuracy"])}
    text = cli("diff", "exp1/lr-low", "exp1/lr-high", check=0).stdout
    assert "settings: 1 differ\n  learning_rate  2e-05 -> 0.0001" in text
    assert "eval_accuracy" in text and "command: the same" in text


def test_diff_refuses_unknown_runs_with_one_line(dlab, lab_root):
    dlab("run", "exp1/lr-low", "--wait", check=0)
    proc = dlab("diff", "exp1/lr-low@7", "exp1/lr-low")
    assert proc.returncode == 2 and proc.stderr.strip() == "lab: error: exp1/lr-low has no attempt 7 (attempts: 1)"
    proc = dlab("diff", "exp1/lr-low", "exp1/lr-high")
    assert proc.returncode == 2 and "exp1/lr-high has no run record" in proc.stderr and len(proc.stderr.splitlines()) == 1


# -- lab reproduce -----------------------------------------------------------------------------------------------


def test_reproduce_runs_the_recorded_code_in_a_worktree_and_gives_the_same_metrics(dlab, lab_root):
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "exp1")
    dlab("run", "exp1/lr-high", "--wait", check=0)
    original = record(lab_root, "lr-high")
    assert original["git"]["commit"] and not original["git"]["dirty"]
    # An unrelated commit, then an edit of the program that changes its result.
    (lab_root / "NOTES.md").write_text("unrelated\n")
    git(lab_root, "add", "NOTES.md")
    git(lab_root, "commit", "-q", "-m", "notes")
    prog = lab_root / "prog.py"
    prog.write_text(prog.read_text().replace("FACTOR = 1", "FACTOR = 2"))
    edited = prog.read_text()
    status_before = dlab.json("status")
    before = git(lab_root, "status", "--porcelain=v1", "--untracked-files=all", "--ignored"), git(lab_root, "diff"), git(lab_root, "rev-parse", "HEAD")
    assert " M prog.py" in before[0]

    proc = dlab("reproduce", "exp1/lr-high", check=0)
    assert "reproducing exp1/lr-high@1 at commit" in proc.stderr
    assert "metrics reproduced exactly" in proc.stderr, proc.stderr
    after = git(lab_root, "status", "--porcelain=v1", "--untracked-files=all", "--ignored"), git(lab_root, "diff"), git(lab_root, "rev-parse", "HEAD")
    # Only lab's own record files changed; the code, index and HEAD did not.
    changed = {line for line in after[0].splitlines()} ^ {line for line in before[0].splitlines()}
    assert all("experiments/exp1/runs/" in c or "experiments/exp1/logs/" in c or "experiments/exp1/models/" in c for c in changed), changed
    assert before[1:] == after[1:] and prog.read_text() == edited
    assert "lab-reproduce" not in git(lab_root, "worktree", "list")

    # A side attempt: the setting's record keeps its attempt, state and metrics; the outcome is kept beside it.
    new = record(lab_root, "lr-high")
    assert new["attempt"] == 1 and new["state"] == "succeeded" and new["metrics"] == original["metrics"]
    assert new["reproduction"]["reproduces"] == 1 and new["reproduction"]["exact"] is True
    kept = json.loads((lab_root / "experiments/exp1/runs/reproduce/lr-high.json").read_text())["reproductions"]
    assert kept[-1]["metrics"] == original["metrics"] and kept[-1]["git"]["commit"] == original["git"]["commit"]
    assert (lab_root / "experiments/exp1/models/reproduce/lr-high/model.txt").read_text() == "factor 1\n"
    status_after = dlab.json("status")
    assert [(r["setting"], r["state"]) for r in status_after] == [(r["setting"], r["state"]) for r in status_before]
    assert next(r for r in status_after if r["setting"] == "lr-high")["reproduction"]["exact"] is True


def test_an_interrupted_or_failed_reproduction_leaves_the_setting_as_it_was(dlab, lab_root):
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "exp1")
    dlab("run", "exp1/lr-low", "--wait", check=0)
    original = record(lab_root, "lr-low")
    # The recorded code now fails (its uncommitted diff breaks the program): the reproduction fails.
    path = lab_root / "experiments/exp1/runs/lr-low.json"
    broken = dict(original, git={**original["git"], "dirty": True, "diff": git_diff_breaking(lab_root)})
    path.write_text(json.dumps(broken))
    proc = dlab("reproduce", "exp1/lr-low")
    assert proc.returncode == 1 and "the reproduction of exp1/lr-low@1 failed" in proc.stderr, proc.stderr
    rec = record(lab_root, "lr-low")
    assert rec["state"] == "succeeded" and rec["attempt"] == 1 and rec["reproduction"]["state"] == "failed"
    assert dlab.json("status")[0]["state"] == "succeeded"
    proc = dlab("run", "exp1/lr-low", "--wait", check=0)
    assert "skipped" in proc.stderr and starts(lab_root).count("lr-low") == 1


def git_diff_breaking(root: Path) -> str:
    prog = root / "prog.py"
    text = prog.read_text()
    prog.write_text(text.replace("FACTOR = 1", "raise SystemExit('broken on purpose')"))
    diff = git(root, "diff", "prog.py")
    prog.write_text(text)
    return diff


def test_reproduce_links_inputs_the_commit_lacks_and_names_those_that_changed(dlab, lab_root):
    (lab_root / ".gitignore").write_text((lab_root / ".gitignore").read_text() + "experiments/exp1/data/\n")
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "code only: the data are not in git")
    dlab("run", "exp1/lr-high", "--wait", check=0)
    original = record(lab_root, "lr-high")
    dlab("reproduce", "exp1/lr-high", check=0)  # the data, linked in from the lab, are unchanged
    assert record(lab_root, "lr-high")["metrics"] == original["metrics"]
    train = lab_root / "experiments/exp1/data/train.jsonl"
    train.write_text(train.read_text() + '{"text": "one more", "label": "sports"}\n')
    proc = dlab("reproduce", "exp1/lr-high", "--attempt", "1", check=0)
    assert "lab: warning: input experiments/exp1/data/train.jsonl differs from the recorded one" in proc.stderr
    assert "reproduced exactly" not in proc.stderr
    rec = record(lab_root, "lr-high")
    assert rec["attempt"] == 1 and rec["metrics"] == original["metrics"] and rec["reproduction"]["exact"] is False
    kept = json.loads((lab_root / "experiments/exp1/runs/reproduce/lr-high.json").read_text())["reproductions"]
    assert len(kept) == 2 and kept[-1]["metrics"] != original["metrics"]
    assert kept[-1]["inputs"]["experiments/exp1/data/train.jsonl"] != original["inputs"]["experiments/exp1/data/train.jsonl"]


def test_reproduce_refuses_without_git_or_without_the_commit(dlab, lab_root):
    dlab("run", "exp1/lr-low", "--wait", check=0)
    proc = dlab("reproduce", "exp1/lr-low")
    assert proc.returncode == 1 and "was not run in a git repository" in proc.stderr and len(proc.stderr.splitlines()) == 1
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "c")
    path = lab_root / "experiments/exp1/runs/lr-low.json"
    rec = json.loads(path.read_text())
    rec["git"] = {"commit": "0" * 40, "dirty": False, "diff": ""}
    path.write_text(json.dumps(rec))
    proc = dlab("reproduce", "exp1/lr-low")
    assert proc.returncode == 1 and "commit 000000000000 of exp1/lr-low@1 is not in this repository" in proc.stderr
    assert json.loads(path.read_text()) == rec  # nothing was run or written


def test_reproduce_applies_the_recorded_uncommitted_diff(dlab, lab_root):
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "c")
    prog = lab_root / "prog.py"
    prog.write_text(prog.read_text().replace("FACTOR = 1", "FACTOR = 3"))  # uncommitted when it runs
    dlab("run", "exp1/lr-low", "--wait", check=0)
    original = record(lab_root, "lr-low")
    assert original["git"]["dirty"] and "FACTOR = 3" in original["git"]["diff"]
    git(lab_root, "checkout", "-q", "prog.py")  # the edit is gone from the working tree
    dlab("reproduce", "exp1/lr-low", check=0)
    assert record(lab_root, "lr-low")["reproduction"]["exact"] is True
    assert (lab_root / "experiments/exp1/models/reproduce/lr-low/model.txt").read_text() == "factor 3\n"


# -- sweeps ------------------------------------------------------------------------------------------------------

SWEEP = """// 3 learning rates x 2 seeds
local base = import "base.libsonnet";
[
  base + { learning_rate: lr, seed: seed }
  for lr in [1e-4, 3e-4, 0.01]
  for seed in [1, 2]
]
"""


def test_a_3x2_sweep_gives_six_settings_each_with_its_own_record_log_and_output(dlab, lab_root):
    settings = lab_root / "experiments" / "exp1" / "settings"
    (settings / "lr-sweep.jsonnet").write_text(SWEEP)
    shown = dlab.json("show", "exp1")["settings"]
    names = [n for n in shown if n.startswith("lr-sweep")]
    assert names == [f"lr-sweep[learning_rate={lr},seed={s}]" for lr in ("1e-4", "3e-4", "0.01") for s in (1, 2)]
    assert shown[names[0]] == "settings/lr-sweep.jsonnet"
    assert json.loads(dlab("show", "exp1/lr-sweep[learning_rate=3e-4,seed=2]", check=0).stdout)["seed"] == 2

    proc = dlab("run", "exp1/lr-sweep", "--wait", check=0)
    assert proc.stderr.count("queued exp1/lr-sweep[") == 6
    exp = lab_root / "experiments" / "exp1"
    for name in names:
        rec = record(lab_root, name)
        assert rec["state"] == "succeeded" and rec["setting"] == name
        assert (exp / "logs" / f"{name}.log").is_file() and (exp / "models" / name / "model.txt").is_file()
        assert "experiments/exp1/settings/lr-sweep.jsonnet" in rec["inputs"]
    assert record(lab_root, names[3])["settings"]["learning_rate"] == 3e-4
    assert len({record(lab_root, n)["metrics"]["eval_accuracy"] for n in names[::2]}) == 3
    proc = dlab("run", "exp1/lr-sweep", check=0)  # skippable like any setting
    assert proc.stderr.count("skipped") == 1 and "skipped 6 settings that already succeeded; --rerun runs them" in proc.stderr
    proc = dlab("run", "exp1/lr-sweep[learning_rate=0.01,seed=1]", "--rerun", "--wait", check=0)
    assert starts(lab_root).count("lr-sweep[learning_rate=0.01,seed=1]") == 2
    status = {r["setting"] for r in dlab.json("status")}
    assert set(names) <= status
    found = dlab("search", "learning_rate", "--type", "setting", "--json", check=0)
    assert "indexed as raw text" not in found.stderr
    assert any(hit.get("path", "").endswith("lr-sweep.jsonnet") for hit in json.loads(found.stdout)), found.stdout


@pytest.mark.parametrize("text, message", [
    ('[{"lr": 1}, {"lr": 1}]', "sweep elements 1 and 2 both give the setting name 'bad'"),
    ('[{"lr": 1}, 2]', "sweep element 2 is a number, not an object"),
    ('[{"v": "a/b"}, {"v": "a_b"}]', "sweep elements 1 and 2 both give the setting name 'bad[v=a_b]'"),
    ("[]", "an empty sweep"),
    ('[{"lr": 1}, {"lr": 2}', "experiments/exp1/settings/bad.jsonnet:1:"),
])
def test_a_bad_sweep_is_one_line_naming_the_file_and_nothing_is_queued(dlab, lab_root, text, message):
    (lab_root / "experiments" / "exp1" / "settings" / "bad.jsonnet").write_text(text)
    proc = dlab("run", "exp1")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "experiments/exp1/settings/bad.jsonnet" in proc.stderr
    assert message in proc.stderr
    assert not (lab_root / "experiments" / "exp1" / "runs").exists() and not (lab_root / ".lab" / "queue.db").exists()


def test_a_run_is_not_dirty_because_lab_rewrote_its_own_committed_records(dlab, lab_root):
    git(lab_root, "init", "-q")
    dlab("run", "exp1/lr-low", "--wait", check=0)
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "code, data and the first run's record and log")
    dlab("run", "exp1/lr-low", "--rerun", "--wait", check=0)
    rec = record(lab_root, "lr-low")
    assert rec["attempt"] == 2 and rec["git"]["dirty"] is False and rec["git"]["diff"] == ""
    assert "experiments/exp1/runs/lr-low.json" in git(lab_root, "status", "--porcelain")


def test_compare_notes_the_last_reproduction_beside_the_run(dlab, lab_root):
    git(lab_root, "init", "-q")
    git(lab_root, "add", "-A")
    git(lab_root, "commit", "-q", "-m", "exp1")
    dlab("run", "exp1/lr-low", "--wait", check=0)
    dlab("reproduce", "exp1/lr-low", check=0)
    compare = dlab.json("compare", "exp1")
    row = next(r for r in compare["runs"] if r["setting"] == "lr-low")
    assert row["state"] == "succeeded" and row["reproduction"]["exact"] is True
    assert "lr-low: reproduced @1 exactly" in dlab("compare", "exp1", check=0).stdout
