"""Bad input and bad state outside the runner: one clear line, exit 2 (1 when the system around lab failed), no
traceback, nothing half-written; a damaged search index rebuilt from the files by itself.

Every case runs the real `lab` command in a subprocess against a lab under tmp_path.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from helpers import write_settings
from lab.errors import BadInput
from lab.core.settings import find_setting


def one_error(proc, *fragments, code=2) -> str:
    """The process failed with `code` and exactly one line on stderr, `lab: error: ...` holding every fragment."""
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), proc.stderr
    assert "internal error" not in lines[0] and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def files(root: Path) -> dict[str, bytes]:
    """Every file under the lab (but the derived .lab/), with its bytes: to show nothing was written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".lab" not in p.relative_to(root).parts}


def nothing_queued(root: Path, exp: str) -> None:
    assert not (root / "experiments" / exp / "runs").exists() or not list((root / "experiments" / exp / "runs").iterdir())
    assert not (root / ".lab" / "queue.db").exists()


# --- files that are not UTF-8 text -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bin.json", "bin.jsonnet"])
def test_binary_settings_file(lab, lab_root, name):
    write_settings(lab_root, "e1", {"ok.json": {"lr": 1}}, command="python -c pass {settings}")
    (lab_root / "experiments/e1/settings" / name).write_bytes(b"\x00\xff\xfe\x00binary")
    before = files(lab_root)
    one_error(lab("show", f"e1/{Path(name).stem}"), f"experiments/e1/settings/{name}", "not UTF-8")
    one_error(lab("run", "e1"), f"experiments/e1/settings/{name}", "not UTF-8", "nothing was queued")
    nothing_queued(lab_root, "e1")
    assert files(lab_root) == before


def test_non_utf8_report_is_named_and_the_rest_listed(lab, lab_root):
    for name in ("a1", "b2", "c3"):
        write_settings(lab_root, name, {"s.json": {"lr": 1}})
    bad = lab_root / "experiments/b2/report.md"
    bad.write_bytes(b"---\ntitle: caf\xe9\n---\n\nLatin-1, not UTF-8\n")
    before = files(lab_root)

    listing = lab("list")
    line = one_error(listing, "experiments/b2/report.md", "not UTF-8", "0xe9")
    assert [row.split("\t")[0] for row in listing.stdout.splitlines()] == ["a1", "b2", "c3"]
    rows = json.loads((proc := lab("list", "--json")).stdout)
    assert proc.returncode == 2 and proc.stderr.strip() == line
    assert [(r["name"], r["error"] is None) for r in rows] == [("a1", True), ("b2", False), ("c3", True)]
    assert rows[0]["settings"] == ["s"] and "not UTF-8" in rows[1]["error"]

    one_error(lab("show", "b2"), "experiments/b2/report.md", "not UTF-8")
    one_error(lab("report", "b2"), "experiments/b2/report.md", "not UTF-8")
    one_error(lab("new", "b3", "--from", "b2"), "experiments/b2/report.md")
    one_error(lab("run", "b2"), "experiments/b2/report.md", "not UTF-8")
    nothing_queued(lab_root, "b2")
    # A paper note linked to it is not touched either: the report is read before anything is written.
    (lab_root / "papers/2301.12345.md").write_text("---\narxiv_id: '2301.12345'\ntitle: A paper\n---\n\n## Notes\n")
    before = files(lab_root)
    one_error(lab("note", "2301.12345", "--offline", "--exp", "b2"), "experiments/b2/report.md", "not UTF-8")
    assert files(lab_root) == before
    # Searching still works: the report is indexed with the bad byte replaced.
    assert lab("search", "Latin", "--json", check=0).stdout.count('"b2') >= 1


# --- names ---------------------------------------------------------------------------------------------------


def test_names_over_the_limit(lab, lab_root):
    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}})
    long = "a" * 300
    before = files(lab_root)
    line = one_error(lab("new", long), "bad experiment name", "300 bytes", "at most 200")
    assert len(line) < 200  # the name is cut in the message
    assert sorted(os.listdir(lab_root / "experiments")) == ["e1"]  # no staging directory left behind
    one_error(lab("show", f"e1/{long}"), "bad setting name", "at most 200")
    one_error(lab("show", long), "bad experiment name")
    one_error(lab("run", f"e1/{long}"), "bad setting name")
    one_error(lab("new", "e2", "--from", long), "bad experiment name")
    one_error(lab("feed", "add", "cs.CL", "--name", long), "bad feed name")
    assert files(lab_root) == before
    # A setting file whose name is legal on disk but leaves no room for the run's files: refused when queued.
    (lab_root / "experiments/e1/settings" / ("b" * 230 + ".json")).write_text('{"lr": 2}')
    one_error(lab("run", "e1"), "experiments/e1/settings", "longer than 200 bytes", "rename the file")
    nothing_queued(lab_root, "e1")


