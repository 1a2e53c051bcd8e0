"""Sweeps that read: `lab compare` orders a sweep's rows by their values (numbers as numbers), keeps the names
where they are the only way to tell rows apart, folds seeds into mean ± std and n (`--group`, and the book), and
compares across experiments."""

from __future__ import annotations

import json
import statistics

import pytest

from helpers import LabCLI
from lab.core.workspace import Workspace, init
from lab.core.settings import list_settings

GRID = """[
  {learning_rate: lr, seed: seed, model: {name: "minilm-l6-with-a-long-name"}}
  for lr in [0.1, 0.01, 1e-3, 0.3, 0.03, 3e-4]
  for seed in [1, 2, 3, 4, 5]
]
"""

PROGRAM = """\
import json, os, sys
s = json.load(open(sys.argv[1]))
with open(os.environ["LAB_METRICS"], "a") as f:
    f.write(json.dumps({"step": 1, "eval_accuracy": round(0.5 + s["learning_rate"] + s["seed"] / 100, 6)}) + "\\n")
"""


@pytest.fixture
def grid_lab(tmp_path):
    root = tmp_path / "lab"
    init(root)
    exp = Workspace(root).new_experiment("grid-exp")
    (exp.settings_dir / "grid.jsonnet").write_text(GRID)
    return root


def test_sweep_rows_follow_their_values_numbers_as_numbers(grid_lab):
    data = LabCLI(grid_lab).json("compare", "grid-exp")
    order = [(r["settings"]["learning_rate"], r["settings"]["seed"]) for r in data["runs"]]
    assert order == sorted(order) and len(order) == 30
    lrs = list(dict.fromkeys(lr for lr, _ in order))
    assert lrs == [3e-4, 1e-3, 0.01, 0.03, 0.1, 0.3]  # 0.01 before 0.1, 1e-3 among the numbers, not last


def test_names_are_cut_only_where_the_values_tell_the_rows_apart(grid_lab):
    text = LabCLI(grid_lab)("compare", "grid-exp", check=0).stdout
    lines = [line for line in text.splitlines() if "not run" in line]
    assert len(lines) == 30
    # The differing values are columns: a row reads by them even when its long name is cut.
    assert all("learning_rate" not in line or "…" in line for line in lines)
    header = text.splitlines()[1]
    assert "learning_rate" in header and "seed" in header
    # Two settings whose values are the same: only their names tell them apart, so the names stay whole.
    exp = Workspace(grid_lab).experiment("grid-exp")
    (exp.settings_dir / "grid.jsonnet").unlink()
    for name in ("a-very-long-setting-name-number-one", "a-very-long-setting-name-number-two"):
        (exp.settings_dir / f"{name}.json").write_text(json.dumps({"learning_rate": 0.1}))
    text = LabCLI(grid_lab)("compare", "grid-exp", check=0).stdout
    assert "a-very-long-setting-name-number-one" in text and "a-very-long-setting-name-number-two" in text


def test_group_folds_seeds_into_mean_std_and_n(grid_lab):
    from lab.runs import attempt as job

    root = grid_lab
    (root / "p.py").write_text(PROGRAM)
    exp = Workspace(root).experiment("grid-exp")
    (exp.settings_dir / "grid.jsonnet").write_text(GRID.replace("[0.1, 0.01, 1e-3, 0.3, 0.03, 3e-4]", "[0.1, 0.01]")
                                                    .replace("[1, 2, 3, 4, 5]", "[1, 2, 3]"))
    exp.report_path.write_text(exp.report_path.read_text().replace("command: \n", 'command: "{python} p.py {settings}"\n'))
    for setting in list_settings(exp):
        assert job.run(setting)["state"] == "succeeded"
    lab = LabCLI(root)
    data = lab.json("compare", "grid-exp", "--group")
    assert data["group_by"] == ["seed"] and len(data["groups"]) == 2
    first = data["groups"][0]
    assert first["settings"] == {"learning_rate": 0.01} and first["n"] == 3
    values = [0.5 + 0.01 + s / 100 for s in (1, 2, 3)]
    assert first["metrics"]["eval_accuracy"]["mean"] == pytest.approx(statistics.mean(values))
    assert first["metrics"]["eval_accuracy"]["std"] == pytest.approx(statistics.stdev(values))
    text = lab("compare", "grid-exp", "--group", check=0).stdout
    assert "±" in text and " n " in text.splitlines()[0] + " "
    # The book shows the same fold under the runs table; a one-page report too.
    page = root / "one.md"
    lab("book", "grid-exp", "--single", page, check=0)
    assert "Over seed" in page.read_text() and "±" in page.read_text()
    # group_by: in the report names other keys.
    exp.report_path.write_text(exp.report_path.read_text().replace("tags: []", "tags: []\ngroup_by: [seed, learning_rate]"))
    data = lab.json("compare", "grid-exp", "--group")
    assert len(data["groups"]) == 1 and data["groups"][0]["n"] == 6


def test_compare_across_experiments(grid_lab):
    ws = Workspace(grid_lab)
    other = ws.new_experiment("other")
    (other.settings_dir / "base.json").write_text(json.dumps({"learning_rate": 0.05, "seed": 1}))
    data = LabCLI(grid_lab).json("compare", "grid-exp", "other")
    names = [r["setting"] for r in data["runs"]]
    assert "other/base" in names and any(n.startswith("grid-exp/grid[") for n in names) and len(names) == 31
    assert data["experiment"] == "grid-exp + other"
    lrs = [r["settings"]["learning_rate"] for r in data["runs"]]
    assert lrs == sorted(lrs)  # one order over both experiments


def test_the_title_in_front_matter_heads_the_page_and_compare(grid_lab):
    exp = Workspace(grid_lab).experiment("grid-exp")
    exp.report_path.write_text(exp.report_path.read_text().replace("title: grid-exp", "title: Learning-rate grid"))
    proc = LabCLI(grid_lab)("compare", "grid-exp", check=0)
    assert "grid-exp: Learning-rate grid" in proc.stderr
    page = grid_lab / "g.html"
    LabCLI(grid_lab)("book", "grid-exp", "--single", page, check=0)
    assert "<h1>Learning-rate grid</h1>" in page.read_text() and "<title>Learning-rate grid</title>" in page.read_text()


def test_single_page_of_a_wide_sweep_with_no_runs_still_reads(grid_lab):
    exp = Workspace(grid_lab).experiment("grid-exp")
    (exp.settings_dir / "grid.jsonnet").unlink()
    for i in range(200):
        (exp.settings_dir / f"s{i}.json").write_text(json.dumps({"learning_rate": 10 ** -(i % 7), "seed": i, f"extra_{i % 5}": i}))
    page = grid_lab / "wide.html"
    LabCLI(grid_lab)("book", "grid-exp", "--single", page, check=0)
    html = page.read_text()
    assert html.count("not run") == 200 and '<div class="lab-table">' in html and "overflow-x: auto" in html
    md = grid_lab / "wide.md"
    LabCLI(grid_lab)("book", "grid-exp", "--single", md, check=0)
    assert md.read_text().count("| not run |") == 200
