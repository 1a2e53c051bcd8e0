"""`lab reproduce EXP/SETTING [--attempt N]`: run a recorded attempt again, as it was recorded.

The recorded resolved settings and command run, in the foreground, on the code of the recorded commit with the
recorded uncommitted diff applied, in a temporary `git worktree` (the user's working tree, index and branches are
never touched; the worktree is removed afterwards). The program's working directory, `LAB_ROOT` and
`LAB_EXPERIMENT_DIR` are in that worktree, so relative paths read the files as committed; inputs the commit does
not hold (untracked or git-ignored data, another experiment's models) are linked in from the lab. Its log,
metrics and output directory are kept apart (`side_paths`): a reproduction is a side attempt. It never changes the
setting's state, its record's result or whether `lab run` skips it, whatever its end (failed, interrupted); its
outcome is appended to `runs/reproduce/S.json` and summarised in the record's `reproduction` (shown by
`lab status --json` and the book). Untracked files the run used (lab.runs.code) are put back from the record's
copies. Before it starts, each input whose content differs from the recorded hash and
each package whose version differs from the recorded environment is named in a warning.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.core import process
from lab.core.command import build_argv, lab_env
from lab.core.fsutil import atomic_write_json
from lab.errors import LabError
from lab.runs import record as records
from lab.runs import environment
from lab.runs.diff import load_run, parse_ref
from lab.runs.code import restore_untracked
from lab.runs.inputs import setting_inputs
from lab.runs.state import State

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace

DIFF_CUT = "... (diff cut at"
REPRODUCE_DIR = "reproduce"
MAX_KEPT = 20  # outcomes kept per setting


def _git(args: list[str], cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input, timeout=600)
    except FileNotFoundError:
        raise LabError("lab reproduce needs git, and git is not installed") from None


def _setting_for(workspace: Workspace, exp_name: str, name: str, rec: dict):
    from lab.core.settings import Setting, sweep_member

    exp = workspace.experiment(exp_name)
    if "[" in name:
        return sweep_member(exp, name)
    rel = rec.get("settings_file") if isinstance(rec.get("settings_file"), str) else f"settings/{name}.json"
    return Setting(exp, name, exp.dir / rel)


def _refuse_if_active(workspace: Workspace, setting) -> None:
    from lab.runs.local.queue import Queue

    queue = Queue.open_existing(workspace.state_dir)
    if queue is None:
        return
    try:
        active = queue.active(setting.experiment.name, setting.name)
    finally:
        queue.close()
    if active is not None:
        raise LabError(f"{setting.id} is {active['state']} (job {active['id']}); reproduce it once that job ended (or lab cancel {setting.id})")


def plan(workspace: Workspace, ref: str, attempt: int | None = None) -> tuple:
    """Check that `ref` can be reproduced: (setting, the recorded attempt, git top level). Raises LabError (exit 1)
    without git, without a recorded commit, or when the commit is gone."""
    exp_name, name, at = parse_ref(ref)
    if attempt is not None and at is not None and attempt != at:
        raise LabError(f"{ref!r} and --attempt {attempt} name different attempts")
    chosen = attempt if attempt is not None else at
    _, rec = load_run(workspace, f"{exp_name}/{name}" + (f"@{chosen}" if chosen is not None else ""))
    run_id = f"{exp_name}/{name}@{rec.get('attempt')}"
    if not rec.get("command") or not isinstance(rec.get("settings"), dict):
        raise LabError(f"{run_id}: the record holds no command or settings to run again")
    git = rec.get("git") or {}
    if not git.get("commit"):
        raise LabError(f"{run_id} was not run in a git repository (its record has no commit), so its code cannot be restored; lab reproduce needs one")
    top = _git(["rev-parse", "--show-toplevel"], workspace.root)
    if top.returncode != 0:
        raise LabError(f"{workspace.root} is not in a git repository, so commit {git['commit'][:12]} of {run_id} cannot be checked out")
    if _git(["cat-file", "-e", f"{git['commit']}^{{commit}}"], workspace.root).returncode != 0:
        raise LabError(f"commit {git['commit'][:12]} of {run_id} is not in this repository (gone after a rebase, or never pushed here); it cannot be reproduced")
    if DIFF_CUT in (git.get("diff") or ""):
        raise LabError(f"{run_id}: its recorded uncommitted diff was too large and was cut, so its code cannot be restored exactly")
    setting = _setting_for(workspace, exp_name, name, rec)
    return setting, rec, Path(top.stdout.strip())


def _apply_diff(diff: str, worktree: Path) -> None:
    if not diff.strip():
        return
    proc = _git(["apply", "--whitespace=nowarn", "-"], worktree, input=diff)
    if proc.returncode != 0:
        # Changes to lab's own files (records, logs) do not matter to the program; binary ones cannot be applied.
        proc = _git(["apply", "--whitespace=nowarn", "--exclude=experiments/*/runs/*", "--exclude=experiments/*/logs/*", "-"], worktree, input=diff)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["git apply failed"])[0]
        raise LabError(f"the recorded uncommitted diff does not apply to its commit: {first}")


def _warnings(setting, rec: dict, wt_root: Path, argv: list[str], env: dict) -> tuple[list[str], dict, str]:
    """Warnings about inputs and packages that differ from the record; also (the inputs now, environment hash)."""
    warnings = []
    now = setting_inputs(setting, rec["settings"], root=wt_root)
    recorded = rec.get("inputs") if isinstance(rec.get("inputs"), dict) else None
    if recorded is None:
        warnings.append("the record has no input hashes (recorded before lab kept them): inputs cannot be checked")
    else:
        own = f"experiments/{rec.get('experiment')}/{rec.get('settings_file')}"
        for key in sorted(set(recorded) | set(now)):
            if key == own:
                continue
            if key not in now:
                warnings.append(f"input {key} is missing now")
            elif key not in recorded:
                warnings.append(f"input {key} was not an input of the recorded run")
            elif recorded[key] != now[key]:
                warnings.append(f"input {key} differs from the recorded one (content hash {recorded[key][:12]} then, {now[key][:12]} now)")
    digest, text = environment.current(argv, env)
    then = environment.read_environment(setting.experiment.dir, rec.get("environment"))
    pkgs_now = environment.parse_freeze(text)
    if then is None:
        then = rec.get("packages") if isinstance(rec.get("packages"), dict) else {}
        pkgs_now = {k: v for k, v in pkgs_now.items() if environment.canonical(k) in {environment.canonical(n) for n in then}}
        if not rec.get("environment"):
            warnings.append("the record has no package set (recorded before lab kept them): only key packages are checked")
    a = {environment.canonical(k): (k, v) for k, v in then.items()}
    b = {environment.canonical(k): (k, v) for k, v in pkgs_now.items()}
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, (None, None))[1], b.get(key, (None, None))[1]
        if old != new:
            label = (a.get(key) or b.get(key))[0]
            warnings.append(f"package {label}: {old or 'not installed'} then, {new or 'not installed'} now")
    if rec.get("python") and rec["python"] != sys.version.split()[0] and argv and _is_our_python(argv[0]):
        warnings.append(f"Python {rec['python']} then, {sys.version.split()[0]} now")
    return warnings, now, environment.record_environment(setting.experiment.dir, argv, env)


def _is_our_python(program: str) -> bool:
    return os.path.abspath(program) == os.path.abspath(sys.executable)


def reproduce(workspace: Workspace, ref: str, attempt: int | None = None, on_event=None, poll: float = 0.5) -> dict:
    """Run the recorded attempt `ref` (`EXP/SETTING[@N]`, or `attempt`) again as recorded and return its outcome
    (kept in `runs/reproduce/S.json`). `on_event(kind, payload)` reports progress: ("start", text), ("warning", text),
    ("progress", latest metrics), ("done", record)."""
    emit = on_event or (lambda kind, payload: None)
    setting, rec, top = plan(workspace, ref, attempt)
    _refuse_if_active(workspace, setting)
    root = workspace.root
    git = rec["git"]
    tmp = Path(tempfile.mkdtemp(prefix="lab-reproduce-"))
    worktree = tmp / "code"
    added = _git(["worktree", "add", "--detach", "--quiet", str(worktree), git["commit"]], root)
    if added.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"git worktree add failed: {(added.stderr.strip().splitlines() or ['?'])[0]}")
    try:
        _apply_diff(git.get("diff") or "", worktree)
        wt_root = worktree / root.relative_to(top)
        # Inputs the commit does not hold (untracked or ignored data, other experiments' outputs): the lab's own.
        missing = restore_untracked(rec, setting.experiment.runs_dir, wt_root)
        if missing:
            raise LabError(f"{setting.id}@{rec.get('attempt')} ran untracked files whose kept copies are gone: {', '.join(missing)}")
        for key in (rec.get("inputs") or {}):
            there, here = wt_root / key, root / key
            if not os.path.lexists(there) and os.path.exists(here):
                there.parent.mkdir(parents=True, exist_ok=True)
                there.symlink_to(here, target_is_directory=here.is_dir())
        wt_exp = wt_root / setting.experiment.dir.relative_to(root)
        side = side_paths(setting)
        argv = build_argv(setting, side["settings"], rec["command"], out_dir=side["output_dir"], resolved=rec.get("settings"))
        env = lab_env(setting, side["settings"], side["metrics"])
        env.update(LAB_ROOT=str(wt_root), LAB_EXPERIMENT_DIR=str(wt_exp), LAB_OUTPUT_DIR=str(side["output_dir"]))
        emit("start", f"reproducing {setting.id}@{rec.get('attempt')} at commit {git['commit'][:12]}"
                      f"{' with its uncommitted changes' if git.get('dirty') else ''} (worktree {worktree})")
        warnings, inputs, env_digest = _warnings(setting, rec, wt_root, argv, env)
        for w in warnings:
            emit("warning", w)
        return _run(setting, rec, argv, env, wt_root, inputs, env_digest, warnings, emit, poll)
    finally:
        _git(["worktree", "remove", "--force", str(worktree)], root)
        shutil.rmtree(tmp, ignore_errors=True)
        _git(["worktree", "prune"], root)


def side_paths(setting) -> dict:
    """Where a reproduction of `setting` keeps its files, beside the setting's own and never in their place:
    `runs/reproduce/S.json` (its outcomes), `runs/reproduce/S.settings.json`, `logs/reproduce/S.log`,
    `logs/reproduce/S.metrics.jsonl` and `models/reproduce/S/`."""
    exp = setting.experiment
    return {"outcomes": exp.runs_dir / REPRODUCE_DIR / f"{setting.name}.json",
            "settings": exp.runs_dir / REPRODUCE_DIR / f"{setting.name}.settings.json",
            "log": exp.logs_dir / REPRODUCE_DIR / f"{setting.name}.log",
            "metrics": exp.logs_dir / REPRODUCE_DIR / f"{setting.name}.metrics.jsonl",
            "output_dir": exp.models_dir / REPRODUCE_DIR / setting.name}


def outcomes(setting) -> list[dict]:
    """The setting's reproductions, oldest first (`lab reproduce` keeps each outcome)."""
    from lab.runs.record import read_record_file

    data = read_record_file(side_paths(setting)["outcomes"]) or {}
    return [o for o in data.get("reproductions", []) if isinstance(o, dict)] if isinstance(data.get("reproductions"), list) else []


