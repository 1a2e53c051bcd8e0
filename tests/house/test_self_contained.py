"""The repository stands on its own: nothing the tests, benchmarks, scripts, CI or lab itself run names a path
outside the repository (a user's clone has no sibling folders)."""

from __future__ import annotations

import re
import subprocess

from helpers import REPO

# Ways code climbs out of the repository: a sibling folder by name, the repository's parent, or more `..` /
# `.parent` steps than the file is deep.
SIBLING = re.compile(r"\.\./shared|/shared/(fixtures|slurm|benchmarks)|REPO\.parent|ROOT\.parent")
PARENTS_INDEX = re.compile(r"\.parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"(?:\.parent){2,}")
DOTDOT = re.compile(r"(?:\.\./)+")


def _tracked_code() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    keep = []
    for name in files:
        if name == "tests/house/test_self_contained.py":  # its own examples of what it refuses
            continue
        if name.startswith(("tests/fixtures/", "experiments/", "papers/")) or name.endswith((".md", ".xml", ".json", ".jsonl")):
            continue
        if name.endswith((".py", ".sh", ".toml", ".yml", ".yaml", ".cfg", ".ini")) or name in ("Makefile", ".ci/run"):
            keep.append(name)
    return keep


def _problems(name: str, text: str) -> list[str]:
    depth = name.count("/")  # folders between the repository root and this file
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{lineno}: {line.strip()}"
        if SIBLING.search(line):
            found.append(where)
        if name.endswith(".py"):
            # Path(__file__).resolve().parents[depth] is the repository root; a larger index is outside it.
            if any(int(n) > depth for n in PARENTS_INDEX.findall(line) if "__file__" in line or "REPO" in line):
                found.append(where)
            if "__file__" in line and any(m.count(".parent") > depth + 1 for m in PARENT_CHAIN.findall(line)):
                found.append(where)
        elif not name.endswith((".toml", ".yml", ".yaml")):
            # shell: `..` steps from the file's own folder (scripts cd to "$(dirname "$0")/.." first).
            if any(m.count("../") > depth for m in DOTDOT.findall(line) if "dirname" in line):
                found.append(where)
            if any(m.count("../") > 0 for m in DOTDOT.findall(line) if "dirname" not in line and not line.lstrip().startswith("#")):
                found.append(where)
    return found


def test_no_code_reads_outside_the_repository():
    problems = []
    for name in _tracked_code():
        problems += _problems(name, (REPO / name).read_text(errors="replace"))
    assert not problems, "paths outside the repository:\n" + "\n".join(problems)


def test_the_guard_sees_a_sibling_path():
    # (the examples are split into two literals so that a plain grep of the repository finds no sibling path)
    assert _problems("tests/test_x.py", 'FIXTURES = REPO.parent / ' '"shared" / "fixtures"')
    assert _problems("tests/test_x.py", 'ROOT = Path(__file__).resolve().parents[2]')
    assert not _problems("tests/test_x.py", 'ROOT = Path(__file__).resolve().parents[1]')
    assert _problems(".ci/run", "bash ../" "shared/slurm/up.sh")
    assert _problems(".ci/run", "bash ../other/up.sh")
    assert not _problems(".ci/run", 'cd "$(dirname "$0")/.."')


def test_fixtures_are_in_the_repository():
    from helpers import FIXTURES

    assert FIXTURES.is_relative_to(REPO)
    assert (FIXTURES / "arxiv-api" / "manifest.json").is_file()
    assert (FIXTURES / "README.md").is_file()
    assert (REPO / "scripts" / "slurm" / "up.sh").is_file()
