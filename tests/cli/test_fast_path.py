"""The two ways into `lab`: the click CLI (lab/cli/app.py) and the click-free fast path (lab/cli/fast.py).

The fast path parses `lab search` and `lab status` itself. For every command line below it must either decline
(None: click takes it) or produce exactly what click parses from the same line; both must end errors the same
way (one line, the same exit status); and the old entry points of the move keep working for one release.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from helpers import REPO
from lab.cli import app, fast
from lab.core.layout import find_root

# `R` and `S` stand for two real labs; `ELSE` for a directory that is not a lab.
LINES = [
    # plain searches, words and options in every order
    ["search", "warmup"],
    ["search", "learning", "rate", "warmup"],
    ["search", "warmup", "--json"],
    ["search", "--json", "warmup"],
    ["search", "warmup", "--type", "setting"],
    ["search", "--type=setting", "warmup"],
    ["search", "warmup", "--exp", "exp1", "--tag", "t", "--limit", "5"],
    ["search", "--limit=5", "--exp=exp1", "warmup", "--tag=t"],
    ["search", "--type", "run", "--type", "paper", "x"],  # the last one wins
    ["search", "--json", "--json", "x"],
    ["search", "--exp", "--json"],  # --json is --exp's value here, for both
    ["search", "--limit", " 7", "x"],
    ["search", "--limit", "1_000", "x"],
    ["search", "学習率", "ÿ"],
    ["search", "status"],
    ["search", "--exp=", "x"],
    ["search", "warmup", "--mode", "keyword"],
    ["search", "--mode=semantic", "--json", "warmup"],
    ["search", "--mode", "fuzzy", "x"],  # not a mode: click's error
    ["search"],
    # global options, in every form
    ["--root", "R", "search", "x"],
    ["--root=R", "search", "x"],
    ["--debug", "search", "x"],
    ["--root", "R", "--debug", "search", "x", "--json"],
    ["--debug", "--root=S", "search", "x"],
    ["--root", "R", "--root", "S", "search", "x"],
    ["--root", "search", "search", "x"],  # a lab called "search"
    # `--` and `-`
    ["search", "--", "--json"],
    ["search", "x", "--", "-y", "--type"],
    ["search", "-"],
    # bad options and values: click explains
    ["search", "--type", "bogus", "x"],
    ["search", "--type", "Setting", "x"],
    ["search", "--limit", "0", "x"],
    ["search", "--limit", "-5", "x"],
    ["search", "--limit", "abc"],
    ["search", "x", "--limit"],
    ["search", "--bogus", "x"],
    ["search", "-x"],
    ["search", "--lim", "5", "x"],
    ["search", "--json=1", "x"],
    ["search", "x", "--debug"],
    ["search", "x", "--root", "R"],
    # help, versions, unknown commands, no command
    ["search", "--help"],
    ["search", "-h"],
    ["--help"],
    ["-h"],
    ["--version"],
    ["serch", "x"],
    ["--root", "R"],
    ["--root"],
    [],
    ["list"],
    # status, with targets
    ["status"],
    ["status", "exp1", "exp1/s1"],
    ["status", "--json", "exp1"],
    ["--root", "R", "status", "exp1", "--json"],
    ["--debug", "--root=S", "status"],
    ["status", "search"],
    ["status", "--bogus"],
    ["status", "--help"],
    ["status", "--", "exp1"],
    ["status", "-j"],
]


@pytest.fixture
def labs(tmp_path, monkeypatch):
    from lab.core.workspace import init

    roots = {"R": tmp_path / "r", "S": tmp_path / "s", "search": tmp_path / "search", "ELSE": tmp_path / "else"}
    for name, path in roots.items():
        if name == "ELSE":
            path.mkdir()
        else:
            init(path)
    monkeypatch.chdir(roots["R"])
    monkeypatch.delenv("LAB_ROOT", raising=False)
    return roots


def _argv(line, roots):
    out = []
    for a in line:
        name, eq, value = a.partition("=")
        if eq and name == "--root" and value in roots:
            out.append(f"--root={roots[value]}")
        else:
            out.append(str(roots[a]) if a in roots and a != "search" else a)
    # "search" is both a command and a lab: only the value of --root names the lab.
    return [str(roots["search"]) if a == "search" and i and out[i - 1] == "--root" else a for i, a in enumerate(out)]


def _click_parse(argv, monkeypatch):
    """What click makes of `argv`: ("search"|"status", options as the fast path names them), or the exception."""
    seen = {}

    class Recording(app.LabContext):
        def __init__(self, root, debug):
            super().__init__(root, debug)
            seen["root"], seen["debug"] = root, debug

    def search(root, words, type_, exp, tag, limit, as_json, mode=None):
        seen["call"] = ("search", {"words": list(words), "type": type_, "exp": exp, "tag": tag, "limit": limit,
                                   "as_json": as_json, "mode": mode, "root": str(root)})
        return 0

    def status(workspace, targets, as_json=False):
        seen["call"] = ("status", {"targets": list(targets), "as_json": as_json, "root": str(workspace.root)})
        return 0

    monkeypatch.setattr(app, "LabContext", Recording)
    monkeypatch.setattr("lab.cli.search.run_search_cmd", search)
    monkeypatch.setattr(fast, "run_status", status)
    try:
        app.cli.main(args=list(argv), prog_name="lab", standalone_mode=False)
    except (click.exceptions.ClickException, click.exceptions.Exit) as e:
        return e
    if "call" not in seen:
        return "no command ran"
    name, options = seen["call"]
    return name, dict(options, debug=seen["debug"])


@pytest.mark.parametrize("line", LINES, ids=[" ".join(line) or "(nothing)" for line in LINES])
def test_the_fast_parser_declines_or_agrees_with_click(line, labs, monkeypatch, capsys):
    argv = _argv(line, labs)
    mine = fast.parse(argv)
    theirs = _click_parse(argv, monkeypatch)
    capsys.readouterr()
    if mine is None:
        return  # click answers this line itself
    assert isinstance(theirs, tuple), f"the fast path accepts {argv} but click says {theirs!r}"
    name, options = mine
    options = dict(options)
    options["root"] = find_root(options["root"])
    assert (name, options) == theirs


def test_the_table_covers_both_outcomes(labs):
    outcomes = [fast.parse(_argv(line, labs)) is None for line in LINES]
    assert len(LINES) >= 40 and outcomes.count(True) >= 15 and outcomes.count(False) >= 25


def _lab(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "LAB_ROOT"}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_both_paths_end_errors_with_the_same_line(labs):
    """The same mistake ends the same way whichever path takes the line: the fast path (`search`, `status`) or
    click (`list`, `show`): one line on stderr, exit status 2."""
    # Not a lab: the fast path (search, status) and click (list) say the same thing, with the same status.
    where = labs["ELSE"]
    lines = {tuple(args): _lab(*args, cwd=where) for args in (["search", "x"], ["status"], ["list"])}
    messages = {p.stderr for p in lines.values()}
    assert len(messages) == 1 and {p.returncode for p in lines.values()} == {2}, lines
    assert messages.pop().startswith("lab: error: not inside a lab")
    # A bad experiment name: the one name check, through both paths.
    fast_line = _lab("search", "x", "--exp", "a/b", cwd=labs["R"])
    click_line = _lab("show", "a/b/c", cwd=labs["R"])
    assert fast_line.returncode == click_line.returncode == 2
    assert fast_line.stderr == "lab: error: bad experiment name 'a/b': use letters, digits, '-', '_' and '.' (no '/', '..' or spaces)\n"
    assert click_line.stderr.startswith("lab: error: bad setting name 'b/c'")


def test_the_error_mapping(capsys):
    from lab.cli import exits
    from lab.errors import BadInput, LabError

    assert exits.describe(LabError("it failed")) == ("it failed", 1)
    assert exits.describe(BadInput("bad")) == ("bad", 2)
    assert exits.describe(KeyboardInterrupt()) == ("interrupted", 130)
    missing = ModuleNotFoundError("No module named 'torch'", name="torch")
    assert exits.describe(missing)[1] == 1 and "pip install" in exits.describe(missing)[0]
    line, code = exits.describe(ValueError("oops"))
    assert code == 1 and line.startswith("internal error: ValueError: oops")
    for error, status in ((BadInput("two\nlines"), 2), (ValueError("x"), 1)):
        def boom(error=error):
            raise error

        with pytest.raises(SystemExit) as e:
            exits.run(boom)
        assert e.value.code == status
    assert capsys.readouterr().err == "lab: error: two\nlab: error: internal error: ValueError: x (run with --debug for the traceback)\n"
    with pytest.raises(ValueError):
        exits.run(lambda: (_ for _ in ()).throw(ValueError("x")), debug=True)


@pytest.mark.parametrize("old, new, args", [
    ("lab.runner", "lab.runs.local.runner", ["--help"]),
    ("lab.runner", "lab.runs.local.runner", []),
    ("lab.slurmjob", "lab.runs.slurm.node", []),
])
def test_old_entry_points_still_run(old, new, args, tmp_path):
    """`python -m lab.runner` and `python -m lab.slurmjob` (named by batch scripts already written) keep working
    for one release: each runs its new module's `main`, with the same output and exit status."""
    def run(module):
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=tmp_path,
                              timeout=60)

    before, after = run(old), run(new)
    assert (before.returncode, before.stdout, before.stderr) == (after.returncode, after.stdout, after.stderr)
    assert before.returncode == (0 if args else 2) and (before.stdout or before.stderr).startswith("usage:")