def _run(setting, rec, argv, env, cwd, inputs, env_digest, warnings, emit, poll) -> dict:
    from lab.runs.attempt import provenance

    exp = setting.experiment
    side = side_paths(setting)
    for d in (side["outcomes"].parent, side["log"].parent, side["output_dir"]):
        d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(side["settings"], rec["settings"], fsync=False)
    side["metrics"].unlink(missing_ok=True)
    started_at = records.now_iso()
    with open(side["log"], "a", encoding="utf-8") as f:
        f.write(f"===== lab: reproduction of {setting.id}@{rec.get('attempt')} at {started_at}, "
                f"commit {rec['git']['commit'][:12]}: {subprocess.list2cmdline(argv)}\n")
        log_offset = f.tell()
    info = provenance(exp.workspace.root)
    outcome = {"reproduces": rec.get("attempt"), "state": State.RUNNING, "started_at": started_at, "ended_at": None,
               "duration_s": None, "exit_code": None, "signal": None, "argv": argv,
               "git": {**rec["git"], "worktree": True}, "host": info.get("host"), "python": info.get("python"),
               "inputs": inputs, "environment": env_digest, "warnings": warnings,
               "log_path": str(side["log"].relative_to(exp.dir)), "metrics_path": str(side["metrics"].relative_to(exp.dir)),
               "output_dir": str(side["output_dir"].relative_to(exp.dir)), "metrics": {}}
    started = time.monotonic()
    with open(side["log"], "ab") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as e:
            raise LabError(f"could not start {argv[0]!r}: {e.strerror}") from None
    state = None
    try:
        while proc.poll() is None:
            live = records.latest_metrics(side["metrics"])
            if live:
                emit("progress", live)
            time.sleep(poll)
    except KeyboardInterrupt:
        process.terminate_group(proc.pid, 10.0, is_gone=lambda: proc.poll() is not None)
        state = State.CANCELLED
    code = proc.wait()
    outcome["ended_at"] = records.now_iso()
    outcome["duration_s"] = round(time.monotonic() - started, 3)
    if code is not None and code < 0:
        outcome["signal"] = signal.Signals(-code).name if -code in signal.valid_signals() else -code
    else:
        outcome["exit_code"] = code
    outcome["state"] = state or (State.SUCCEEDED if code == 0 else State.FAILED)
    if outcome["state"] == State.CANCELLED:
        outcome["reason"] = "lab reproduce was interrupted"
    elif outcome["state"] == State.FAILED:
        line = records.last_error_line(side["log"], log_offset)
        outcome["reason"] = f"exit code {code}: {line}" if line else f"exit code {code}"
    outcome["metrics"] = records.final_metrics(records.read_metrics(side["metrics"]))
    outcome["metric_deltas"] = {k: d["delta"] for k, d in compare_metrics(rec, outcome).items()}
    outcome["exact"] = outcome["state"] == State.SUCCEEDED and bool(outcome["metric_deltas"]) and all(
        d == 0 for d in outcome["metric_deltas"].values())
    _keep_outcome(setting, outcome)
    emit("done", outcome)
    if state == State.CANCELLED:
        raise KeyboardInterrupt
    return outcome


