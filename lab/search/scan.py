"""The freshness scan of the search index: which indexed files exist, with their sizes and mtimes.

Written for speed (it runs before every search without a watcher): plain strings, `os.scandir`, no per-file
objects, nothing beyond the standard library. lab.search.index compares what it finds with what it recorded.
"""

from __future__ import annotations

import os
import zlib

from lab.core.layout import PLACES

TYPE_CHECKING = False  # not typing's: importing typing costs more than the scan itself
if TYPE_CHECKING:
    from pathlib import Path

RACY_NS = 2_000_000_000  # a time stamp this recent may yet be shared by a later change in the same clock tick


def scan(root: Path | str, known: dict | None = None) -> dict[str, tuple]:
    """Every indexed file under `root` (where `lab.core.layout.INDEXED` says), by directory: {dir: (dir mtime_ns,
    [name, ...], [size, mtime_ns, ...], the names as recorded in the index when they came from there, else None)}.

    `known` (the `dirs` table) lets a directory whose mtime is unchanged skip its listing: its names are
    those recorded. Files are still stat'ed one by one, since an in-place edit changes only the file; the
    exception is a directory of files that lab always replaces whole (`runs/`: a new directory entry), so an
    unchanged directory there means unchanged files and its sizes come back as None. Files known by name (an
    experiment's report) are stat'ed without listing their directory (its mtime is then recorded as 0). Written
    for speed (this runs before every search): plain strings, `os.scandir`, no per-file objects.
    """
    root = str(root)
    known = known or {}
    units: dict = {}
    stat = os.stat
    listed: dict[str, list[str]] = {}
    for place, names, suffixes, exclude, tree, whole in PLACES:
        head, star, tail = place.partition("*")
        if star:
            if head not in listed:
                try:
                    listed[head] = [e.name for e in os.scandir(f"{root}/{head}")
                                    if e.name[0] != "." and (e.name.isascii() or _utf8(e.name)) and e.is_dir()]
                except (FileNotFoundError, NotADirectoryError):
                    listed[head] = []
            dirs = [f"{head}{name}{tail}" for name in listed[head]]
        else:
            dirs = [place]
        if names:
            for rel in dirs:
                present, ints = [], []
                for name in names:
                    try:
                        st = stat(f"{root}/{rel}/{name}")
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    present.append(name)
                    ints += (st.st_size, st.st_mtime_ns)
                if present:
                    units[rel] = (0, present, ints, "\n".join(present))
        else:
            for rel in dirs:
                _scan_dir(root, rel, suffixes, exclude, whole, known, units, tree)
    return units


def _scan_dir(root, rel, suffixes, exclude, atomic, known, units, tree=False) -> None:
    path = f"{root}/{rel}"
    try:
        mtime = os.stat(path).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return
    recorded = known.get(rel)
    if recorded is not None and recorded[0] == mtime:
        # The same entries as last time: stat them by name, without listing the directory.
        listed = recorded[1].split("\n") if recorded[1] else []
        if atomic:
            units[rel] = (mtime, listed, None, recorded[1])
            return
        subdirs = [n[:-1] for n in listed if n[-1] == "/"] if tree else []
        names = [n for n in listed if n[-1] != "/"] if tree else listed
        stat = os.stat
        try:
            # Relative to an open directory: the kernel walks the path once, not once per file.
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                ints = [v for st in [stat(n, dir_fd=fd) for n in names] for v in (st.st_size, st.st_mtime_ns)]
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError):  # cannot happen without an mtime change; list it after all
            recorded = None
        else:
            units[rel] = (mtime, listed, ints, recorded[1])
            for d in subdirs:
                _scan_dir(root, f"{rel}/{d}", suffixes, exclude, atomic, known, units, tree=True)
            return
    names, ints, subdirs = [], [], []
    try:
        entries = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    with entries:
        for e in entries:
            n = e.name
            if n[0] == "." or not n.isascii() and not _utf8(n):
                continue  # a name with bytes that are not UTF-8 cannot be a path in the index; lab never writes one
            if n.endswith(suffixes) and not (exclude and n.endswith(exclude)):
                try:
                    if tree and not e.is_file():
                        continue
                    st = e.stat()
                except FileNotFoundError:
                    continue
                names.append(n)
                ints.append(st.st_size)
                ints.append(st.st_mtime_ns)
            elif tree and e.is_dir():
                subdirs.append(n)
    units[rel] = (mtime, names + [f"{d}/" for d in subdirs] if subdirs else names, ints, None)
    for d in subdirs:
        _scan_dir(root, f"{rel}/{d}", suffixes, exclude, atomic, known, units, tree=True)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir gives undecodable bytes as lone surrogates
        return False
    return True


def signature(joined_names: str, ints: list[int]) -> str:
    """A digest of a directory's indexed files (names, sizes, mtimes): equal means nothing changed there.

    `hash` of a tuple of ints is the same in every process (only str hashing is randomised); the names
    go through crc32. A false mismatch only costs a per-file comparison, never a wrong result.
    """
    return f"{zlib.crc32(joined_names.encode('utf-8', 'surrogateescape'))}:{hash(tuple(ints))}"
