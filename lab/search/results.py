"""What a search shows of each document: which document a matching passage belongs to, its page, its opening.

Standard library only: `lab search` imports this.
"""

from __future__ import annotations

RUN_WEIGHT = 0.5  # a run record's share of a hybrid score: it has no meaning of its own, only setting names


def units(conn, ids) -> dict:
    """{doc id: (type, key)}: which document each matching row is a part of."""
    ids = list(ids)
    return {r[0]: (r[1], r[2]) for r in conn.execute(f"SELECT id, type, key FROM docs WHERE id IN ({','.join('?' * len(ids))})", ids)}


def page_of(type_: str, info: str | None) -> int | None:
    """The page of a passage of a paper's PDF (None for everything else). Read from the JSON that lab.search.index
    wrote (`"page": 5`) without the json module: importing it (and `re`, which it imports) cost a search with
    full text a tenth of its time."""
    if type_ != "paper" or not info:
        return None
    at = info.rfind('"page": ')
    if at < 0:
        return None
    digits = info[at + 8 : at + 20].partition(",")[0].partition("}")[0].strip()
    return int(digits) if digits.isdigit() else None


def opening(text: str, words: int = 24) -> str:
    """The first words of a document, for a result found by meaning alone (no word of the query to show)."""
    parts = text[:2000].split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
