"""`lab reindex` as one library call: the index built again from the files, and every document embedded.

`rebuild` stops the lab's background embedder (one embedder per lab: this one, now), keeps the vectors of text
that did not change (embedding is the slow part), deletes and rebuilds the index (lab.search.index.reindex),
puts those vectors back, fetches the model's files where they are missing (lab.search.weights), and embeds
every document still without a vector with the fast model (lab.search.fastmodel). It prints nothing: progress
goes to the callbacks, lines for the user to `say`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Rebuilt:
    """What `rebuild` did: files read, documents indexed, documents embedded, the seconds of the indexing and of
    the whole, the index's warnings, where the index is, and why nothing was embedded (None when semantic search
    can run)."""

    files: int
    documents: int
    embedded: int
    index_seconds: float
    seconds: float
    warnings: list[str] = field(default_factory=list)
    path: str = ""
    semantic_off: str | None = None


def rebuild(root, *, keyword_only: bool = False, progress=None, embed_progress=None, download_progress=None,
            say=None) -> Rebuilt:
    """Rebuild the index of the lab at `root` and (unless `keyword_only`) embed every document.

    `progress(done, total)`: files indexed; `embed_progress(done, total)`: documents embedded;
    `download_progress(done_bytes, total_bytes)`: the model's files, when they must be downloaded first;
    `say(line)`: the lines a user should read (semantic search off and why, the slower model and why).
    """
    from lab.errors import LabError
    from lab.search import embed, model
    from lab.search.index import connect, index_path, reindex

    say = say or (lambda line: None)
    start = time.monotonic()
    embed.stop(root)
    saved = embed.saved_vectors(root)
    stats = reindex(root, progress=progress)
    if saved:
        conn = connect(root)
        try:
            embed.restore(conn, saved)
        finally:
            conn.close()
    index_seconds = time.monotonic() - start
    embedded, why = 0, None
    if not keyword_only:
        model.single_thread(model.document_threads())
        if model.weights_missing():
            from lab.search import weights

            try:
                weights.download(progress=download_progress)
            except LabError as e:
                why = str(e)
        why = why or model.available()
        if why is not None:
            say(f"no semantic search: {why}")
        else:
            embedded = _embed_all(root, embed_progress, say)
    return Rebuilt(files=stats.read, documents=stats.documents, embedded=embedded,
                   index_seconds=index_seconds, seconds=time.monotonic() - start,
                   warnings=list(stats.warnings), path=str(index_path(root)), semantic_off=why)


def _embed_all(root, progress, say) -> int:
    """Embed every document without a vector with the fast model (the NumPy one where it cannot load: said)."""
    from lab.search import embed, fastmodel
    from lab.search.index import connect

    conn = connect(root)
    try:
        covered, total = embed.coverage(conn)
        if covered == total:
            return 0
        why = getattr(fastmodel.load(), "reason", None)  # loaded once; embed_missing uses it
        if why:
            say(f"embedding with the slower NumPy model: {why}")
        return embed.embed_missing(conn, progress=progress, fast=True)
    finally:
        conn.close()
