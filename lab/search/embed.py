"""Semantic search: each document's embedding in the index, filled in incrementally, and ranking by meaning.

What is embedded: a document's title (and section), an experiment's tags, and its text (report sections,
experiment titles, settings, paper notes with their abstracts and notes, feed items; run records are not:
their states and numbers carry no meaning a sentence could match). The index's `doc_vectors` table gives each
document the hash of that text (written with the document, in lab.search.index) and, once embedded, its float32
vector (`vec`); `embeddings` keeps one vector per hash, so a file read again with a section unchanged gets that
section's vector back at once, and only new text is embedded. A search reads all vectors from a memory-mapped
copy beside the index (`.lab/vectors-*.npy`, remade when `vectors_version` changes). When the lab's watcher runs
(`lab watch`), it ranks instead (`watch.rank`): it keeps the model loaded and the vectors mapped, so a search
imports neither NumPy nor the tokenizer; one that gets no answer ranks here, the same way.

Embedding never blocks a search: a search that finds documents without vectors embeds a handful itself (an
edited note is found by meaning at once) and leaves more to one background process per lab
(`python -m lab.search.embed ROOT`, started detached, holding `.lab/embed.lock`; it exits when nothing is left),
or to `lab reindex`, which embeds in the foreground with progress. Until then a search ranks what is embedded
and says on stderr how much that is.

Only the standard library is imported here at module level; NumPy and the model load when there is something
to embed or rank (lab.search.model: no torch).
"""

from __future__ import annotations

import os
import sys

from lab.search.embedtext import embed_text

INLINE = 8  # a search embeds this many missing documents itself; more go to the background process
MIN_SIMILARITY = 0.3  # below this cosine a document is no semantic match (MiniLM: unrelated text scores up to ~0.25)
LOCK = ".lab/embed.lock"
LOG = ".lab/embed.log"
BATCH = 64  # documents a commit


# -- what is covered -------------------------------------------------------------------------------------------


def coverage(conn) -> tuple[int, int]:
    """(documents with a vector, documents that get one)."""
    total = conn.execute("SELECT count(*) FROM doc_vectors").fetchone()[0]
    missing = conn.execute("SELECT count(*) FROM doc_vectors INDEXED BY doc_vectors_pending WHERE vec IS NULL").fetchone()[0]
    return total - missing, total


