"""`lab diff A B`: why one run differs from another, from their records.

A run is named `EXP/SETTING` (its latest attempt that started) or `EXP/SETTING@N` (attempt N, from the record's
history). The difference covers the resolved settings (dotted keys of nested objects), the command, the code
(commits, dirty flags, and a short `git diff --stat` between the commits), the inputs (lab.runs.inputs; each
run's own settings file left out, since the settings are compared resolved), the
packages (the recorded environments, lab.runs.environment; older records: their few key package versions) and
the final metrics (B - A).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab.core.settings import flatten
from lab.errors import BadInput
from lab.runs import record as records
from lab.runs.environment import read_environment
from lab.runs.inputs import own_settings_file

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace

STAT_LINES = 12


def parse_ref(ref: str) -> tuple[str, str, int | None]:
    """`EXP/SETTING[@N]` as (experiment, setting, attempt or None)."""
    from lab.core.settings import parse_target

    target, at, attempt = ref.rpartition("@") if "@" in ref else (ref, "", "")
    exp, setting = parse_target(target)
    if not setting:
        raise BadInput(f"name a run as EXP/SETTING or EXP/SETTING@ATTEMPT, not {ref!r}")
    if at and not attempt.isdigit():
        raise BadInput(f"{ref!r}: the attempt after '@' must be a number")
    return exp, setting, int(attempt) if at else None


def started_attempts(record: dict) -> list[dict]:
    """Every attempt of a record that started, oldest first."""
    return [r for r in [*record.get("history", []), {k: v for k, v in record.items() if k != "history"}]
            if isinstance(r, dict) and r.get("started_at")]


def load_run(workspace: Workspace, ref: str) -> tuple[Path, dict]:
    """(experiment directory, the attempt's record) of `EXP/SETTING[@N]`; BadInput when there is no such run."""
    exp_name, setting, attempt = parse_ref(ref)
    exp = workspace.experiment(exp_name)
    record = records.read_record_file(exp.runs_dir / f"{setting}.json")
    if record is None:
        if not records.setting_of(workspace, exp.name, setting).path.exists():
            from lab.core.settings import find_settings

            find_settings(exp, setting)  # raises: no such setting, did you mean, the settings that exist
        raise BadInput(f"{exp_name}/{setting} has no run record ({exp.runs_dir.relative_to(workspace.root)}/{setting}.json); run it with: lab run {exp_name}/{setting}")
    attempts = started_attempts(record)
    if not attempts:
        raise BadInput(f"{exp_name}/{setting} has not started a run yet")
    if attempt is None:
        return exp.dir, attempts[-1]
    for rec in attempts:
        if rec.get("attempt") == attempt:
            return exp.dir, rec
    known = ", ".join(str(r.get("attempt")) for r in attempts)
    raise BadInput(f"{exp_name}/{setting} has no attempt {attempt} (attempts: {known})")


def _differing(a: dict, b: dict) -> dict:
    keys = list(dict.fromkeys([*a, *b]))
    same = lambda k: json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True) and (k in a) == (k in b)  # noqa: E731
    return {k: [a.get(k), b.get(k)] for k in keys if not same(k)}


def _git_stat(root: Path, a: str, b: str) -> str | None:
    try:
        proc = subprocess.run(["git", "diff", "--stat", "--no-color", a, b], cwd=root, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    lines = proc.stdout.rstrip("\n").splitlines()
    if len(lines) > STAT_LINES:
        lines = [*lines[: STAT_LINES - 1], f" ... {len(lines) - STAT_LINES} more files", lines[-1]]
    return "\n".join(lines)


def _packages(exp_dir: Path, rec: dict) -> tuple[dict | None, bool]:
    """({name: version}, complete) of a record: its environment file, else its key package versions."""
    env = read_environment(exp_dir, rec.get("environment"))
    if env is not None:
        return env, True
    pk = rec.get("packages")
    return (dict(pk), False) if isinstance(pk, dict) else (None, False)


def _canon(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def diff_runs(workspace: Workspace, a_ref: str, b_ref: str) -> dict:
    """What differs between two runs (see the module docstring); every part says what it compared."""
    a_dir, a = load_run(workspace, a_ref)
    b_dir, b = load_run(workspace, b_ref)
    name = lambda r: f"{r.get('experiment')}/{r.get('setting')}@{r.get('attempt')}"  # noqa: E731
    out: dict = {"a": name(a), "b": name(b)}
    out["settings"] = _differing(flatten(a.get("settings")), flatten(b.get("settings")))
    out["command"] = None if a.get("command") == b.get("command") else [a.get("command"), b.get("command")]
    ga, gb = a.get("git") or {}, b.get("git") or {}
    code = {"a": ga.get("commit"), "b": gb.get("commit"), "dirty": [bool(ga.get("dirty")), bool(gb.get("dirty"))],
            "same": bool(ga.get("commit")) and ga.get("commit") == gb.get("commit") and (ga.get("diff") or "") == (gb.get("diff") or "")}
    if ga.get("commit") and gb.get("commit") and ga["commit"] != gb["commit"]:
        code["stat"] = _git_stat(workspace.root, ga["commit"], gb["commit"])
    if (ga.get("diff") or "") != (gb.get("diff") or ""):
        code["uncommitted_changes_differ"] = True
    out["code"] = code
    ia, ib = a.get("inputs"), b.get("inputs")
    if isinstance(ia, dict) and isinstance(ib, dict):
        # Each run's own settings file is left out: the resolved settings above say what differs in it.
        own = {own_settings_file(a), own_settings_file(b)}
        out["inputs"] = _differing({k: v for k, v in ia.items() if k not in own}, {k: v for k, v in ib.items() if k not in own})
    else:
        out["inputs"] = None
    ca_, cb_ = a.get("code"), b.get("code")
    # The program files (lab.runs.code) whose content differs: {path: [hash in a, hash in b]}.
    out["code_files"] = _differing(ca_, cb_) if isinstance(ca_, dict) and isinstance(cb_, dict) else None
    pa, full_a = _packages(a_dir, a)
    pb, full_b = _packages(b_dir, b)
    if pa is None or pb is None:
        out["packages"] = None
    else:
        ca = {_canon(k): (k, v) for k, v in pa.items()}
        cb = {_canon(k): (k, v) for k, v in pb.items()}
        # Two full package sets: every package; otherwise only the packages both records name.
        keys = sorted(set(ca) | set(cb)) if full_a and full_b else sorted(set(ca) & set(cb))
        out["packages"] = {(ca.get(k) or cb.get(k))[0]: [ca.get(k, (None, None))[1], cb.get(k, (None, None))[1]]
                           for k in keys if ca.get(k, (None, None))[1] != cb.get(k, (None, None))[1]}
    out["environment"] = [a.get("environment"), b.get("environment")]
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    metrics = {}
    for key in dict.fromkeys([*ma, *mb]):
        va, vb = ma.get(key), mb.get(key)
        if key in ("step", "epoch") or not (_number(va) or _number(vb)):
            continue
        metrics[key] = {"a": va, "b": vb, "delta": vb - va if _number(va) and _number(vb) else None}
    out["metrics"] = metrics
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
