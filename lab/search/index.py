"""The search index `.lab/index.db`: derived from the lab's files and kept fresh by size and mtime.

Every reader calls `open_index(root)`, which first syncs: by asking the lab's watcher when one runs (`lab watch`,
lab/search/watch.py: it keeps the index fresh from inotify events, so nothing is scanned), else by a scan. The `dirs`
table (one row per scanned directory: its mtime, the names indexed in it, a signature of their sizes and mtimes)
is loaded in one query; the scan stats every indexed file (an in-place edit changes only the file), but lists a
directory only when its mtime changed, and skips `runs/` entirely when its mtime is unchanged (lab replaces run
records whole). Only directories whose signature changed are compared file by file with the `files` table, only
changed files are read, and a vanished file's documents are deleted. Nothing beyond the standard library is
imported unless something changed.

Writers (the runner, `lab note`, feed pulls) never touch the index: they write their files, and the next
reader's sync (or the watcher) sees the change. The scan itself is lab.search.scan's.
Deleting the index loses nothing: `lab reindex`, or the next search, rebuilds it from the files. A damaged
index (not a database, damaged pages: SQLite's "malformed") is the same as a missing one: `read` deletes it and
builds it again from the files, once, with a warning saying so.
"""

from __future__ import annotations

import os
import sqlite3
import time

from lab.core.layout import INDEX
from lab.errors import LabError
from lab.search.scan import RACY_NS, scan, signature

TYPE_CHECKING = False  # not typing's: importing typing (and re) costs more than the search itself
if TYPE_CHECKING:  # pathlib is not imported at run time on the search path
    from pathlib import Path

INDEX_PATH = INDEX


class SyncStats:
    """What a sync did: files read, files removed, documents written, warnings about malformed files."""

    def __init__(self):
        self.read = 0
        self.removed = 0
        self.documents = 0
        self.warnings: list[str] = []
        self.scanned = 0.0  # seconds this process spent bringing the index up to date itself

    def __repr__(self):
        return f"SyncStats(read={self.read}, removed={self.removed}, documents={self.documents})"


def index_path(root: Path | str) -> Path:
    from pathlib import Path

    return Path(root) / INDEX_PATH


def _db_file(root) -> str:
    return os.path.join(os.fspath(root), INDEX_PATH)