def test_names_starting_with_a_dash(lab, lab_root):
    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}}, command="python -c pass {settings}")
    one_error(lab("new", "--", "-dash"), "bad experiment name '-dash'", "may not start with '-'")
    assert not (lab_root / "experiments/-dash").exists()
    one_error(lab("feed", "add", "cs.CL", "--name=-x"), "bad feed name '-x'")
    (lab_root / "experiments/e1/settings/-x.json").write_text('{"lr": 2}')
    one_error(lab("run", "e1"), "setting name '-x'", "starts with '-'")
    one_error(lab("run", "--", "e1/-x"), "bad setting name '-x'")
    nothing_queued(lab_root, "e1")


@pytest.mark.parametrize("stem, shown", [
    ("a\tb", r"'a\tb'"), ("a\nb", r"'a\nb'"), ("a\rb", r"'a\rb'"), ("\x1b[31mred", r"'\x1b[31mred'"),
    ("a\x7fb", r"'a\x7fb'"), ("a\u2028b", r"'a\u2028b'"), ("a\u200bb", r"'a\u200bb'"),
    (os.fsdecode(b"a\xffb"), r"'a\udcffb'"),
])
def test_setting_file_names_that_cannot_be_shown_are_refused_when_queued(lab, lab_root, stem, shown):
    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}}, command="python -c pass {settings}")
    path = os.path.join(os.fsencode(lab_root / "experiments/e1/settings"), os.fsencode(stem) + b".json")
    with open(path, "w") as f:
        f.write('{"lr": 2}')
    one_error(lab("run", "e1"), "experiments/e1/settings", f"setting name {shown}", "cannot be shown safely")
    nothing_queued(lab_root, "e1")
    # Legible names that are not letters and digits still run (they were accepted before).
    os.unlink(path)
    (lab_root / "experiments/e1/settings/学習率 0.1.json").write_text('{"lr": 3}')
    from lab.core.settings import select
    from lab.core.workspace import Workspace

    assert [s.name for s in select(Workspace(lab_root), ["e1"])] == ["s1", "学習率 0.1"]


# --- the command template ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [
    "{0}", "{}", "{name!r}", "{name:>9}", "{output_dir[0]}", "{name:{settings.__class__}}",
    "{python.__init__.__globals__}", "{settings.foo!r}",
])
def test_command_template_takes_only_the_documented_placeholders(lab, lab_root, field):
    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}}, command=f"python -c pass {field}")
    before = files(lab_root)
    line = one_error(lab("run", "e1"), "experiments/e1/report.md: command: unknown placeholder", field,
                     "known: {settings}, {output_dir}, {name}, {python}")
    assert "class" not in line.replace(field, "")  # nothing was evaluated: the field is only quoted back
    nothing_queued(lab_root, "e1")
    assert files(lab_root) == before


@pytest.mark.parametrize("field", ["{settings.foo}", "{settings.__class__}", "{settings.__class__.__mro__}"])
def test_settings_key_placeholder_only_looks_up_keys(lab, lab_root, field):
    """`{settings.KEY}` is a key of the resolved setting, looked up in the JSON object: never an attribute."""
    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}}, command=f"python -c pass {field}")
    before = files(lab_root)
    key = field[len("{settings."):-1]
    line = one_error(lab("run", "e1"), "experiments/e1/settings/s1.json: no key", f"{key!r} for {field}")
    assert "class '" not in line and "type" not in line  # nothing was evaluated: the key is only quoted back
    nothing_queued(lab_root, "e1")
    assert files(lab_root) == before


def test_documented_placeholders_and_literal_braces_still_work(lab_root):
    from lab.core.command import build_argv
    from lab.core.workspace import Workspace

    write_settings(lab_root, "e1", {"s1.json": {"lr": 1}}, command="prog --cfg={settings} --out {output_dir} "
                   "--tag {name}-{{x}} {python}")
    setting = find_setting(Workspace(lab_root).experiment("e1"), "s1")
    argv = build_argv(setting, "/tmp/s.json")
    assert argv[:2] == ["prog", "--cfg=/tmp/s.json"] and argv[3].endswith("models/s1") and argv[5] == "s1-{x}"
    with pytest.raises(BadInput, match="Single '}'"):
        build_argv(setting, "/tmp/s.json", "prog }")


