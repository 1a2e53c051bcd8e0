"""The package set of a job's Python environment, recorded once per distinct environment.

The set is what `pip freeze` would list (`name==version`, one a line, sorted), read from the `*.dist-info`
(and `*.egg-info`) metadata in the environment's package directories without starting pip or the interpreter.
Its text is stored once in `experiments/EXP/runs/env/HASH.txt` (HASH: the first 16 hex digits of its sha256),
a committed file beside the records, so an experiment directory carries what its runs ran with; a record holds
only `environment: HASH`.

Which environment: the job's program when it is a Python interpreter (`{python}`, `python`, a venv's
`bin/python`), found on the job's PATH; its package directories are this process's `sys.path` when it is the
Python running lab, else those of its venv (`pyvenv.cfg`) or installation prefix. For any other program, the
environment of the Python that runs lab. `PYTHONPATH` entries of the job's environment come first, as they do
for the interpreter.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import sys
import threading
from pathlib import Path

from lab.core.fsutil import atomic_write_text

ENV_DIR = "env"
_PYTHON_NAME = re.compile(r"python[0-9.]*")
_cache: dict = {}


def _prefix_site_dirs(prefix: Path) -> list[str]:
    dirs = sorted(glob.glob(str(prefix / "lib" / "python3*" / "site-packages")))
    dirs += sorted(glob.glob(str(prefix / "lib" / "python3*" / "dist-packages")))
    dirs += sorted(glob.glob(str(prefix / "lib" / "python3" / "dist-packages")))
    return dirs


def site_dirs(argv: list[str] | None = None, env: dict | None = None) -> list[str]:
    """The package directories of the job's Python environment, in import order."""
    env = os.environ if env is None else env
    dirs = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    exe = None
    if argv:
        program = argv[0]
        exe = program if os.sep in program else shutil.which(program, path=env.get("PATH", os.defpath))
    if exe and _PYTHON_NAME.fullmatch(os.path.basename(exe)) and not _same_file(exe, sys.executable):
        bin_dir = Path(os.path.abspath(exe)).parent
        cfg = bin_dir.parent / "pyvenv.cfg"
        if cfg.is_file():
            dirs += _prefix_site_dirs(bin_dir.parent)
            text = cfg.read_text(encoding="utf-8", errors="replace")
            home = re.search(r"^home\s*=\s*(.+)$", text, re.M)
            system = re.search(r"^include-system-site-packages\s*=\s*true", text, re.M | re.I)
            if system and home:
                dirs += _prefix_site_dirs(Path(home.group(1).strip()).parent)
        else:
            dirs += _prefix_site_dirs(Path(os.path.realpath(exe)).parent.parent)
    else:
        dirs += [p for p in sys.path if p and os.path.isdir(p)]
    seen, out = set(), []
    for d in dirs:
        d = os.path.abspath(d)
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def _same_file(a: str, b: str) -> bool:
    """The same interpreter in the same environment (a venv's python links to the base one: not the same)."""
    a, b = os.path.abspath(a), os.path.abspath(b)
    try:
        return a == b or (os.path.dirname(a) == os.path.dirname(b) and os.path.samefile(a, b))
    except OSError:
        return False


def _metadata(path: str) -> tuple[str, str] | None:
    """(Name, Version) from a METADATA or PKG-INFO file: only the headers are read."""
    name = version = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                if line.startswith("Name:") and name is None:
                    name = line[5:].strip()
                elif line.startswith("Version:") and version is None:
                    version = line[8:].strip()
                if name and version:
                    break
    except OSError:
        return None
    return (name, version) if name and version else None


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def packages(dirs: list[str]) -> dict[str, str]:
    """{name: version} of the distributions in `dirs`; the first directory that has one wins, as for imports."""
    found: dict[str, tuple[str, str]] = {}
    for d in dirs:
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info"):
                meta = _metadata(os.path.join(d, entry, "METADATA"))
            elif entry.endswith(".egg-info"):
                full = os.path.join(d, entry)
                meta = _metadata(os.path.join(full, "PKG-INFO") if os.path.isdir(full) else full)
            else:
                continue
            if meta and canonical(meta[0]) not in found:
                found[canonical(meta[0])] = meta
    return {name: version for name, version in sorted(found.values(), key=lambda nv: canonical(nv[0]))}


def freeze(pkgs: dict[str, str]) -> str:
    return "".join(f"{name}=={version}\n" for name, version in pkgs.items())


def parse_freeze(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name:
            out[name] = version
    return out


def env_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def current(argv: list[str] | None = None, env: dict | None = None) -> tuple[str, str]:
    """(hash, freeze text) of the job's environment. A long-lived runner re-reads it only when one of the package
    directories changed (an install or an upgrade changes its mtime)."""
    dirs = site_dirs(argv, env)
    stamp = []
    for d in dirs:
        try:
            stamp.append((d, os.stat(d).st_mtime_ns))
        except OSError:
            stamp.append((d, None))
    key = tuple(stamp)
    if key not in _cache:
        if len(_cache) > 16:
            _cache.clear()
        text = freeze(packages(dirs))
        _cache[key] = (env_hash(text), text)
    return _cache[key]


def env_path(exp_dir: Path, digest: str) -> Path:
    return Path(exp_dir) / "runs" / ENV_DIR / f"{digest}.txt"


def record_environment(exp_dir: Path, argv: list[str] | None = None, env: dict | None = None) -> str:
    """Store the job's package set in `runs/env/HASH.txt` (once) and return HASH, for the record."""
    digest, text = current(argv, env)
    path = env_path(exp_dir, digest)
    if not path.exists():
        # Written (atomically, fsynced) beside the caller, so the wait for the disk never delays the record of a
        # starting job; not a daemon thread, so the process finishes it before it exits. A file lost anyway (kill -9
        # within milliseconds) is written again by the next run in the same environment.
        writer = threading.Thread(target=_write_quietly, args=(path, text), name="lab-environment")
        writer.start()
        _writers.append(writer)
    return digest


_writers: list = []


def _write_quietly(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError:
        pass


def flush() -> None:
    """Wait for the environment files being written (tests, and callers that read them at once)."""
    while _writers:
        _writers.pop().join()


def read_environment(exp_dir: Path, digest: str | None) -> dict[str, str] | None:
    """{name: version} of a recorded environment, or None when the record has none or its file is gone."""
    flush()
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{8,64}", digest):
        return None
    try:
        return parse_freeze(env_path(exp_dir, digest).read_text(encoding="utf-8"))
    except OSError:
        return None


def record_fields(setting, resolved: dict, argv: list[str] | None, env: dict | None, code: dict | None = None) -> dict:
    """What a run record adds about the run's inputs and environment: `inputs`, `code` (and `untracked`, see
    lab.runs.code) and `environment` (the hook the record's owner calls where it builds a record)."""
    from lab.runs.code import code_fields
    from lab.runs.inputs import setting_inputs

    # Provenance must never stop a run: what cannot be read (an unreadable directory, a read-only runs/) is left out.
    try:
        inputs = setting_inputs(setting, resolved)
    except OSError:
        inputs = None
    try:
        digest = record_environment(setting.experiment.dir, argv, env)
    except OSError:
        digest = None
    if code is None:  # `code`: the attempt's code fields, when it read them before its program started
        code = code_fields(setting, argv or [])
    return {"inputs": inputs, **code, "environment": digest}
