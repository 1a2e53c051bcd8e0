"""The foundation: lab init, lab new, settings in JSON and jsonnet, command templates, CLI conventions."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import LabCLI, write_settings
from lab.core.command import build_argv
from lab.errors import BadInput
from lab.core.workspace import Workspace
from lab.core.settings import list_settings


def test_init_twice_leaves_user_edits_alone(tmp_path):
    root = tmp_path / "mylab"
    cli = LabCLI(root)
    first = cli("init", str(root), check=0, cwd=tmp_path)
    assert "created" in first.stderr
    assert (root / "experiments").is_dir() and (root / "papers").is_dir()
    assert ".lab/" in (root / ".gitignore").read_text()
    (root / "mkdocs.yml").write_text("site_name: my own book\n")
    with (root / ".gitignore").open("a") as f:
        f.write("mine/\n")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    second = cli("init", str(root), check=0, cwd=tmp_path)
    assert "nothing changed" in second.stderr
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before


def test_new_experiment_layout(lab, lab_root):
    proc = lab("new", "exp3", check=0)
    exp = lab_root / "experiments" / "exp3"
    assert proc.stdout.strip() == str(exp)
    for sub in ("settings", "logs", "models"):
        assert (exp / sub).is_dir()
    text = (exp / "report.md").read_text()
    assert text.startswith("---\n")
    meta = Workspace(lab_root).experiment("exp3").meta()
    assert meta["title"] == "exp3" and meta["tags"] == [] and "command" in meta
    # An existing experiment is never overwritten.
    (exp / "report.md").write_text("my report")
    again = lab("new", "exp3", check=2)
    assert "already exists" in again.stderr
    assert (exp / "report.md").read_text() == "my report"


def test_new_from_copies_settings_and_command(lab, lab_root):
    write_settings(lab_root, "base", {"a.json": {"lr": 1}, "common.libsonnet": "{lr: 1}"}, command="python run.py {settings}")
    lab("new", "variant", "--from", "base", check=0)
    ws = Workspace(lab_root)
    variant = ws.experiment("variant")
    assert sorted(p.name for p in variant.settings_dir.iterdir()) == ["a.json", "common.libsonnet"]
    assert variant.command_template() == "python run.py {settings}"
    assert lab("new", "other", "--from", "missing", check=2).stderr.count("\n") == 1
    assert not (lab_root / "experiments" / "other").exists()


@pytest.mark.parametrize("name", ["a/b", "..", "has space", "x/../y", "", "é"])
def test_bad_experiment_names_are_refused(lab, lab_root, name):
    proc = lab("new", name, check=2)
    assert "bad experiment name" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (lab_root / "experiments").iterdir()) == []


def test_jsonnet_setting_inherits_base(lab, lab_root):
    write_settings(lab_root, "exp1", {
        "base.libsonnet": '{ learning_rate: 2e-5, num_train_epochs: 3, model: { name: "m", layers: 2 } }',
        "fast.jsonnet": 'local base = import "base.libsonnet";\nbase + { learning_rate: 1e-4, model+: { layers: 4 } }',
        "plain.json": '{"learning_rate": 5e-5}',
    })
    resolved = json.loads(lab("show", "exp1/fast", check=0).stdout)
    assert resolved == {"learning_rate": 1e-4, "num_train_epochs": 3, "model": {"name": "m", "layers": 4}}
    # libsonnet files are bases, never settings.
    info = lab.json("show", "exp1")
    assert list(info["settings"]) == ["fast", "plain"]


def test_natural_order(lab_root):
    write_settings(lab_root, "e", {f"s{i}.json": {"i": i} for i in (10, 2, 1)})
    assert [s.name for s in list_settings(Workspace(lab_root).experiment("e"))] == ["s1", "s2", "s10"]


def test_malformed_json_names_file_line_and_column(lab, lab_root):
    write_settings(lab_root, "exp1", {"s3.json": '{"a": 1,\n "b": 2,}'})
    proc = lab("show", "exp1/s3", check=2)
    assert proc.stderr.startswith("lab: error: experiments/exp1/settings/s3.json:2:9: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_malformed_jsonnet_names_file_and_line(lab, lab_root):
    write_settings(lab_root, "exp1", {"bad.jsonnet": '{\n  a: 1,\n  b: ,\n}'})
    proc = lab("show", "exp1/bad", check=2)
    assert proc.stderr.startswith("lab: error: experiments/exp1/settings/bad.jsonnet:3:")
    assert proc.stderr.count("\n") == 1


def test_jsonnet_error_in_imported_base_names_the_base(lab, lab_root):
    write_settings(lab_root, "exp1", {
        "base.libsonnet": "{\n  a: error 'no a here',\n}",
        "s.jsonnet": 'local b = import "base.libsonnet"; b',
    })
    proc = lab("show", "exp1/s", check=2)
    assert "base.libsonnet:2:" in proc.stderr and "no a here" in proc.stderr


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "42"])
def test_top_level_value_must_be_an_object(lab, lab_root, text):
    write_settings(lab_root, "exp1", {"s.json": text})
    proc = lab("show", "exp1/s", check=2)
    assert "experiments/exp1/settings/s.json" in proc.stderr and "JSON object" in proc.stderr


def test_command_template_is_split_without_a_shell(lab_root):
    exp_dir = write_settings(lab_root, "exp1", {"s 1.json": {}}, command="python 'my run.py' --out {output_dir} {settings} --name={name} ; rm -rf /")
    setting = list_settings(Workspace(lab_root).experiment("exp1"))[0]
    argv = build_argv(setting, "/tmp/with space/s.json")
    assert argv == ["python", "my run.py", "--out", str(exp_dir / "models" / "s 1"), "/tmp/with space/s.json", "--name=s 1", ";", "rm", "-rf", "/"]


def test_default_command_is_lab_train(lab_root):
    write_settings(lab_root, "exp1", {"s.json": {}})
    setting = list_settings(Workspace(lab_root).experiment("exp1"))[0]
    assert build_argv(setting, "x.json") == [sys.executable, "-m", "lab.train", "x.json"]


def test_unknown_placeholder_is_refused(lab_root):
    write_settings(lab_root, "exp1", {"s.json": {}}, command="python run.py {setings}")
    setting = list_settings(Workspace(lab_root).experiment("exp1"))[0]
    with pytest.raises(BadInput, match="unknown placeholder {setings}"):
        build_argv(setting, "x.json")


def test_root_discovery(tmp_path, lab_root):
    (lab_root / "experiments" / "deep" / "er").mkdir(parents=True)
    cli = LabCLI(lab_root)
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "LAB_ROOT"}
    here = subprocess.run([sys.executable, "-m", "lab", "list", "--json"], cwd=lab_root / "experiments" / "deep" / "er", capture_output=True, text=True, env=env)
    assert here.returncode == 0, here.stderr
    outside = subprocess.run([sys.executable, "-m", "lab", "list"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert outside.returncode == 2
    assert "not inside a lab" in outside.stderr and "lab init" in outside.stderr
    via_env = subprocess.run([sys.executable, "-m", "lab", "list", "--json"], cwd=tmp_path, capture_output=True, text=True, env={**env, "LAB_ROOT": str(lab_root)})
    assert via_env.returncode == 0 and json.loads(via_env.stdout) == [] or json.loads(via_env.stdout)[0]["name"] == "deep"
    assert cli  # the fixture's own --root is exercised everywhere else


def test_unknown_command_exits_2_without_traceback(lab):
    proc = lab("frobnicate", check=2)
    assert proc.stderr.startswith("lab: error: No such command 'frobnicate'")
    assert proc.stderr.count("\n") == 1


def test_help_lists_commands_with_example(lab):
    proc = lab("--help", check=0)
    assert "init" in proc.stdout and "Example" in proc.stdout
    assert "Example" in lab("new", "--help", check=0).stdout


def test_help_imports_no_heavy_module():
    import subprocess

    code = "import sys, runpy; sys.argv=['lab','--help']\ntry:\n runpy.run_module('lab', run_name='__main__')\nexcept SystemExit: pass\nheavy={'torch','transformers','mkdocs','arxiv','feedparser','matplotlib','rich'}&set(sys.modules)\nprint(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")
