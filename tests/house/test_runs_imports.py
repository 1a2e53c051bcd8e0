"""The runs wing's house rules, read from the code's own imports (every import statement, lazy ones included):
no import cycle inside lab.runs, no `_private` name imported from another module, lab.runs.local and
lab.runs.slurm never import each other, and `lab status` imports no Slurm code for a lab without Slurm runs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO, write_settings

RUNS = REPO / "lab" / "runs"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import statement of a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in RUNS.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for target, names in imports(path):
            for cand in [target, *(f"{target}.{n}" for n in names)]:
                if cand in files and cand != mod:
                    edges[mod].add(cand)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle_in_runs():
    assert find_cycle(graph()) is None


def test_the_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_private_name_is_imported_across_modules():
    bad = []
    for path in [*RUNS.rglob("*.py"), REPO / "lab" / "cli" / "runs.py"]:
        for target, names in imports(path):
            if target.startswith("lab"):
                bad += [f"{module_name(path)}: from {target} import {n}" for n in names if n.startswith("_") and n != "__version__"]
    assert bad == []


def test_local_and_slurm_never_import_each_other():
    edges = graph()
    for mod, targets in edges.items():
        for side, other in (("lab.runs.local", "lab.runs.slurm"), ("lab.runs.slurm", "lab.runs.local")):
            if mod.startswith(side):
                assert not [t for t in targets if t.startswith(other)], mod


def test_status_imports_no_slurm_code_without_slurm_runs(lab_root):
    write_settings(lab_root, "e", {"a.json": {}})
    code = ("import sys, runpy; sys.argv = ['lab', '--root', sys.argv[1], 'status', '--json'];"
            "import lab.cli.fast as f\ntry: f.main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if 'slurm' in m), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, str(lab_root)], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr
    json.loads(proc.stdout)