def _missing(conn, limit: int | None = None) -> list[tuple[str, str]]:
    """(hash, text) of texts that have no vector yet, one per hash."""
    from lab.search.query import decode_snippet

    sql = (
        "SELECT v.hash, d.type, d.title, d.section, d.tags, d.fts_body FROM doc_vectors v INDEXED BY doc_vectors_pending "
        "JOIN docs d ON d.id = v.id WHERE v.vec IS NULL"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    import json

    out: dict[str, str] = {}
    for digest, type_, title, section, tags, body in conn.execute(sql):
        if digest not in out:
            out[digest] = embed_text(type_, title, section, json.loads(tags or "[]"), decode_snippet(body or "", "", "")) or ""
    return list(out.items())


def embed_missing(conn, progress=None, limit: int | None = None, stop=None, fast: bool = False) -> int:
    """Embed the documents that have no vector yet (at most `limit`), committing every BATCH; how many were embedded.

    `progress(done, total)` is called after each batch; `stop()` (optional) ends the work early when true.
    `fast` (`lab reindex`, the background embedder): with onnxruntime's int8 model on every usable core
    (lab.search.fastmodel; ~7x the NumPy model's speed on 2 cores), which loads in a fraction of a second; else
    (the few notes a search embeds itself) with the NumPy model a search has loaded anyway. The two paths' vectors
    differ by less than cosine 0.01 (tests/search/test_fastmodel.py), so they sit together in one index.
    """
    from lab.search.model import DOC_TOKENS, load

    todo = _missing(conn, limit)
    if not todo:
        return 0
    if fast:
        from lab.search import fastmodel

        model = fastmodel.load()
    else:
        model = load()
    todo.sort(key=lambda item: len(item[1]))  # similar lengths together: little padding
    done = 0
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        vectors = model.embed([text for _, text in chunk], DOC_TOKENS)
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = [(digest, vectors[i].tobytes()) for i, (digest, _) in enumerate(chunk)]
            conn.executemany("INSERT OR REPLACE INTO embeddings (hash, vec) VALUES (?, ?)", rows)
            conn.executemany("UPDATE doc_vectors SET vec = ? WHERE hash = ? AND vec IS NULL", [(v, h) for h, v in rows])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done += len(chunk)
        if progress is not None:
            progress(done, len(todo))
        if stop is not None and stop():
            break
    return done


def saved_vectors(root) -> dict[str, bytes]:
    """Every vector in the lab's index, by text hash (before `lab reindex` deletes the index: see restore).

    Read straight from the file, whatever its schema version (one that needs a migration still has them)."""
    import sqlite3

    from lab.search import index

    path = index.index_path(root)
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return dict(conn.execute("SELECT hash, vec FROM embeddings"))
    except sqlite3.Error:  # no such table (an old index) or a damaged file: nothing to keep
        return {}
    finally:
        conn.close()


def restore(conn, saved: dict[str, bytes]) -> int:
    """Put back the saved vectors whose text is still in the index (same text, same vector); how many."""
    if not saved:
        return 0
    used = {r[0] for r in conn.execute("SELECT DISTINCT hash FROM doc_vectors")}
    rows = [(h, v) for h, v in saved.items() if h in used]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT OR REPLACE INTO embeddings (hash, vec) VALUES (?, ?)", rows)
    conn.executemany("UPDATE doc_vectors SET vec = ? WHERE hash = ?", [(v, h) for h, v in rows])
    conn.execute("COMMIT")
    return len(rows)


def forget_unused(conn) -> None:
    """Drop vectors no document uses any more (texts edited away)."""
    conn.execute("DELETE FROM embeddings WHERE hash NOT IN (SELECT hash FROM doc_vectors)")


# -- ranking -----------------------------------------------------------------------------------------------------


_WARM: dict = {}  # the last vectors file mapped in this process: (path, device, inode, mtime) -> (ids, matrix)


def vectors(conn):
    """(doc ids, float32 matrix of their unit vectors) of every embedded document.

    Read from `.lab/vectors-*.npy` beside the index (memory-mapped: no copy) when that file is as current as the
    index's `vectors_version`; otherwise read from the index in one scan and written there for the next search.
    The file is derived from the derived index: named after the index file's inode and the version, so a
    rebuilt index or any change to the vectors makes a new one.
    """
    import numpy as np

    path = conn.execute("PRAGMA database_list").fetchone()[2]
    state = os.path.dirname(path)
    conn.execute("BEGIN")  # the version and the rows from one snapshot
    try:
        version = conn.execute("SELECT n FROM vectors_version").fetchone()[0]
        name = f"vectors-{os.stat(path).st_ino}-{version}"
        cached = os.path.join(state, name + ".npy")
        try:
            st = os.stat(cached)
            key = (cached, st.st_dev, st.st_ino, st.st_mtime_ns)
            if key in _WARM:  # a long-lived process (the watcher): the same file, already mapped
                return _WARM[key]
            found = np.load(os.path.join(state, name + ".ids.npy")), np.load(cached, mmap_mode="r")
            _WARM.clear()
            _WARM[key] = found
            return found
        except (OSError, ValueError):
            pass  # none yet, or half-deleted by another process's cleanup: read the index
        rows = conn.execute("SELECT id, vec FROM doc_vectors WHERE vec IS NOT NULL").fetchall()
    finally:
        conn.execute("COMMIT")
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1) if rows else \
        np.zeros((0, 384), dtype=np.float32)
    try:
        tmp = f".{name}.{os.getpid()}"
        np.save(os.path.join(state, tmp + ".ids.npy"), ids)
        np.save(os.path.join(state, tmp + ".npy"), matrix)
        os.replace(os.path.join(state, tmp + ".ids.npy"), os.path.join(state, name + ".ids.npy"))
        os.replace(os.path.join(state, tmp + ".npy"), cached)  # last: its presence means both are whole
        for old in os.listdir(state):
            if old.startswith("vectors-") and old.endswith(".npy") and not old.startswith(name + "."):
                try:
                    os.unlink(os.path.join(state, old))
                except OSError:
                    pass
    except OSError:
        pass  # a read-only lab: the next search reads the index again
    return ids, matrix


