"""The search index's schema: named, append-only migrations applied with sqlite-utils' `Migrations`.

Never edit a migration that has run somewhere; append a new one. `SCHEMA_VERSION` (the number of migrations)
is also written to `PRAGMA user_version`, so that `lab search` can see that the schema is current with one
pragma and without importing sqlite-utils. The index is derived from files: a migration that changes what
is indexed can simply empty `files`, and the next sync re-reads everything.
"""

from __future__ import annotations

import os
import sqlite3

FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


def m001_files_and_docs(db) -> None:
    """`files`: what was indexed, by size and mtime; `dirs`: each scanned directory's mtime, indexed names and
    a signature of their sizes and mtimes (a no-op sync reads one row per directory); `docs`: one row per
    searchable document."""
    db["files"].create({"path": str, "dir": str, "size": int, "mtime_ns": int}, pk="path")
    db["files"].create_index(["dir"])
    db["dirs"].create({"path": str, "mtime_ns": int, "names": str, "sig": str}, pk="path")
    db["docs"].create(
        {
            "id": int,
            "file": str,  # the source file, relative to the lab root
            "type": str,  # experiment | setting | run | paper | feed
            "key": str,  # the document's id: exp3, exp3#setup, exp3/lr-high, 2301.12345, ...
            "title": str,
            "section": str,
            "path": str,  # where the user finds it: a file, with #section or :line
            "exp": str,
            "tags": str,  # JSON list
            "exps": str,  # JSON list: experiments a paper is linked to
            "info": str,  # JSON object: state, metrics, link, authors, ...
            "fts_title": str,  # the searched text (CJK as bigrams, see lab.search.query)
            "fts_heading": str,
            "fts_meta": str,
            "fts_body": str,
        },
        pk="id",
    )
    db["docs"].create_index(["file"])
    db["docs"].create_index(["type"])
    db["docs"].create_index(["exp"])


def m002_docs_fts(db) -> None:
    """FTS5 over `docs` as sqlite-utils makes it (content=docs plus triggers), so datasette finds it; weighted bm25."""
    from lab.search.query import COLUMNS, WEIGHTS

    db["docs"].enable_fts(list(COLUMNS), create_triggers=True, tokenize=FTS_TOKENIZE)
    weights = ", ".join(str(w) for w in WEIGHTS)
    db.execute(f"INSERT INTO docs_fts(docs_fts, rank) VALUES('rank', 'bm25({weights})')")


def m003_vectors_and_vocab(db) -> None:
    """Semantic search: `doc_vectors` says which text (by hash) each document is embedded from, `embeddings`
    holds one float32 vector per distinct text (so an unchanged section keeps its vector when its file is
    re-read), and `docs_vocab` (fts5vocab) lists the indexed words, so a query word can be split where the
    text has it as two (`warmup` -> `warm up`). Every file is read again to fill `doc_vectors`."""
    db.execute("CREATE TABLE doc_vectors (id INTEGER PRIMARY KEY, hash TEXT NOT NULL)")
    db.execute("CREATE INDEX doc_vectors_hash ON doc_vectors (hash)")
    db.execute("CREATE TABLE embeddings (hash TEXT PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TRIGGER docs_vectors_ad AFTER DELETE ON docs BEGIN DELETE FROM doc_vectors WHERE id = old.id; END")
    db.execute("CREATE VIRTUAL TABLE docs_vocab USING fts5vocab(docs_fts, 'row')")
    db.execute("DELETE FROM files")
    db.execute("DELETE FROM dirs")


def m004_vectors_beside_documents(db) -> None:
    """Each document's vector also in `doc_vectors.vec` (NULL until embedded): a search reads every vector in one
    sequential scan, and counts the documents still to embed through a partial index, instead of looking up
    thousands of hashes in `embeddings` (which stays the store that lets unchanged text keep its vector)."""
    db.execute("ALTER TABLE doc_vectors ADD COLUMN vec BLOB")
    db.execute("UPDATE doc_vectors SET vec = (SELECT e.vec FROM embeddings e WHERE e.hash = doc_vectors.hash)")
    db.execute("CREATE INDEX doc_vectors_pending ON doc_vectors (hash) WHERE vec IS NULL")


def m005_vectors_version(db) -> None:
    """A counter that changes whenever the set of document vectors does (triggers), so a search can keep every
    vector in one memory-mapped file beside the index (`.lab/vectors-*.npy`) and know when it is out of date."""
    db.execute("CREATE TABLE vectors_version (n INTEGER NOT NULL)")
    db.execute("INSERT INTO vectors_version (n) VALUES (0)")
    db.execute("CREATE TRIGGER doc_vectors_version_ai AFTER INSERT ON doc_vectors WHEN new.vec IS NOT NULL "
               "BEGIN UPDATE vectors_version SET n = n + 1; END")
    db.execute("CREATE TRIGGER doc_vectors_version_ad AFTER DELETE ON doc_vectors WHEN old.vec IS NOT NULL "
               "BEGIN UPDATE vectors_version SET n = n + 1; END")
    db.execute("CREATE TRIGGER doc_vectors_version_au AFTER UPDATE OF vec ON doc_vectors "
               "BEGIN UPDATE vectors_version SET n = n + 1; END")


def m006_passages(db) -> None:
    """Long text as passages (lab.core.passages), papers' PDFs as their full text (`info.page`): every file is
    read again, so that an index written before holds the same documents as a new one."""
    db.execute("DELETE FROM files")
    db.execute("DELETE FROM dirs")


MIGRATIONS = [m001_files_and_docs, m002_docs_fts, m003_vectors_and_vocab, m004_vectors_beside_documents,
              m005_vectors_version, m006_passages]
SCHEMA_VERSION = len(MIGRATIONS)


def _import_sqlite_utils() -> None:
    """Import sqlite_utils without pandas: it imports pandas where installed (about a second) only to map
    `pandas.Timestamp` columns, which lab's schema never has. `import pandas` works as before afterwards."""
    import sys

    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError meanwhile
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["pandas"]


def migrate(path) -> None:
    """Bring the index at `path` up to the current schema (creating it if needed)."""
    _import_sqlite_utils()
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("lab.index")
    for fn in MIGRATIONS:
        migrations(name=fn.__name__)(fn)
    conn = sqlite3.connect(os.fspath(path))
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        db = sqlite_utils.Database(conn)
        migrations.apply(db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.commit()
    finally:
        conn.close()
