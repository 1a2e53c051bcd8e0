"""The house rules of imports (CONVENTIONS.md, Shape 2), enforced by `make test` and so by CI.

- `lint-imports` (import-linter, contracts in pyproject.toml): the wings point one way, the local and Slurm
  executors never import each other, no import cycles at any level; and it fails on a violation (shown here on a
  copy of the package with one bad import added).
- No `_private` name of one lab module is imported by another (read from the code's syntax trees).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repository's contracts, on the `lab` package found in `package_parent`."""
    env = dict(os.environ, PYTHONPATH=str(package_parent), NO_COLOR="1", COLUMNS="300")
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=package_parent, env=env, timeout=300)


def test_the_import_contracts_hold():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


# Each: the module to change, the import to add, the contract that must then break.
VIOLATIONS = {
    "a low layer reaching up": ("lab/core/layout.py", "from lab.search import index", "Wings point one way"),
    "two siblings importing each other": ("lab/papers/feeds.py", "from lab.runs import record",
                                          "Wings point one way"),
    "an import cycle": ("lab/core/names.py", "from lab.core import workspace", "No import cycles"),
    "the local executor importing Slurm's": ("lab/runs/local/queue.py", "from lab.runs.slurm import cluster",
                                             "The local and Slurm executors never import each other"),
}


@pytest.mark.parametrize("change", VIOLATIONS.values(), ids=list(VIOLATIONS))
def test_a_violation_is_caught(change, tmp_path):
    module, line, contract = change
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # the violation\n", encoding="utf-8")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    broken = [row for row in proc.stdout.splitlines() if " BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), proc.stdout


def private_imports(package: Path) -> list[str]:
    """Every `_private` name of a lab module used by another module: `from lab.x import _y`, `import lab.x` then
    `lab.x._y`, or `from lab import x` then `x._y`. (Dunder names are not private.)"""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("").as_posix().replace("/", ".")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}  # local name -> lab module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lab":
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{rel}:{node.lineno}: from {node.module} import {alias.name}")
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "lab":
                        if any(_private(part) for part in alias.name.split(".")):
                            found.append(f"{rel}:{node.lineno}: import {alias.name}")
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "lab"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = _dotted(node.value)
                if base is None:
                    continue
                head, _, rest = base.partition(".")
                if head in aliases:
                    target = f"{aliases[head]}.{rest}" if rest else aliases[head]
                    if target != rel:
                        found.append(f"{rel}:{node.lineno}: {base}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


# Imported across modules inside lab/runs today; the runs redesign (one record owner, one executor interface)
# removes them. Nothing may be added here.
KNOWN_IN_RUNS: set[str] = set()  # none left


def test_no_private_name_is_imported_across_modules():
    found = private_imports(REPO / "lab")
    unknown = [f for f in found if f"{f.split(':')[0]}:{f.split(':', 2)[2]}" not in KNOWN_IN_RUNS]
    assert unknown == []


def test_the_private_import_check_sees_each_form(tmp_path):
    package = tmp_path / "lab"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "__init__.py").write_text("")
    (package / "core" / "a.py").write_text("def _helper():\n    pass\n\n\ndef public():\n    return _helper()\n")
    (package / "core" / "b.py").write_text(
        "import lab.core.a\nfrom lab.core import a\nfrom lab.core import a as alias\nfrom lab.core.a import _helper\n\n"
        "lab.core.a._helper()\na._helper()\nalias._helper()\na.public()\n"
    )
    assert private_imports(package) == [
        "lab.core.b:4: from lab.core.a import _helper",
        "lab.core.b:6: lab.core.a._helper",
        "lab.core.b:7: a._helper",
        "lab.core.b:8: alias._helper",
    ]