@pytest.mark.parametrize("group", ["mkdocs.plugins", "properdocs.plugins"])
def test_the_book_plugin_entry_point_for_mkdocs_and_properdocs(group):
    """Both generators load the plugin by its own group (ProperDocs also reads mkdocs.plugins). Needs lab installed
    from this tree (pip install -e .), as `make setup` does."""
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group=group) if e.name == "lab"]
    assert found and found[0].value == "lab.book.plugin:LabBookPlugin"
    from lab.book.plugin import LabBookPlugin

    assert found[0].load() is LabBookPlugin


def test_mkdocs_2_cannot_be_installed_with_lab():
    """MkDocs 2 has no plugins: the dependency stays below it."""
    import tomllib

    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [mkdocs] = [Requirement(d) for d in deps if Requirement(d).name == "mkdocs"]
    assert not mkdocs.specifier.contains("2.0") and not mkdocs.specifier.contains("2.0.0.dev1", prereleases=True)
    assert mkdocs.specifier.contains("1.6.1")


def test_the_book_renders_without_importing_mkdocs(tmp_path):
    """lab's renderer is the book; only the plugin (the adapter) imports mkdocs."""
    code = ("import sys; from lab.core.workspace import Workspace, init; init(sys.argv[1]);"
            " from lab.book import render, single, generators;"
            " render.write(Workspace(sys.argv[1]), sys.argv[1] + '/../out');"
            " assert not [m for m in sys.modules if m.split('.')[0] in ('mkdocs', 'properdocs', 'zensical')], 'imported'")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lab")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "index.md").is_file()