def centroid(conn, exp: str):
    """The mean vector of experiment `exp`'s own embedded documents (its title and sections), or None."""
    import numpy as np

    rows = conn.execute(
        "SELECT v.vec FROM docs d JOIN doc_vectors v ON v.id = d.id WHERE d.exp = ? AND d.type = 'experiment' "
        "AND v.vec IS NOT NULL", (exp,)).fetchall()
    if not rows:
        return None
    mean = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1).mean(0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm else None


def ranker(conn, text: str | None = None, vector=None, root=None, inline: bool = False, helper=None):
    """A `semantic(allowed, depth)` callable for lab.search.query.search: documents by cosine similarity to `text`
    (embedded here) or to a given unit `vector`.

    With `root`, the lab's watcher (`lab watch`, which keeps the model and the vectors loaded) ranks `text` when
    it answers, and this process imports neither NumPy nor the model; so does `helper`, a child forked before
    the freshness scan that has embedded `text` meanwhile (lab.search.prefork). Otherwise, or when neither
    answers, the ranking is made here, the same way. `inline`: the few documents without a vector (INLINE) are
    embedded first (by the watcher or the helper, or here)."""

    def begin(allowed, depth):
        """Ask the watcher (or the helper) now; the function returned gives the ranking (lab.search.query.search
        meanwhile ranks by keyword)."""
        if allowed is not None and not allowed:
            return lambda: []
        pending = None
        if helper is not None:
            pending = helper.begin(allowed, depth, inline)
        elif root is not None and text is not None:
            from lab.search import watch

            pending = watch.rank_begin(os.fspath(root), text, allowed, depth, inline)

        def finish():
            ranked = pending() if pending is not None else None
            if ranked is not None:
                return ranked
            if inline:
                embed_missing(conn)
            return rank_here(allowed, depth)

        return finish

    def rank(allowed, depth):
        return begin(allowed, depth)()

    def rank_here(allowed, depth):
        import numpy as np
        ids, matrix = vectors(conn)
        if allowed is not None:
            keep = np.isin(ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            ids, matrix = ids[keep], matrix[keep]
        if not len(ids):
            return []
        query = vector
        if query is None:
            from lab.search.model import QUERY_TOKENS, load

            query = load(aligned=False).embed([text], QUERY_TOKENS)[0]
        scores = matrix @ query
        count = min(depth, len(scores))
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(ids[i]), float(scores[i])) for i in top if scores[i] >= MIN_SIMILARITY]

    rank.begin = begin
    return rank


def prepare(root, conn, text: str, required: bool = False, say=None, background: bool = True, helper=None):
    """The semantic ranking for `text` on this lab, or None when there is none yet (or semantic search cannot run
    here: LabError when `required`, else said once per lab). Documents without vectors: a few are embedded
    just before ranking (by the watcher when it ranks), more by the lab's background embedder (started here
    when none runs), and `say` (default: stderr) gets one line on how much of the lab is covered meanwhile.
    Where the model's files are all that is missing, their download starts in the background (lab.search.weights)
    and the search goes by keyword meanwhile. `background=False` embeds nothing and starts nothing. `helper`:
    a lab.search.prefork.Ranker for `text`."""
    from lab.errors import LabError
    from lab.search import model

    say = say or (lambda line: sys.stderr.write(line + "\n"))
    why = model.available()
    if why is not None:
        if required:
            raise LabError(f"semantic search is not available: {why}")
        if background and model.weights_missing():  # only the model's files: fetched once, in the background
            from lab.search import weights

            started = weights.start()
            say(f"lab: no semantic matches yet, keyword search only: {weights.missing_reason(started or None)}")
            return None
        _say_once(root, f"lab: no semantic matches, keyword search only: {why}", say)
        return None
    model.single_thread()  # one query's small matrices: threads only wait for each other
    covered, total = coverage(conn)
    inline = False
    if covered < total and background:
        if total - covered <= INLINE and not running(root):
            inline, covered = True, total  # embedded just before ranking (by the watcher when one runs)
        else:
            start(root)
            say(f"lab: semantic matches cover {covered:,} of {total:,} documents so far; the rest are being "
                "embedded in the background ('lab reindex' embeds them now)")
    return ranker(conn, text, root=root, inline=inline, helper=helper) if covered else None


