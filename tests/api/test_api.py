"""The Python API (`import lab; lab.open(...)`): typed records over the lab's files, equal to what the CLI prints.

Real parts: the repository's own exp1 records (made by lab.train), a lab in tmp_path whose runs the real runner
makes from exp1's settings and data, the real `lab` command (a process) for the search it must agree with, real
SQLite. Other commands run in this process (LabCLI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, LabCLI, kill_lab_processes

import lab
from lab.errors import BadInput, LabError

# Logs metrics that depend on its settings, as a training program would (lab.log_metrics, to $LAB_METRICS).
PROGRAM = r'''
import json, sys
import lab
s = json.load(open(sys.argv[1]))
lab.log_metrics(step=1, loss=1 - s["learning_rate"] * 1000)
lab.log_metrics(step=2, eval_accuracy=round(s["learning_rate"] * 5000, 6), learning_rate=round(s["learning_rate"] / 10, 9))
'''


@pytest.fixture
def exp1_lab(lab_root):
    """A lab with a copy of the repository's exp1 (settings, data, report) and its papers, run by PROGRAM;
    processes killed at teardown."""
    (lab_root / "prog.py").write_text(PROGRAM)
    exp = lab_root / "experiments" / "exp1"
    for sub in ("settings", "data"):
        shutil.copytree(REPO / "experiments" / "exp1" / sub, exp / sub)
    report = (REPO / "experiments" / "exp1" / "report.md").read_text()
    (exp / "report.md").write_text(report.replace("\ncommand:\n", '\ncommand: "{python} prog.py {settings}"\n', 1))
    for note in (REPO / "papers").glob("*.md"):
        shutil.copy(note, lab_root / "papers" / note.name)
    yield lab_root
    kill_lab_processes(lab_root)


def test_import_lab_loads_neither_numpy_nor_click_nor_rich():
    code = "import sys, lab; print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'click', 'rich', 'pandas')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert callable(lab.log_metrics) and callable(lab.open)


def test_repository_exp1_runs_to_pandas_one_row_per_run_with_settings_and_metrics():
    pytest.importorskip("pandas")
    runs = lab.open(REPO).runs(experiment="exp1")
    records = sorted((REPO / "experiments" / "exp1" / "runs").glob("*.json"))
    records = [json.loads(p.read_text()) for p in records if not p.name.endswith(".settings.json")]
    frame = runs.to_pandas()
    assert len(frame) == len(records) == len(runs) > 0
    assert {"learning_rate", "eval_accuracy", "experiment", "setting", "state"} <= set(frame.columns)
    for rec in records:
        row = frame[frame["setting"] == rec["setting"]].iloc[0]
        assert row["learning_rate"] == rec["settings"]["learning_rate"]  # the setting, not the scheduler's last
        assert row["eval_accuracy"] == rec["metrics"]["eval_accuracy"]
        assert row["metrics.learning_rate"] == rec["metrics"]["learning_rate"]
        assert str(row["started_at"].tz) == "UTC"


def test_a_run_carries_its_settings_metrics_history_inputs_git_and_environment():
    run = lab.open(REPO).runs(experiment="exp1", setting="lr-high")[0]
    rec = json.loads((REPO / "experiments" / "exp1" / "runs" / "lr-high.json").read_text())
    assert run.id == "exp1/lr-high" and run.state == rec["state"] and run.attempt == rec["attempt"]
    assert run.settings == rec["settings"] and run.metrics == rec["metrics"] and run.inputs == rec["inputs"]
    assert run.git is not None and run.git.commit == rec["git"]["commit"]
    assert run.environment.id == rec["environment"] and run.environment.packages == rec["packages"]
    assert [a.attempt for a in run.attempts] == [h["attempt"] for h in rec["history"]]
    lines = (REPO / "experiments" / "exp1" / rec["metrics_path"]).read_text().splitlines()
    assert run.history() == [json.loads(line) for line in lines]
    packages = run.packages()
    assert packages is not None and packages["torch"] == rec["packages"]["torch"]


def test_runs_made_by_the_runner_filter_by_state_setting_and_values(exp1_lab):
    pytest.importorskip("pandas")
    mylab = lab.open(exp1_lab)
    submitted = mylab.run("exp1")
    assert [s.action for s in submitted] == ["queued", "queued"] and {s.executor for s in submitted} == {"local"}
    done = mylab.wait(submitted)
    assert sorted(r.setting for r in done) == ["lr-high", "lr-low"] and {r.state for r in done} == {"succeeded"}
    frame = mylab.runs(experiment="exp1").to_pandas()
    assert list(frame["setting"]) == ["lr-high", "lr-low"]
    assert list(frame["learning_rate"]) == [1e-4, 2e-5]
    assert list(frame["eval_accuracy"]) == [0.5, 0.1]
    assert list(frame["metrics.learning_rate"]) == [1e-5, 2e-6]
    assert [r.setting for r in mylab.runs(setting="lr-l*")] == ["lr-low"]
    assert [r.setting for r in mylab.runs(where={"learning_rate": 1e-4})] == ["lr-high"]
    assert mylab.runs(state="failed") == [] and len(mylab.runs(state=["succeeded", "failed"])) == 2
    assert [s.action for s in mylab.run("exp1")] == ["skipped", "skipped"]
    with pytest.raises(BadInput, match="no run state 'done'"):
        mylab.runs(state="done")
    with pytest.raises(BadInput, match="no experiment 'nope'"):
        mylab.runs(experiment="nope")
    assert mylab.stop()["queued"] == 0 and mylab.cancel("exp1")["cancelled"] == []
    cli = LabCLI(exp1_lab)
    as_printed = lambda data: json.loads(json.dumps(data, default=str))  # noqa: E731 (the CLI's echo_json)
    assert as_printed(mylab.compare("exp1")) == cli.json("compare", "exp1") and mylab.compare("exp1")["best"]
    assert as_printed(mylab.diff("exp1/lr-high", "exp1/lr-low")) == cli.json("diff", "exp1/lr-high", "exp1/lr-low")


def test_to_pandas_without_pandas_names_the_extra(exp1_lab, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(LabError, match=r"pip install 'lab\[pandas\]'"):
        lab.open(exp1_lab).runs().to_pandas()


def test_search_gives_typed_results_equal_to_lab_search_json(exp1_lab):
    LabCLI(exp1_lab, real=True)("reindex", check=0)  # every document embedded: both searches rank by meaning alike
    mylab = lab.open(exp1_lab)
    for args, kwargs in ((["learning rate warmup"], {}), (["learning rate warmup", "--mode", "keyword"], {"mode": "keyword"}),
                         (["test prioritisation", "--type", "paper", "--limit", "2"], {"type": "paper", "limit": 2})):
        printed = LabCLI(exp1_lab, real=True).json("search", *args)  # the installed command's fast path
        results = mylab.search(args[0], **kwargs)
        assert printed and all(isinstance(r, lab.SearchResult) for r in results)
        assert [r.to_dict() for r in results] == printed
    from lab.search import model

    if model.available() is None:  # the hybrid search above ranked by meaning too
        assert any("semantic" in r.match for r in mylab.search("learning rate warmup"))


def test_search_bad_input_is_one_bad_input_error(exp1_lab):
    mylab = lab.open(exp1_lab)
    with pytest.raises(BadInput, match="give a number from 1"):
        mylab.search("warmup", limit=0)
    with pytest.raises(BadInput, match="--mode fast"):
        mylab.search("warmup", mode="fast")
    with pytest.raises(BadInput, match="no experiment 'exp9'"):
        mylab.search("warmup", exp="exp9")


def test_open_finds_the_root_as_the_cli_does(exp1_lab, monkeypatch):
    monkeypatch.chdir(exp1_lab / "experiments" / "exp1")
    monkeypatch.delenv("LAB_ROOT", raising=False)
    assert lab.open().root == exp1_lab.resolve()
    monkeypatch.setenv("LAB_ROOT", str(exp1_lab))
    monkeypatch.chdir("/")
    assert lab.open().root == exp1_lab.resolve()
    monkeypatch.delenv("LAB_ROOT")
    with pytest.raises(BadInput):
        lab.open()


def test_experiments_settings_and_related_match_the_cli(exp1_lab):
    mylab = lab.open(exp1_lab)
    cli = LabCLI(exp1_lab)
    listed = cli.json("list")
    assert [(e.name, e.title, list(e.tags), list(e.settings)) for e in mylab.experiments()] == \
        [(e["name"], e["title"], e["tags"], e["settings"]) for e in listed]
    assert [s.id for s in mylab.settings("exp1")] == ["exp1/lr-high", "exp1/lr-low"]
    assert mylab.settings("exp1")[0].values["learning_rate"] == 1e-4
    printed = cli.json("related", "exp1", "--mode", "keyword")
    assert printed and [r.to_dict() for r in mylab.related("exp1", mode="keyword")] == printed


def test_reindex_is_one_call_and_reports_what_it_indexed(lab, lab_root):
    (lab_root / "papers" / "p.md").write_text("---\ntitle: Warmup\n---\n\nOn learning rate warmup.\n")
    out = lab.json("reindex", "--keyword-only")
    assert out["files"] >= 1 and out["documents"] >= 1 and out["embedded"] == 0 and out["path"].endswith("index.db")
    assert [r["id"] for r in lab.json("search", "warmup", "--mode", "keyword")] == ["p"]
