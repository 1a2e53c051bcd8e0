"""The program as an input: which files of the lab a run's code is, their hashes, and the untracked ones kept.

A run's code is the files its command names (`src/train.py` in `python src/train.py {settings}`, the module of
`python -m pkg.mod`, when they lie in the lab root) and the lab's program files: by default every file git tracks
in the lab root, except the experiments', papers', feeds' and book's directories and lab's own configuration and
prose (`lab.yaml`, `mkdocs.yml`, `*.md`, `.gitignore`); a lab with more than MAX_DEFAULT_FILES such files (inside a
large repository) has only the named ones by default. `code:` in `lab.yaml` or in a report's front matter (a
glob or a list of globs, relative to the lab root; the report's wins) replaces the default set: then the files
those globs match, plus the files the command names. Outside git, without `code:`, only the named files count.

A record keeps `code` as {path relative to the lab root: sha256}; the files hash through the same cache as the
data inputs (lab.runs.inputs), so an unchanged file is never read twice. A changed or deleted code file makes
the run `stale`, as a changed data file does. A file the command names that git does not track (a new script)
is listed in the record's `untracked` and its content kept in `experiments/EXP/runs/files/SHA256` (once per
content), so that `lab reproduce` can put it back beside the commit it checks out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from lab.errors import BadInput

# Top-level directories that hold no program: experiments' data and records, notes, feeds, the book's pages.
NOT_CODE_DIRS = ("experiments", "papers", "feeds", "docs", "site", ".lab", ".git")
NOT_CODE_FILES = ("lab.yaml", "mkdocs.yml", ".gitignore", ".gitattributes", ".gitkeep")
NOT_CODE_SUFFIXES = (".md",)
FILES_DIR = "files"
MAX_DEFAULT_FILES = 2000  # more tracked program files than this: only the named ones, unless `code:` chooses


def patterns_for(setting) -> list[str] | None:
    """The `code:` globs of the setting's report, else of lab.yaml, else None (the default set). BadInput when
    `code:` is neither a string nor a list of strings."""
    return experiment_patterns(setting.experiment)


def experiment_patterns(exp, meta: dict | None = None) -> list[str] | None:
    """`patterns_for` of an experiment (`meta`: its report's front matter, when the caller has read it)."""
    meta = exp.meta() if meta is None else meta
    if "code" in meta and meta["code"] is not None:
        return _globs(meta["code"], exp.report_path)
    config = exp.workspace.config
    if "code" in config and config["code"] is not None:
        return _globs(config["code"], exp.workspace.root / "lab.yaml")
    return None


def _globs(value, where) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BadInput(f"{where}: 'code' must be a glob or a list of globs such as ['src/**/*.py'], not {value!r}")
    return [v.strip() for v in value]


_INTERPRETERS = re.compile(r"(python[0-9.]*|pypy[0-9.]*|bash|sh|zsh|Rscript|julia|node|perl|ruby)")


def missing_program(root: Path, argv: list[str]) -> str | None:
    """The script an interpreter is told to run (`src/trian.py` in `python src/trian.py {settings}`) when it does
    not exist (relative to the lab root, where jobs run), else None."""
    if not argv or not _INTERPRETERS.fullmatch(os.path.basename(argv[0])):
        return None
    for word in argv[1:]:
        if word in ("-m", "-c", "-e", "--eval", "-") or word.startswith(("-m", "-c")) and len(word) > 2:
            return None  # a module or inline code: nothing to check here
        if word.startswith("-"):
            continue
        path = word if os.path.isabs(word) else os.path.join(root, word)
        return None if os.path.exists(path) else word
    return None


TRACKED_CACHE = "tracked-files"


def tracked_files(root: Path) -> list[str] | None:
    """The files git tracks under `root` (paths relative to it), or None when `root` is not in a git work tree.

    At a repository's top level the answer is kept in `.lab/tracked-files` with the stamp of `.git/index` (which
    git rewrites whenever what it tracks changes), so a queue of jobs asks git once, not once per job."""
    index = Path(root) / ".git" / "index"
    try:
        st = index.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    except OSError:
        return _ask_git(root)
    cache = Path(root) / ".lab" / TRACKED_CACHE
    try:
        head, _, body = cache.read_bytes().decode("utf-8", "surrogateescape").partition("\n")
        if head == stamp:
            return [p for p in body.split("\0") if p]
    except OSError:
        pass
    files = _ask_git(root)
    if files is not None:
        from lab.core.fsutil import atomic_write_bytes

        try:
            atomic_write_bytes(cache, (stamp + "\n" + "\0".join(files)).encode("utf-8", "surrogateescape"), fsync=False)
        except OSError:
            pass  # derived: asked again next time
    return files


def _ask_git(root: Path) -> list[str] | None:
    try:
        out = subprocess.run(["git", "-c", "core.quotepath=off", "ls-files", "-z"], cwd=root, capture_output=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [p for p in out.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def is_program_file(rel: str) -> bool:
    """Whether a tracked file belongs to the default code set (see the module's docstring)."""
    parts = rel.split("/")
    if parts[0] in NOT_CODE_DIRS or any(p.startswith(".") for p in parts[:-1]):
        return False
    name = parts[-1]
    return name not in NOT_CODE_FILES and not name.endswith(NOT_CODE_SUFFIXES)


def named_files(root: Path, argv: list[str]) -> list[str]:
    """The files under `root` that the command names (relative paths), lab's bookkeeping left out."""
    root_s = os.path.abspath(root)
    words: list[str] = []
    for i, word in enumerate(argv):
        if i > 0 and argv[i - 1] == "-m" and word.replace(".", "").replace("_", "").isalnum():
            base = os.path.join(*word.split("."))
            words += [base + ".py", os.path.join(base, "__main__.py")]
            continue
        words.append(word.split("=", 1)[1] if word.startswith("-") and "=" in word else word)
    found: list[str] = []
    for word in words:
        if not word or "\0" in word or "://" in word or len(word) > 4096:
            continue
        path = os.path.normpath(word if os.path.isabs(word) else os.path.join(root_s, word))
        if not path.startswith(root_s + os.sep) or not os.path.isfile(path):
            continue
        rel = os.path.relpath(path, root_s).replace(os.sep, "/")
        parts = rel.split("/")
        if parts[0] in (".lab", ".git") or any(p.startswith(".") for p in parts[:-1]):
            continue
        if parts[0] == "experiments" and len(parts) > 2 and parts[2] in ("runs", "logs", "models"):
            continue
        if rel not in found:
            found.append(rel)
    return found


def code_paths(root: Path, argv: list[str], patterns: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(the run's code files, the named ones git does not track), paths relative to `root`, sorted."""
    root = Path(root)
    named = named_files(root, argv)
    tracked = tracked_files(root)
    if patterns is not None:
        chosen = set(_matching(root, patterns))
    else:
        program = [t for t in tracked if is_program_file(t)] if tracked else []
        # A lab inside a large repository: its whole tree is not this run's program; `code:` says which part is.
        chosen = {t for t in program if os.path.isfile(root / t)} if len(program) <= MAX_DEFAULT_FILES else set()
    chosen.update(named)
    known = set(tracked or ())
    untracked = sorted(n for n in named if tracked is not None and n not in known)
    return sorted(chosen), untracked


def _matching(root: Path, patterns: list[str]) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        if os.path.isabs(pattern) or ".." in Path(pattern).parts:
            continue
        for path in root.glob(pattern):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not rel.startswith((".lab/", ".git/")):
                out.append(rel)
    return out


def code_fields(setting, argv: list[str], cache=None) -> dict:
    """What a run record adds about the run's code: `code` ({path: sha256}) and `untracked` (named files git does
    not track, their content kept in `runs/files/`). {} when the code cannot be read (provenance never stops a run)."""
    from lab.runs.inputs import HashCache, MISSING

    root = setting.experiment.workspace.root
    try:
        paths, untracked = code_paths(root, argv, patterns_for(setting))
    except (OSError, BadInput):
        return {}
    own = cache or HashCache.for_lab(root)
    try:
        code = {p: own.hash_path(os.path.join(root, p)) for p in paths}
    finally:
        if cache is None:
            own.save()
    kept = []
    for rel in untracked:
        digest = code.get(rel)
        if digest and digest != MISSING and _keep(setting.experiment.runs_dir, root / rel, digest):
            kept.append(rel)
    return {"code": code, **({"untracked": kept} if kept else {})}


def kept_path(runs_dir: Path, digest: str) -> Path:
    return Path(runs_dir) / FILES_DIR / digest


def _keep(runs_dir: Path, path: Path, digest: str) -> bool:
    """Copy an untracked file into `runs/files/DIGEST` (once per content)."""
    from lab.core.fsutil import atomic_write_bytes

    target = kept_path(runs_dir, digest)
    if target.exists():
        return True
    try:
        atomic_write_bytes(target, path.read_bytes())
    except OSError:
        return False
    return True


def restore_untracked(record: dict, runs_dir: Path, into: Path) -> list[str]:
    """Put a record's kept untracked files into the tree `into` (a reproduction's worktree); returns the ones
    that could not be found (their copy is gone)."""
    missing = []
    code = record.get("code") if isinstance(record.get("code"), dict) else {}
    for rel in record.get("untracked") or []:
        if not isinstance(rel, str) or rel.startswith("/") or ".." in rel.split("/"):
            continue
        source = kept_path(runs_dir, str(code.get(rel)))
        if not source.is_file():
            missing.append(rel)
            continue
        target = Path(into) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return missing
