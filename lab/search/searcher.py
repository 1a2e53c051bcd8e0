"""One search of a lab, start to end: the one function behind `lab search` (lab.cli.fast) and `Lab.search` (lab.api).

`search` checks the input, brings the index up to date with the files (the freshness scan, or the watcher), and
ranks by words and by meaning: without a watcher it forks the helper that embeds the query while this process
scans (lab.search.prefork), prepares the semantic ranking (lab.search.embed.prepare: a background embedder for
what is new, the model downloaded in the background where it is missing) and fuses both rankings
(lab.search.query.search). It prints nothing: diagnostics go to `say`, results come back as plain dicts (the
`--json` form). Imports only `os` here: the fast path loads it on every `lab search`.
"""

from __future__ import annotations

import os

TYPES = ("experiment", "setting", "run", "paper", "feed")
MODES = ("hybrid", "keyword", "semantic")
MAX_LIMIT = 1_000_000  # more results than any lab holds, and well within SQLite's integers


class Found:
    """What a search found: `results` (dicts: type, id, title, section, snippet, path, score, match, best
    first), `warnings` (lines about the index, e.g. a damaged index rebuilt), `scanned` (seconds the freshness
    scan took; 0 with a watcher) and `nothing_to_search` (the query held no words)."""

    __slots__ = ("results", "warnings", "scanned", "nothing_to_search")

    def __init__(self, results: list[dict], warnings: list[str], scanned: float, nothing_to_search: bool):
        self.results = results
        self.warnings = warnings
        self.scanned = scanned
        self.nothing_to_search = nothing_to_search


def search(root, text: str, *, type: str | None = None, exp: str | None = None, tag: str | None = None,
           limit: int = 20, mode: str | None = None, marks: tuple[str, str] = ("**", "**"), say=None,
           download_progress=None, index_progress=None) -> Found:
    """Search the lab at `root` for `text`.

    `type`, `exp`, `tag`: only documents of that type, of that experiment, with that tag. `mode`: "keyword",
    "semantic" or "hybrid" (None: hybrid where semantic search can run, else keyword). `marks`: what encloses
    the matched words in snippets. `say(line)`: diagnostics (default: stderr). `download_progress(done, total)`:
    the model's download, when `mode="semantic"` needs it first. `index_progress(done, total)`: files indexed,
    when the index must first take in changed files (every 200, and once before any PDF's text is extracted).
    BadInput for bad input; LabError when `mode="semantic"` cannot run here.
    """
    from lab.errors import BadInput
    from lab.search import index, query

    for value in (text, tag, exp):
        if value is not None and not _utf8(value):
            raise BadInput(f"{value!r}: holds bytes that are not UTF-8; type the words in UTF-8")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"--limit {limit}: give a number from 1 to {MAX_LIMIT}")
    if type is not None and type not in TYPES:
        raise BadInput(f"--type {type}: give one of {', '.join(TYPES)}")
    if mode is not None and mode not in MODES:
        raise BadInput(f"--mode {mode}: give one of {', '.join(MODES)}")
    if exp is not None:
        _check_exp(root, exp)

    by_meaning = mode != "keyword" and not query.Query(text).empty()
    if by_meaning and mode == "semantic":
        _fetch_weights(download_progress)
    helper = None

    def before_scan():
        """No watcher ranks for this search: fork the helper that embeds the query while this process scans."""
        nonlocal helper
        if by_meaning and helper is None:
            from lab.search import prefork

            helper = prefork.start(root, text)

    def reader(conn):
        semantic, chosen = None, mode
        if by_meaning:
            from lab.search import embed

            semantic = embed.prepare(root, conn, text, required=mode == "semantic", helper=helper, say=say)
        if semantic is None and mode is None:
            chosen = "keyword"
        return query.search(conn, text, type=type, exp=exp, tag=tag, limit=limit, marks=marks,
                            mode=chosen or "hybrid", semantic=semantic)

    try:
        results, stats = index.read(root, reader, progress=index_progress, before_scan=before_scan)
    finally:
        if helper is not None:
            helper.close()
    return Found(results, list(stats.warnings), stats.scanned, query.fts_query(text) is None)


def _fetch_weights(progress) -> None:
    """Semantic search was asked for by name: download the model now if it is all that is missing."""
    from lab.search import model

    if model.weights_missing():
        from lab.search import weights

        weights.download(progress=progress)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as lone surrogates
        return False
    return True


def _check_exp(root, exp: str) -> None:
    from lab.core import layout
    from lab.core.names import check_name
    from lab.errors import BadInput

    check_name(exp)
    if not os.path.isdir(os.path.join(root, layout.EXPERIMENTS, exp)):
        raise BadInput(f"no experiment {exp!r} in {os.path.join(root, layout.EXPERIMENTS)}")
