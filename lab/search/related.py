"""Related work: the papers, feed items and past experiments closest to an experiment.

An experiment is described by its title, tags, report (the question first) and settings, as the index holds
them. That description is searched like a query (lab.search.query: the words, bm25; lab.search.embed: the
meaning), the two rankings fused as a search fuses them, and an experiment's best section counts for the
experiment. Papers already linked to the experiment (`experiments:` in the note) are marked `linked`.
"""

from __future__ import annotations

import json

from lab.search import query

KINDS = ("paper", "feed", "experiment")


def describe(conn, exp: str) -> tuple[str, str]:
    """(words, text): the experiment's title, tags and question (for the keyword ranking), and all of that plus
    its other sections and its settings' text values (for the semantic ranking)."""
    rows = conn.execute(
        "SELECT type, title, section, tags, fts_body FROM docs WHERE exp = ? AND type IN ('experiment', 'setting') "
        "ORDER BY id", (exp,),
    ).fetchall()
    title, tags, question, sections, settings = "", [], "", [], []
    for type_, doc_title, section, doc_tags, body in rows:
        body = query.decode_snippet(body or "", "", "").strip()
        if type_ == "setting":
            # Names and words, not numbers: `model_name_or_path=bert-base-uncased`, not `learning_rate=2e-05`.
            for line in body.splitlines():
                key, _, value = line.partition("=")
                if value and not value.replace(".", "").replace("-", "").replace("e", "").replace(" ", "").isdigit():
                    settings.append(f"{key.rsplit('.', 1)[-1].replace('_', ' ')} {value}")
            continue
        if not section:
            title, tags = doc_title or exp, json.loads(doc_tags or "[]")
            if body:
                sections.insert(0, body)
        elif "question" in section.lower() and not question:
            question = body
        elif not section.lower().startswith("results"):
            sections.append(f"{section}: {body}")
    head = " ".join([title, *tags, question]).strip()
    text = "\n".join(p for p in [title, ", ".join(tags), question, *sections, "; ".join(dict.fromkeys(settings))] if p)
    return head, text


def related(root, exp: str, limit: int = 10, conn=None, semantic: bool = True, say=None, background: bool = True) -> list[dict]:
    """The `limit` papers, feed items and other experiments closest to experiment `exp`, best first: dicts with
    type, id, title, path, score (fused), match (["keyword"], ["semantic"] or both) and linked (papers linked to
    `exp`). `semantic=False` ranks by words only; `say` gets one-line notes (semantic coverage)."""
    from lab.search import index

    own = conn is None
    if own:
        conn, _ = index.open_index(root)
    try:
        head, text = describe(conn, exp)
        if not text:
            return []
        where = [f"d.type IN ({','.join('?' * len(KINDS))})", "(d.exp IS NULL OR d.exp != ?)"]
        params = [*KINDS, exp]
        depth = max(limit * 5, query.DEPTH)
        q = query.Query(head or text[:500], query.vocabulary(conn))
        keyword = query.keyword_ranking(conn, q, where, params, depth) if not q.empty() else []
        similar = []
        if semantic:
            from lab.search import embed

            rank = embed.prepare(root, conn, text, say=say or (lambda line: None), background=background)
            if rank is not None and not background:
                # The book, page after page: the experiment's own vectors stand for it (no model call).
                vector = embed.centroid(conn, exp)
                rank = embed.ranker(conn, vector=vector) if vector is not None else None
            if rank is not None:
                allowed = [r[0] for r in conn.execute(f"SELECT d.id FROM docs d WHERE {' AND '.join(where)}", params)]
                similar = rank(allowed, depth)
        ids = {r[0] for r in keyword} | {r[0] for r in similar}
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        info = {r[0]: r[1:] for r in conn.execute(
            f"SELECT id, type, key, title, path, exp, exps, info FROM docs WHERE id IN ({marks})", list(ids))}
        best: dict[str, int] = {}
        lists = []
        for ranking in (keyword, similar):
            units: dict[str, float] = {}
            for row in ranking:  # best first: an experiment's best section speaks for it
                type_, key, _, _, doc_exp, _, _ = info[row[0]]
                unit = f"experiment:{doc_exp}" if type_ == "experiment" else f"{type_}:{key}"
                if unit not in units:
                    units[unit] = row[1]
                    if unit not in best or (type_ == "experiment" and not info[row[0]][1].count("#")):
                        best[unit] = row[0]
            lists.append(list(units.items()))
        fused = query.fuse(*lists)
        matched = {u: [m for m, ranking in zip(("keyword", "semantic"), lists) if u in dict(ranking)] for u in fused}
        out = []
        for unit, score in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]:
            type_, key, title, path, doc_exp, exps, details = info[best[unit]]
            if type_ == "experiment":
                key, path = doc_exp, f"experiments/{doc_exp}/report.md"
            item = {
                "type": type_, "id": key, "title": title, "path": path, "score": float(f"{score:.6g}"),
                "match": matched[unit],
                "linked": type_ == "paper" and exp in json.loads(exps or "[]"),
            }
            if type_ == "feed":
                item["link"] = json.loads(details or "{}").get("link")
            out.append(item)
        return out
    finally:
        if own:
            conn.close()


_BOOK_INDEX: dict = {}  # root -> (open index, when it was last synced)
SYNC_EVERY = 10.0  # seconds


def for_book(root, exp: str, limit: int = 5) -> list[dict]:
    """Related papers, feed items and experiments not yet linked, for the lab book's experiment page.

    Never fails the book: [] when there is no index to ask or anything goes wrong. It ranks by meaning only
    where the documents are already embedded (the book starts no embedding of its own).
    """
    try:
        from lab.search import index

        import time

        key = str(root)
        conn, synced = _BOOK_INDEX.get(key, (None, 0.0))
        if conn is None:  # one connection for the whole build (and `mkdocs serve`'s rebuilds)
            conn = index.connect(root, create=False)
            if conn is None:
                return []
        if time.monotonic() - synced > SYNC_EVERY:  # not once per page: a big lab's check takes ~0.1 s
            index.sync(conn, root)
            synced = time.monotonic()
        _BOOK_INDEX[key] = (conn, synced)
        found = related(root, exp, limit=limit * 3, conn=conn, semantic=_can_embed(), background=False)
        return [r for r in found if not r["linked"]][:limit]
    except Exception:  # the book must build whatever state the index is in
        return []


def _can_embed() -> bool:
    from lab.search import model

    return model.available() is None