def _say_once(root, line: str, say) -> None:
    """Say `line` unless this lab has said it before (a note in .lab/ remembers)."""
    note = os.path.join(os.fspath(root), ".lab", "semantic-unavailable")
    try:
        with open(note, encoding="utf-8") as f:
            if f.read() == line:
                return
    except OSError:
        pass
    say(line)
    try:
        with open(note, "w", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass


# -- the background process --------------------------------------------------------------------------------------


def _lock_path(root) -> str:
    return os.path.join(os.fspath(root), LOCK)


def running(root) -> int | None:
    """The pid of the lab's background embedder, or None when none runs."""
    import fcntl

    try:
        fd = os.open(_lock_path(root), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(os.pread(fd, 32, 0).split()[0])
            except (ValueError, IndexError, OSError):
                return -1
        return None
    finally:
        os.close(fd)


def start(root) -> bool:
    """Start the lab's background embedder unless one runs; True when one was started."""
    if running(root):
        return False
    from lab.core.process import spawn_detached
    from lab.search.model import child_environment

    root = os.path.realpath(os.fspath(root))
    os.makedirs(os.path.join(root, ".lab"), exist_ok=True)
    spawn_detached([sys.executable, "-m", "lab.search.embed", root], os.path.join(root, LOG), cwd="/",
                   env=child_environment())
    return True


def stop(root, timeout: float = 30.0) -> None:
    """End the lab's background embedder (if one runs) and wait until it has."""
    import signal

    pid = running(root)
    if pid and pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait(root, timeout)


def wait(root, timeout: float = 300.0) -> bool:
    """Wait until no background embedder runs for the lab; False on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while running(root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _identity(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def serve(root: str) -> int:
    """The background embedder: embed what is missing, batch by batch, and exit when nothing is left."""
    import fcntl
    import signal
    import time

    from lab.search import index

    lock = _lock_path(root)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return 0  # the lab (or its .lab/) is gone
    for _ in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # another embedder runs, or a search is looking at the lock this instant
            time.sleep(0.1)
    else:
        return 0
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from lab.search.model import document_threads, single_thread

    single_thread(document_threads())  # the NumPy model's, where onnxruntime is missing
    try:
        os.nice(10)  # searches and runs come first: niced, it may use every core (lab.search.fastmodel)
    except OSError:
        pass
    path = index.index_path(root)
    started = time.monotonic()
    total = 0
    while os.path.isdir(os.path.join(root, "experiments")):
        conn = index.connect(root, create=False)
        if conn is None:
            break
        ident = _identity(path)
        try:
            def replaced(ident=ident):
                return _identity(path) != ident  # `lab reindex` made a new index: start over on it

            done = embed_missing(conn, stop=replaced, fast=True)
            total += done
            if not replaced():
                if done == 0:
                    forget_unused(conn)
                    break
        finally:
            conn.close()
    from lab.search import fastmodel

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    how = f" with {fastmodel.summary()}" if total else ""
    sys.stderr.write(f"{stamp} lab embed: embedded {total} documents in {time.monotonic() - started:.1f} s{how}\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m lab.search.embed ROOT\n")
        sys.exit(2)
    sys.exit(serve(sys.argv[1]))