def _keep_outcome(setting, outcome: dict) -> None:
    """Append the outcome to `runs/reproduce/S.json`; the record gets a one-line summary (`reproduction`), its
    state, result and skip decision untouched."""
    kept = outcomes(setting)[-(MAX_KEPT - 1):]
    atomic_write_json(side_paths(setting)["outcomes"], {"experiment": setting.experiment.name, "setting": setting.name,
                                                        "reproductions": [*kept, outcome]})
    rec = records.read_record(setting, strict=False)
    if rec is not None and rec.get("state") not in records.ACTIVE:
        summary = {k: outcome.get(k) for k in ("reproduces", "state", "exact", "ended_at", "metric_deltas")}
        records.write_record(setting, {**rec, "reproduction": summary})


def compare_metrics(original: dict, new: dict) -> dict:
    """{metric: {"recorded", "reproduced", "delta"}} over the numeric final metrics of either."""
    a, b = original.get("metrics") or {}, new.get("metrics") or {}
    out = {}
    for key in dict.fromkeys([*a, *b]):
        va, vb = a.get(key), b.get(key)
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        if key in ("step", "epoch") or not (num(va) or num(vb)):
            continue
        out[key] = {"recorded": va, "reproduced": vb, "delta": vb - va if num(va) and num(vb) else None}
    return out
