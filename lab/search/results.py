"""What a search shows of each document: which document a matching passage belongs to, its page, its opening.

Standard library only: `lab search` imports this.
"""

from __future__ import annotations

RUN_WEIGHT = 0.5  # a run record's share of a hybrid score: it has no meaning of its own, only setting names


def units(conn, ids) -> dict:
    """{doc id: (type, key)}: which document each matching row is a part of."""
    ids = list(ids)
    return {r[0]: (r[1], r[2]) for r in conn.execute(f"SELECT id, type, key FROM docs WHERE id IN ({','.join('?' * len(ids))})", ids)}


def page_of(info: str | None) -> int | None:
    """The page of a passage of a paper's PDF (None for everything else). Parsed only when there is one."""
    if not info or '"page"' not in info:
        return None
    import json

    value = json.loads(info).get("page")
    return value if isinstance(value, int) else None


def opening(text: str, words: int = 24) -> str:
    """The first words of a document, for a result found by meaning alone (no word of the query to show)."""
    parts = text[:2000].split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
