"""The files a run reads, by content: what makes a finished run `stale`.

Every string value of a resolved setting (nested ones included) that names an existing file or directory under
the lab root is an input: relative values are tried against the experiment directory first (as lab.train reads
them), then the lab root. Lab's own bookkeeping is never an input: `.git/`, `.lab/`, every experiment's `runs/`
and `logs/`, the setting's own output directory, and any directory holding one of these (the lab root, an
experiment directory). The setting's own file is recorded too, but only the resolved settings decide whether a
change to it matters (`settings_hash`), so it never makes a run stale.

A run record keeps `inputs` as {path relative to the lab root: sha256}; a directory's hash covers the relative
path and hash of each file under it. Its `code` (lab.runs.code) is checked the same way: a changed or deleted
data file or program file makes the run stale. Hashes are cached in `.lab/input-hashes.tsv` (derived: delete it and files
are read again), keyed by (size, mtime_ns, inode), so an unchanged large file is never read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lab.core import layout
from lab.core.fsutil import atomic_write_text
from lab.runs.state import State

CACHE_NAME = layout.INPUT_HASHES
CACHE_HEADER = "lab input hashes 1"
SKIP_DIR_NAMES = frozenset({".git", "__pycache__", layout.STATE})
MISSING = "missing"


class HashCache:
    """Content hashes of files, re-read only when a file's (size, mtime_ns, inode) changed."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, tuple[str, str]] = {}  # abs path -> (stamp, sha256)
        self.changed = False
        if path is not None:
            try:
                lines = path.read_text(encoding="utf-8").split("\n")
            except (OSError, UnicodeDecodeError):
                lines = []
            if lines and lines[0] == CACHE_HEADER:
                for line in lines[1:]:
                    parts = line.split("\t")
                    if len(parts) == 3:
                        self.entries[parts[0]] = (parts[1], parts[2])

    @classmethod
    def for_lab(cls, root: Path) -> "HashCache":
        return cls(Path(root) / layout.STATE / CACHE_NAME)

    def file_hash(self, path: str, st: os.stat_result | None = None) -> str:
        st = st or os.stat(path)
        stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        hit = self.entries.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if "\t" not in path and "\n" not in path:
            self.entries[path] = (stamp, digest)
            self.changed = True
        return digest

    def dir_hash(self, top: str) -> str:
        """A hash over every file under `top`: its path relative to `top` and its content hash."""
        h = hashlib.sha256()
        seen: set[tuple[int, int]] = set()
        rows = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIR_NAMES)
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    fst = os.stat(full)
                except OSError:
                    continue  # a dangling link
                if not os.path.isfile(full):
                    continue
                rows.append((os.path.relpath(full, top).replace(os.sep, "/"), self.file_hash(full, fst)))
        for rel, digest in sorted(rows):
            h.update(f"{rel}\0{digest}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def hash_path(self, path: str) -> str:
        """The content hash of a file or directory, or MISSING."""
        try:
            st = os.stat(path)
        except OSError:
            return MISSING
        try:
            if os.path.isdir(path):
                return self.dir_hash(path)
            return self.file_hash(path, st)
        except OSError:
            return MISSING

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        live = {p: e for p, e in self.entries.items() if os.path.exists(p)}
        text = CACHE_HEADER + "\n" + "".join(f"{p}\t{s}\t{d}\n" for p, (s, d) in sorted(live.items()))
        try:
            atomic_write_text(self.path, text, fsync=False)  # derived: rebuilt if lost
        except OSError:
            pass  # a read-only lab still works, only slower
        self.changed = False


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _excluded(path: str, root: str, output_dir: str) -> bool:
    rel = os.path.relpath(path, root)
    parts = [] if rel == "." else rel.split(os.sep)
    if not parts or parts[0] in (".git", layout.STATE):
        return True
    if parts[0] == "experiments" and (len(parts) <= 2 or parts[2] in ("runs", "logs")):
        return True
    out = output_dir
    return path == out or out.startswith(path + os.sep) or path.startswith(out + os.sep)


def input_paths(root: Path, exp_dir: Path, resolved: dict, output_dir: Path | None = None,
                settings_file: Path | None = None) -> dict[str, str]:
    """{path relative to the lab root: absolute path} of the files and directories the setting names."""
    root_s = os.path.abspath(root)
    exp_s = os.path.abspath(exp_dir)
    out_s = os.path.abspath(output_dir) if output_dir is not None else os.path.join(exp_s, "models", "\0")
    found: dict[str, str] = {}
    candidates = [str(settings_file)] if settings_file is not None else []
    for value in _strings(resolved):
        if not value or len(value) > 4096 or "\0" in value or "\n" in value or "://" in value:
            continue
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded):
            candidates.append(expanded)
        else:
            candidates.append(os.path.join(exp_s, expanded))
            candidates.append(os.path.join(root_s, expanded))
    done: set[str] = set()
    for candidate in candidates:
        path = os.path.normpath(candidate)
        if path in done:
            continue
        done.add(path)
        if not (path == root_s or path.startswith(root_s + os.sep)) or _excluded(path, root_s, out_s):
            continue
        if not os.path.exists(path):
            continue
        key = os.path.relpath(path, root_s).replace(os.sep, "/")
        found.setdefault(key, path)
    return found


def hash_inputs(paths: dict[str, str], cache: HashCache) -> dict[str, str]:
    """{key: content hash} for `input_paths`' answer."""
    return {key: cache.hash_path(path) for key, path in sorted(paths.items())}