def test_nul_byte_in_the_command_is_refused_when_queued(lab, lab_root):
    exp = write_settings(lab_root, "e1", {"s1.json": {"lr": 1}})
    report = exp / "report.md"
    report.write_text(report.read_text().replace("command: \n", 'command: "python -c pass \\0 {settings}"\n', 1))
    one_error(lab("run", "e1"), "experiments/e1/report.md: command", "NUL byte", "nothing was queued")
    nothing_queued(lab_root, "e1")


# --- lab search --limit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--limit", "99999999999999999999"], ["--limit=99999999999999999999"],
                                    ["--limit", "0"], ["--limit", "-3"], ["--limit", "1000001"]])
def test_search_limit_out_of_range(lab, option):
    one_error(lab("search", "warmup", *option), "--limit", "1<=x<=1000000")
    assert lab("search", "warmup", "--limit", "1000000").returncode == 0


def test_search_limit_checked_by_the_library_too(lab_root):
    from lab.cli.fast import run_search

    with pytest.raises(BadInput, match="--limit 100000000000000000000: give a number from 1 to 1000000"):
        run_search(str(lab_root), ["x"], limit=10**20)


# --- settings values strict JSON cannot hold -------------------------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    ('{"lr": NaN}', "NaN is not a JSON number"), ('{"lr": -Infinity}', "-Infinity is not a JSON number"),
    ('{"lr": 1e400}', "1e400 is not a JSON number"), ('{"s": "\\ud800"}', "half of a UTF-16 pair"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_settings_values_json_cannot_hold(lab, lab_root, text, fragment):
    write_settings(lab_root, "e1", {"s1.json": text}, command="python -c pass {settings}")
    one_error(lab("show", "e1/s1"), "experiments/e1/settings/s1.json", fragment)
    one_error(lab("run", "e1"), "experiments/e1/settings/s1.json", fragment)
    nothing_queued(lab_root, "e1")


# --- the damaged search index ----------------------------------------------------------------------------------


def _lab_with_notes(lab_root: Path, n: int = 120) -> None:
    """Paper notes built from the recorded arXiv answer in tests/fixtures (real titles and abstracts), repeated
    with a number so the index spans a few hundred pages."""
    import re

    from helpers import FIXTURES

    atom = next(iter(sorted((FIXTURES / "arxiv-api").glob("q_testing_*.xml")))).read_text()
    summaries = [re.sub(r"\s+", " ", s) for s in re.findall(r"<summary>(.*?)</summary>", atom, re.S)]
    titles = [re.sub(r"\s+", " ", s) for s in re.findall(r"<entry>.*?<title>(.*?)</title>", atom, re.S)]
    assert summaries and titles
    for i in range(n):
        body = " ".join(summaries[(i + k) % len(summaries)] for k in range(3))
        (lab_root / "papers" / f"note{i}.md").write_text(
            f"---\ntitle: {json.dumps(titles[i % len(titles)] + f' (copy {i})')}\ntags: [copy{i}]\n---\n\n{body}\n")


def _damage(db: Path, how: str) -> None:
    size = db.stat().st_size
    page = 4096
    with open(db, "r+b") as f:
        if how == "pages":  # overwrite the middle half of the pages, leaving the header and schema intact
            pages = size // page
            for p in range(pages // 4, 3 * pages // 4):
                f.seek(p * page)
                f.write(bytes((p * 37 + i) % 251 for i in range(page)))
        elif how == "truncated":
            f.truncate(size // 2)
        elif how == "garbage":
            f.seek(0)
            f.write(os.urandom(size))
        elif how == "zeroed header":
            f.seek(0)
            f.write(b"\0" * 100)


@pytest.mark.parametrize("how", ["pages", "truncated", "garbage", "zeroed header"])
def test_damaged_index_is_rebuilt_with_one_line(lab, lab_root, how):
    _lab_with_notes(lab_root)
    query = ["learning", "--json", "--limit", "200", "--mode", "keyword"]  # damage, not meaning, is tested here
    before = json.loads(lab("search", *query, check=0).stdout)
    assert len(before) > 50
    db = lab_root / ".lab/index.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert db.stat().st_size > 100 * 4096
    _damage(db, how)
    # SQLite itself says the file is damaged.
    conn = sqlite3.connect(db)
    try:
        report = conn.execute("PRAGMA integrity_check").fetchall()
        assert report != [("ok",)]
    except sqlite3.DatabaseError as e:
        assert "malformed" in str(e) or "not a database" in str(e)
    finally:
        conn.close()

    proc = lab("search", *query)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1 and "was damaged" in proc.stderr and "rebuilt it from the files" in proc.stderr
    assert "reindex" not in proc.stderr
    after = json.loads(proc.stdout)
    assert [(r["type"], r["id"]) for r in after] == [(r["type"], r["id"]) for r in before]
    again = lab("search", *query, check=0)
    assert again.stderr == "" and json.loads(again.stdout) == after
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


def test_reindex_over_a_damaged_index(lab, lab_root):
    _lab_with_notes(lab_root, 20)
    lab("search", "learning", check=0)
    _damage(lab_root / ".lab/index.db", "garbage")
    proc = lab("reindex", check=0)
    assert "indexed 20 files" in proc.stderr and "error" not in proc.stderr


def test_index_in_the_way_is_one_line(lab, lab_root):
    (lab_root / ".lab").mkdir()
    (lab_root / ".lab/index.db").mkdir()
    one_error(lab("search", "x"), "search index", code=1)


# --- more found by a fault-injection pass ----------------------------------------------------------------------


def test_odd_bytes_and_numbers_elsewhere(lab, lab_root, tmp_path):
    exp = write_settings(lab_root, "e1", {"s1.json": {"lr": 1}, "s2.json": {"lr": 2}})
    (exp / "runs").mkdir()
    for s, acc in (("s1", 0.5), ("s2", 0.7)):
        (exp / "runs" / f"{s}.json").write_text(json.dumps(
            {"experiment": "e1", "setting": s, "state": "succeeded", "metrics": {"eval_accuracy": acc}}))
    # A step too large for a float: the run is compared and drawn without it.
    (exp / "logs/s1.metrics.jsonl").write_text('{"step": ' + "9" * 400 + ', "loss": 1, "eval_accuracy": 0.5}\n')
    (exp / "runs/s1.json").write_text(json.dumps({"setting": "s1", "state": "succeeded", "metrics": {"loss": int("9" * 400)}}))
    assert "s2" in lab("compare", "e1", check=0).stdout
    # A paper note whose file name is not UTF-8 is skipped by the index, not fatal to every search.
    with open(os.path.join(os.fsencode(lab_root / "papers"), b"caf\xe9.md"), "w") as f:
        f.write("---\ntitle: zebrafish\n---\n")
    (lab_root / "papers/ok.md").write_text("---\ntitle: zebrafish too\n---\n")
    assert [r["id"] for r in lab.json("search", "zebrafish")] == ["ok"]
    assert lab("reindex").returncode == 0
    # Words, tags and experiments given as bytes that are not UTF-8.
    bad = os.fsdecode(b"a\xffb")
    one_error(lab("search", bad), "not UTF-8")
    one_error(lab("search", "x", "--tag", bad), "not UTF-8")
    # Feed URLs that are not URLs, tags that are not one printable line.
    for url in ("http://[::1", "http://", "https://x:port/", "https://a b/"):
        one_error(lab("feed", "add", url), "is not a valid URL")
    (lab_root / "papers/2301.12345.md").write_text("---\narxiv_id: '2301.12345'\ntitle: A paper\n---\n")
    before = files(lab_root)
    for tag in ("a\tb", "\x1b[31mred", bad):
        one_error(lab("note", "2301.12345", "--offline", "--tag", tag), "bad tag")
    assert files(lab_root) == before


def test_feed_names_in_feeds_json_are_checked(lab, lab_root):
    """A hand-edited (or cloned) feeds.json cannot send a pull or a remove outside feeds/items/."""
    (lab_root / "feeds").mkdir()
    (lab_root / "feeds/feeds.json").write_text(json.dumps([{"name": "../../outside", "url": "http://127.0.0.1:9/"}]))
    (lab_root / "outside.jsonl").write_text("mine\n")
    for args in (["feed", "list"], ["feed", "remove", "../../outside"], ["feed", "pull"]):
        one_error(lab(*args), "feeds/feeds.json", "bad feed name '../../outside'")
    assert (lab_root / "outside.jsonl").read_text() == "mine\n"
