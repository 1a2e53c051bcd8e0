"""The tests' own house: each test file sits in the folder of the wing it tests (tests/<wing>/test_*.py), test file
names are unique across wings (pytest imports them by basename), and no test file imports another test file or
conftest: what tests share is in tests/helpers.py, their shared fixtures in tests/conftest.py."""

from __future__ import annotations

import ast
from collections import Counter

from helpers import REPO

TESTS = REPO / "tests"


def _test_files():
    return sorted(p for p in TESTS.rglob("test_*.py") if "fixtures" not in p.relative_to(TESTS).parts)


def _imported_modules(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_test_file_is_in_a_wing_folder():
    flat = [p.name for p in TESTS.glob("test_*.py")]
    assert flat == [], f"move these into tests/<wing>/: {flat}"


def test_test_file_names_are_unique_across_wings():
    twice = [name for name, n in Counter(p.name for p in _test_files()).items() if n > 1]
    assert twice == []


def test_no_test_file_imports_another_test_file_or_conftest():
    shared = [*_test_files(), TESTS / "helpers.py", TESTS / "fixture_server.py", TESTS / "conftest.py"]
    wrong = {
        str(p.relative_to(REPO)): sorted(m for m in _imported_modules(p) if m.startswith("test_") or m == "conftest")
        for p in shared
    }
    assert {name: mods for name, mods in wrong.items() if mods} == {}, "import shared code from helpers instead"