def setting_inputs(setting, resolved: dict, root: Path | None = None) -> dict[str, str]:
    """The `inputs` of a run of `setting` with `resolved` settings ({path: sha256}), read under `root`
    (default: the setting's lab root; a reproduction reads them in its worktree)."""
    from lab.core.command import output_dir

    lab_root = setting.experiment.workspace.root
    root = Path(root or lab_root)
    exp_dir = root / setting.experiment.dir.relative_to(lab_root)
    settings_file = root / setting.path.relative_to(lab_root) if setting.path.is_relative_to(lab_root) else None
    out = root / output_dir(setting).relative_to(lab_root)
    cache = HashCache.for_lab(lab_root) if root == lab_root else HashCache(None)
    try:
        return hash_inputs(input_paths(root, exp_dir, resolved, out, settings_file), cache)
    finally:
        cache.save()


def own_settings_file(record: dict) -> str | None:
    """The key under which a record's inputs hold its setting's own file."""
    exp, rel = record.get("experiment"), record.get("settings_file")
    return f"experiments/{exp}/{rel}" if isinstance(exp, str) and isinstance(rel, str) else None


class Checker:
    """Compares recorded inputs with the files as they are now; each path is hashed once per checker."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.cache = HashCache.for_lab(self.root)
        self.now: dict[str, str] = {}
        self.sets: dict = {}

    def current(self, key: str) -> str:
        if key not in self.now:
            path = os.path.normpath(os.path.join(self.root, key))
            self.now[key] = self.cache.hash_path(path) if path.startswith(str(self.root)) else MISSING
        return self.now[key]

    def changed(self, inputs: dict, ignore: str | None = None) -> list[str]:
        """The recorded inputs whose content is not what it was (deleted ones included), sorted. A token's code set
        (`staleness_token`) is read from `.lab/code-sets/` once per checker."""
        if not isinstance(inputs, dict):
            return []
        if CODE_SET in inputs:
            inputs = {**{k: v for k, v in inputs.items() if k != CODE_SET}, **self.code_set(inputs[CODE_SET])}
        return sorted(k for k, v in inputs.items() if k != ignore and isinstance(k, str) and self.current(k) != v)

    def code_set(self, digest) -> dict:
        if digest not in self.sets:
            try:
                data = json.loads(code_set_path(self.root, str(digest)).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # gone with .lab/: the status cache that names it goes too, and is rebuilt
            self.sets[digest] = data if isinstance(data, dict) else {}
        return self.sets[digest]

    def close(self) -> None:
        self.cache.save()


def watched(record: dict) -> dict[str, str]:
    """What a finished run's staleness is checked against: its recorded data `inputs` (its own settings file left
    out) and its `code` (lab.runs.code), {path relative to the lab root: sha256}."""
    out: dict[str, str] = {}
    inputs, code = record.get("inputs"), record.get("code")
    if isinstance(inputs, dict):
        own = own_settings_file(record)
        out.update((k, v) for k, v in inputs.items() if k != own)
    if isinstance(code, dict):
        out.update(code)
    return out


def changed_inputs(root: Path, record: dict | None, checker: Checker | None = None) -> list[str]:
    """The inputs and code files of a finished run that changed since it ran ([] when none did, or it recorded
    none)."""
    if not record:
        return []
    files = watched(record)
    if not files:
        return []
    own = checker or Checker(root)
    try:
        return own.changed(files)
    finally:
        if checker is None:
            own.close()


CODE_SET = "@code-set"  # a staleness token's key for the run's code files, stored once per distinct set
CODE_SETS_DIR = "code-sets"
_known_sets: dict[tuple[str, str], str] = {}  # (lab root, code set as JSON) -> digest, once written, in this process


def code_set_path(root: Path, digest: str) -> Path:
    return Path(root) / ".lab" / CODE_SETS_DIR / f"{digest}.json"


def staleness_token(record: dict, root: Path | None = None) -> str:
    """What `lab status` caches to check a succeeded record's inputs and code without reading the record again.

    The code files of most runs are the same set (the lab's program at one moment): with `root`, the set is kept
    once in `.lab/code-sets/DIGEST.json` (derived, like the token) and the token names its DIGEST, so 10,000
    cached runs do not repeat it 10,000 times."""
    if record.get("state") != State.SUCCEEDED:
        return ""
    files = watched(record)
    code = record.get("code")
    if root is not None and isinstance(code, dict) and code:
        text = json.dumps(code, separators=(",", ":"), ensure_ascii=False)
        digest = _known_sets.get((str(root), text))
        if digest is None:
            digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]
            path = code_set_path(root, digest)
            if not path.exists():
                try:
                    atomic_write_text(path, text, fsync=False)
                except OSError:
                    digest = None  # the token holds the files themselves
            if digest is not None:
                _known_sets[(str(root), text)] = digest
        if digest is not None:
            data = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
            own = own_settings_file(record)
            files = {k: v for k, v in data.items() if k != own}
            files[CODE_SET] = digest
    return json.dumps(files, separators=(",", ":"), ensure_ascii=False) if files else ""


def describe_changes(changed: list[str], experiment: str | None = None) -> str:
    """`data/train.jsonl changed` (paths inside the experiment shown relative to it), for one line of a table."""
    prefix = f"experiments/{experiment}/" if experiment else None
    shown = [c[len(prefix):] if prefix and c.startswith(prefix) else c for c in changed]
    if not shown:
        return ""
    more = f" +{len(shown) - 1} more" if len(shown) > 1 else ""
    return f"{shown[0]}{more} changed"