# SQLite's primary result codes for a file that is damaged rather than busy, locked or full.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def damaged(error: BaseException) -> bool:
    """Whether `error` says the index file is damaged (not a database, malformed pages), so rebuilding it helps."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _rebuilt_note(root, error: BaseException) -> str:
    return f"the search index {_db_file(root)} was damaged ({error}); rebuilt it from the files"


def connect(root: Path | str, create: bool = True, notes: list | None = None) -> sqlite3.Connection | None:
    """An open connection to the lab's index with the current schema (created or migrated as needed).

    With `create=False`, None when there is no index (or it needs a migration first). A file that is not a
    database is deleted and made again, with a line saying so appended to `notes`.
    """
    from lab.search.migrations import SCHEMA_VERSION

    path = _db_file(root)
    for _ in range(3):
        if not os.path.exists(path):
            if not create:
                return None
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                _migrate(path)
            except OSError as e:
                raise LabError(f"cannot create the search index {path}: {e.strerror or e}") from None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:  # a directory in its place, no permission
            raise LabError(f"cannot open the search index {path}: {e}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at checkpoints, and it is derived anyway
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            conn.close()
            if not create:
                return None
            if not damaged(e):  # busy, locked, disk I/O: deleting would not help
                raise LabError(f"cannot open the search index {path}: {e}") from None
            remove_index(root)  # not a database any more: it is derived, so start again
            if notes is not None:
                notes.append(_rebuilt_note(root, e))
            continue
        if version == SCHEMA_VERSION:
            return conn
        conn.close()
        if not create:
            return None
        if version > SCHEMA_VERSION:
            remove_index(root)  # written by a newer lab: rebuild rather than guess
        else:
            _migrate(path)
    raise LabError(f"cannot open the search index {path}; it is derived from the files: delete it")


def _migrate(path: str) -> None:
    from lab.search.migrations import migrate

    try:
        try:
            migrate(path)
        except sqlite3.OperationalError:
            migrate(path)  # another process created the same tables at the same moment: the retry sees them
    except sqlite3.Error as e:  # a full disk, a read-only directory
        raise LabError(f"cannot create the search index {path}: {e}") from None


def remove_index(root: Path | str) -> None:
    """Delete the index file (and SQLite's -wal and -shm files beside it)."""
    path = _db_file(root)
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


def sync(conn: sqlite3.Connection, root: Path | str, progress=None) -> SyncStats:
    """Bring the index up to date with every indexed file under `root`.

    One query loads what was recorded per directory (mtime, names, signature); only directories whose
    signature changed are compared file by file against `files`, and only changed files are read. Time stamps
    younger than RACY_NS are not trusted (recorded as unknown), so a change within the same clock tick as
    the last sync is still seen next time.
    """
    now = time.time_ns()
    known = {p: (m, n, s) for p, m, n, s in conn.execute("SELECT path, mtime_ns, names, sig FROM dirs")}
    units = scan(root, known)
    compare: list[str] = []
    rows: list[tuple] = []
    for rel, (mtime, names, ints, joined) in units.items():
        if ints is None:
            continue  # runs/ with the same entries as last time
        recorded = known.get(rel)
        if joined is not None and recorded is not None and recorded[2]:
            # Listed from the index: the same names, so only the sizes and mtimes can differ.
            sig = f"{recorded[2].partition(':')[0]}:{hash(tuple(ints))}"
        else:
            joined = "\n".join(names) if joined is None else joined
            sig = signature(joined, ints)
        racy = now - mtime < RACY_NS or (ints and max(ints[1::2]) > now - RACY_NS)
        row = (0 if racy else mtime, joined, "" if racy else sig)
        if recorded is None or recorded[2] != sig:
            compare.append(rel)
        if recorded != row:
            rows.append((rel, *row))
    gone = [u for u in known if u not in units]
    if not compare and not gone and not rows:
        return SyncStats()
    current: dict[str, tuple[int, int]] = {}
    files: dict[str, tuple[int, int]] = {}
    for unit in [*compare, *gone]:
        if unit in units:
            _, names, ints, _ = units[unit]
            for i, name in enumerate(names):
                if name[-1] != "/":
                    current[f"{unit}/{name}"] = (ints[2 * i], ints[2 * i + 1])
        for path, size, mtime in conn.execute("SELECT path, size, mtime_ns FROM files WHERE dir = ?", (unit,)):
            files[path] = (size, mtime)
    return _apply(conn, root, current, files, progress, dirs=rows, gone=gone)


def _apply(conn, root: Path, current: dict, known: dict, progress=None, dirs=(), gone=(), force=False) -> SyncStats:
    stats = SyncStats()
    now = time.time_ns()
    # Sorted: a note and its PDF are read one after the other (the note is parsed once for both).
    changed = sorted(current) if force else sorted(p for p, sm in current.items() if known.get(p) != sm)
    removed = [p for p in known if p not in current]
    # A changed jsonnet base (*.libsonnet) changes the settings beside it that import it.
    bases = {p.rsplit("/", 1)[0] for p in (*changed, *removed) if p.endswith(".libsonnet")}
    if bases:
        seen = set(changed)
        for base in bases:
            for (path,) in conn.execute("SELECT path FROM files WHERE dir = ?", (base,)):
                if path.endswith(".jsonnet") and path not in seen and path in current:
                    changed.append(path)
    from pathlib import Path

    from lab.search.documents import documents, prepare

    root = Path(root)

    def warn(message):
        stats.warnings.append(message)

    total = len(changed) + len(removed)
    done = 0
    if progress is not None and total:
        progress(0, total)  # before PDFs are extracted, which may take a while
    prepare(root, changed, warn)  # PDFs whose text is not kept yet: extracted by a child process, all at once
    bulk = len(changed) >= BULK
    batch = 1000  # commit now and then, so that a full reindex does not hold the write lock throughout
    batches = [changed[i : i + batch] for i in range(0, max(len(changed), 1), batch)]
    if bulk:
        _bulk(conn, True)
    try:
        for k, paths in enumerate(batches):
            last = k == len(batches) - 1
            # The files are read before the write lock is taken: readers and other writers wait less.
            rows = [(path, documents(root, path, warn)) for path in paths]
            prepared = _rows(rows)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if k == 0:
                    for path in removed:
                        conn.execute("DELETE FROM docs WHERE file = ?", (path,))
                        conn.execute("DELETE FROM files WHERE path = ?", (path,))
                        stats.removed += 1
                    done += len(removed)
                # Even for a file that was new when `known` was read: another writer may have indexed it since.
                conn.executemany("DELETE FROM docs WHERE file = ?", [(path,) for path in paths])
                _insert(conn, prepared, bulk)
                files = []
                for path, docs in rows:
                    size, mtime = current[path]
                    files.append((path, path.rsplit("/", 1)[0], size, -1 if now - mtime < RACY_NS else mtime))
                    stats.read += 1
                    stats.documents += len(docs)
                    done += 1
                    if progress is not None and done % 200 == 0:
                        progress(done, total)
                conn.executemany("INSERT OR REPLACE INTO files (path, dir, size, mtime_ns) VALUES (?, ?, ?, ?)", files)
                if last:
                    # Directory signatures last: if anything above fails, the next sync compares these again.
                    conn.executemany("DELETE FROM dirs WHERE path = ?", [(u,) for u in gone])
                    conn.executemany("INSERT OR REPLACE INTO dirs (path, mtime_ns, names, sig) VALUES (?, ?, ?, ?)", dirs)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite has already rolled back after some errors (a damaged page)
                    conn.execute("ROLLBACK")
                raise
    finally:
        if bulk:
            _bulk(conn, False)
    if progress is not None and total:
        progress(total, total)
    return stats


_DOC_COLUMNS = "id, file, type, key, title, section, path, exp, tags, exps, info, fts_title, fts_heading, fts_meta, fts_body"


def _rows(rows: list) -> tuple[list, list]:
    """The table rows of `rows` ([(file, its documents)]): ([docs row without its id], [(index of the docs row,
    hash of the text its vector is of)]), made before the write lock is taken."""
    import json

    from lab.search.embedtext import text_hash
    from lab.search.query import index_text

    docs_rows, vector_rows = [], []
    dumps = json.dumps
    for path, docs in rows:
        dumped: dict = {}  # tags and experiments are the same in every passage of a file: dumped once
        for d in docs:
            tags, exps = tuple(d["tags"]), tuple(d["exps"])
            if (tags, exps) not in dumped:
                dumped[tags, exps] = (dumps(d["tags"], ensure_ascii=False), dumps(d["exps"], ensure_ascii=False))
            tags, exps = dumped[tags, exps]
            digest = text_hash(d["type"], d["title"], d["section"], d["tags"], d["body"])
            if digest is not None:  # what semantic search embeds (lab.search.embed), by its text's hash
                vector_rows.append((len(docs_rows), digest))
            docs_rows.append((
                path, d["type"], d["key"], d["title"], d["section"], d["path"], d["exp"], tags, exps,
                dumps(d["info"], ensure_ascii=False, default=str),
                index_text(d["title_text"]), index_text(d["heading"]), index_text(d["meta"]), index_text(d["body"]),
            ))
    return docs_rows, vector_rows


def _insert(conn, prepared: tuple[list, list], bulk: bool) -> None:
    """Insert the rows `_rows` made, with ids of their own, their vectors' hashes, and their words into the
    full-text table (in the caller's transaction).

    Row by row, FTS5 is written by the `docs_ai` trigger; each trigger run is a statement of its own, after
    which FTS5 writes what it holds in memory as a new small segment, so thousands of documents make thousands
    of segments (a rebuild of papers' full text spent 70% of its time there). In `bulk`, the trigger is
    dropped for the inserts, the new rows go into FTS5 with one INSERT ... SELECT, and the trigger is created
    again as it was, all within the transaction: no other connection ever sees it missing.
    """
    docs_rows, vector_rows = prepared
    first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM docs").fetchone()[0]
    trigger = None
    if bulk and docs_rows:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'docs_ai'").fetchone()
        if row is not None:
            trigger = row[0]
            conn.execute("DROP TRIGGER docs_ai")
    conn.executemany(f"INSERT INTO docs ({_DOC_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                     [(first + i, *row) for i, row in enumerate(docs_rows)])
    if conn.execute("SELECT 1 FROM embeddings LIMIT 1").fetchone() is None:  # a new index: no vector to look up
        conn.executemany("INSERT INTO doc_vectors (id, hash) VALUES (?, ?)", [(first + i, h) for i, h in vector_rows])
    else:
        conn.executemany(
            "INSERT INTO doc_vectors (id, hash, vec) VALUES (?, ?, (SELECT vec FROM embeddings WHERE hash = ?))",
            [(first + i, h, h) for i, h in vector_rows],
        )
    if trigger is not None:
        from lab.search.query import COLUMNS

        cols = ", ".join(COLUMNS)
        conn.execute(f"INSERT INTO docs_fts (rowid, {cols}) SELECT id, {cols} FROM docs WHERE id >= ?", (first,))
        conn.execute(trigger)


BULK = 500  # files: a rebuild, or a lab that changed wholesale (papers' full text is most of the text indexed)


_HASHSIZE = 1 << 20  # FTS5's default: the terms it holds in memory before writing a segment


def _bulk(conn, start: bool) -> None:
    """Write many documents fast: a larger page cache, FTS5's incremental merging off while they go in (it
    would merge the index's segments again and again), and room for a whole batch's terms in memory (one segment
    a batch, not one a megabyte); at the end, merging and FTS5's memory back to their defaults, and one merge of
    all segments (with 1,000 papers' full text, a search of two segments took 1.5x the time of one: the query's
    words are also looked up in the vocabulary, read across every segment)."""
    try:
        if start:
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('automerge', 0)")
            conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('hashsize', ?)", (64 * _HASHSIZE,))
        else:
            conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('hashsize', ?)", (_HASHSIZE,))
            conn.execute("INSERT INTO docs_fts(docs_fts, rank) VALUES('automerge', 4)")  # FTS5's default
            conn.execute("INSERT INTO docs_fts(docs_fts) VALUES('optimize')")
            conn.execute("PRAGMA cache_size = -2000")
    except sqlite3.Error:
        pass  # busy, or damaged (the caller's error says so): the writes go in at the ordinary pace, and the index is just as right


def open_index(root: Path | str, progress=None, scan: bool = False, before_scan=None) -> tuple[sqlite3.Connection, SyncStats]:
    """The lab's index, created if missing and synced with the files: what every reading command uses.

    When a watcher runs for the lab (`lab watch`), it has the index up to date as soon as it answers, and the
    scan is skipped; otherwise (or with `scan=True`) this process scans (`stats.scanned`: how long it took).
    A damaged index is rebuilt from the files (a warning in `stats` says so). `before_scan()` is called when
    this process is about to scan, before it opens the index (a search forks its ranking helper there:
    lab.search.prefork).
    """
    conn, stats = _try_open(root, progress, scan, [], before_scan)
    if conn is None:  # damaged: it is derived, so start again from the files
        remove_index(root)
        conn, again = _try_open(root, progress, True, [])
        if conn is None:
            raise LabError(f"the search index {_db_file(root)} could not be rebuilt ({again})")
        again.warnings[:0] = [_rebuilt_note(root, stats)]
        stats = again
    return conn, stats


def _try_open(root, progress, scan: bool, notes: list, before_scan=None):
    """(conn, stats), or (None, the error) when the index turns out to be damaged."""
    from lab.search import watch

    watched = not scan and watch.synced(root)
    if not watched and before_scan is not None:
        before_scan()
    conn = connect(root, notes=notes)
    if watched:
        stats = SyncStats()
    else:
        start = time.monotonic()
        try:
            stats = sync(conn, root, progress)
        except sqlite3.Error as e:
            conn.close()
            if damaged(e):
                return None, e
            raise LabError(f"the search index {_db_file(root)} could not be updated: {e}") from None
        stats.scanned = time.monotonic() - start
    stats.warnings[:0] = notes
    return conn, stats


def read(root: Path | str, reader, progress=None, before_scan=None):
    """`reader(conn)` on the synced index: `(its result, the SyncStats)`. When the index turns out to be damaged
    while `reader` reads it, it is rebuilt from the files and `reader` runs once more (a warning says so).
    `before_scan()`: see `open_index`."""
    conn, stats = open_index(root, progress, before_scan=before_scan)
    try:
        return reader(conn), stats
    except sqlite3.DatabaseError as e:
        if not damaged(e):
            raise
        error = e
    finally:
        conn.close()
    remove_index(root)
    conn, stats = open_index(root, progress, scan=True)
    try:
        stats.warnings.insert(0, _rebuilt_note(root, error))
        return reader(conn), stats
    except sqlite3.DatabaseError as e:
        raise LabError(f"the search index {_db_file(root)} could not be read: {e}") from None
    finally:
        conn.close()


def reindex(root: Path | str, progress=None) -> SyncStats:
    """Delete the index and build it again from the files."""
    remove_index(root)
    conn, stats = open_index(root, progress, scan=True)  # a running watcher reopens the new file on its own
    conn.close()
    return stats


def refresh(conn, root: Path, paths, force: bool = False) -> SyncStats:
    """Re-index `paths` on an open index (read again only when changed; always with `force`, as the watcher does:
    an event says a file changed even when its size and mtime did not)."""
    from pathlib import Path

    from lab.core.layout import kind_of

    current: dict[str, tuple[int, int]] = {}
    known: dict[str, tuple[int, int]] = {}
    for p in paths:
        path = Path(p)
        path = path if path.is_absolute() else root / path
        if path.suffix == ".libsonnet":
            path = path.parent  # a jsonnet base: re-read the settings beside it too
        try:
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue  # outside the lab
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    frel = Path(dirpath, name).resolve().relative_to(root).as_posix()
                    if kind_of(frel):
                        st = os.stat(os.path.join(dirpath, name))
                        current[frel] = (st.st_size, st.st_mtime_ns)
            prefix = "" if rel == "." else rel + "/"
            rows = conn.execute(
                "SELECT path, size, mtime_ns FROM files WHERE dir = ? OR substr(dir, 1, ?) = ?",
                (rel, len(prefix), prefix),
            )
        else:
            if not kind_of(rel):
                continue
            try:
                st = os.stat(path)
                current[rel] = (st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                pass
            rows = conn.execute("SELECT path, size, mtime_ns FROM files WHERE path = ?", (rel,))
        known.update({r[0]: (r[1], r[2]) for r in rows})
    return _apply(conn, root, current, known, force=force) if current or known else SyncStats()
