"""Searching the index: user input to a safe FTS5 query, CJK text as bigrams, ranked results with snippets.

Scripts written without spaces (Chinese, Japanese, Korean) have no word boundaries for FTS5's `unicode61`
tokenizer: a whole sentence would be one token, so a word inside it could never be found. Both the indexed
text and the query therefore spell every run of CJK characters as overlapping bigrams, plus the run's last
character alone: `学習率` is indexed as the tokens `学習 習率 率`. A query word becomes the phrase of its bigrams
(`学習率` -> `"学習 習率"`), which matches exactly where the word occurs inside any sentence; a two-character
word such as `効果` is one bigram; a single character is a prefix query (`率*`). bm25 ranks bigrams like any
other token. The bigrams are joined by an invisible separator (U+2063) and the run is framed by another
(U+2064), so snippets are turned back into the original text (`decode_snippet`) with the matches highlighted.

Only the standard library is imported here: `lab search` must start in the time of a bare Python start-up.
"""

from __future__ import annotations

import sqlite3

TYPES = ("experiment", "setting", "run", "paper", "feed")

# bm25 weights of the FTS columns, in order: titles above headings above the rest.
COLUMNS = ("fts_title", "fts_heading", "fts_meta", "fts_body")
WEIGHTS = (10.0, 5.0, 2.0, 1.0)

# Han, Hiragana, Katakana (not the middle dot), half-width Katakana, Hangul syllables, iteration marks.
_CJK = (
    "\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\uac00-\ud7a3\U00020000-\U0003134f"
)
_RUN = _LAST_SINGLE = None  # compiled on first use: compiling costs milliseconds that an ASCII query never needs
BIGRAM_SEP = "\u2063"  # INVISIBLE SEPARATOR: between the bigrams of one run (a separator for unicode61)
RUN_EDGE = "\u2064"  # INVISIBLE PLUS: frames a run, so it never sticks to a Latin word ("GPU用")
HL_START, HL_END = "\x02", "\x03"  # what snippet() puts around matches, before decode_snippet


def _compile():
    global _RUN, _LAST_SINGLE
    import re

    _RUN = re.compile(f"[{_CJK}]+")
    _LAST_SINGLE = re.compile(f"(?:^|[^{_CJK}])[{_CJK}]$")


def _bigrams(match) -> str:
    run = match.group(0)
    if len(run) == 1:
        return RUN_EDGE + run + RUN_EDGE
    parts = [run[i : i + 2] for i in range(len(run) - 1)]
    parts.append(run[-1])  # so that a one-character query finds a run's last character too
    return RUN_EDGE + BIGRAM_SEP.join(parts) + RUN_EDGE


def _query_bigrams(match) -> str:
    run = match.group(0)
    if len(run) == 1:
        return RUN_EDGE + run + RUN_EDGE
    return RUN_EDGE + BIGRAM_SEP.join(run[i : i + 2] for i in range(len(run) - 1)) + RUN_EDGE


def _clean(text: str) -> str:
    if BIGRAM_SEP in text or RUN_EDGE in text:
        text = text.replace(BIGRAM_SEP, " ").replace(RUN_EDGE, " ")
    return text


def index_text(text: str | None) -> str:
    """The text as the FTS table stores it: CJK runs spelled as overlapping bigrams (see the module doc)."""
    if not text:
        return ""
    if text.isascii():
        return text
    if _RUN is None:
        _compile()
    return _RUN.sub(_bigrams, _clean(text))


def query_text(text: str) -> str:
    """A query phrase spelled like the index, without the run-final characters (they would break the phrase)."""
    if text.isascii():
        return text
    if _RUN is None:
        _compile()
    return _RUN.sub(_query_bigrams, _clean(text))


def decode_snippet(snippet: str, start: str = "**", end: str = "**") -> str:
    """Turn an FTS snippet of bigram text back into the original text, matches between `start` and `end`."""
    if BIGRAM_SEP not in snippet and RUN_EDGE not in snippet:
        return snippet.replace(HL_START, start).replace(HL_END, end)
    chars: list[list] = []  # [char, highlighted]
    highlighted = False
    overlap = False
    for ch in snippet:
        if ch == HL_START:
            highlighted = True
        elif ch == HL_END:
            highlighted = False
        elif ch == BIGRAM_SEP:
            overlap = True
        elif ch == RUN_EDGE:
            overlap = False
        elif overlap and chars:
            # The first character of a bigram repeats the last one of the previous bigram.
            chars[-1][1] = chars[-1][1] or highlighted
            overlap = False
        else:
            overlap = False
            chars.append([ch, highlighted])
    out: list[str] = []
    on = False
    for ch, hl in chars:
        if hl != on:
            out.append(start if hl else end)
            on = hl
        out.append(ch)
    if on:
        out.append(end)
    return "".join(out)


def _parts(text: str):
    """(phrase, prefix?) for each "quoted phrase" and each other word; quotes are balanced by the caller."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            end = text.index('"', i + 1)
            prefix = end + 1 < n and text[end + 1] == "*"
            yield text[i + 1 : end], prefix
            i = end + 1 + prefix
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] != '"':
                j += 1
            word = text[i:j]
            yield word.rstrip("*"), word.endswith("*")
            i = j


def fts_query(text: str | None) -> str | None:
    """Translate what a user typed into a safe FTS5 MATCH expression, or None when nothing is searchable.

    Every word and every "quoted phrase" becomes a quoted FTS5 phrase, so punctuation and the words AND, OR,
    NOT, NEAR are plain text and never syntax; all of them must match (implicit AND). A trailing `*` makes a
    prefix query. A stray double quote is ignored.
    """
    if not text:
        return None
    text = text.replace("\x00", " ")
    if text.count('"') % 2:
        i = text.rfind('"')
        text = text[:i] + " " + text[i + 1 :]
    terms: list[str] = []
    for phrase, prefix in _parts(text):
        if not any(c.isalnum() for c in phrase):
            continue
        phrase = phrase.strip()
        if not phrase.isascii() and (_LAST_SINGLE or _compile() or _LAST_SINGLE).search(phrase):
            prefix = True  # a lone CJK character: bigrams starting with it, or a run's last character
        term = '"' + query_text(phrase).replace('"', '""') + '"' + ("*" if prefix else "")
        if term not in terms:
            terms.append(term)
    return " ".join(terms) or None


def search(
    conn: sqlite3.Connection,
    query: str,
    type: str | None = None,
    exp: str | None = None,
    tag: str | None = None,
    limit: int = 20,
    marks: tuple[str, str] = ("**", "**"),
) -> list[dict]:
    """The best `limit` documents for `query`, best first: dicts with type, id, title, section, snippet, path, score.

    `score` is the weighted bm25 relevance with its sign flipped, so higher is better.
    """
    match = fts_query(query)
    if match is None:
        return []
    where = ["docs_fts MATCH ?"]
    params: list = [match]
    if type:
        where.append("d.type = ?")
        params.append(type)
    if exp:
        where.append("(d.exp = ? OR EXISTS (SELECT 1 FROM json_each(d.exps) WHERE value = ?))")
        params += [exp, exp]
    if tag:
        where.append("EXISTS (SELECT 1 FROM json_each(d.tags) WHERE lower(value) = lower(?))")
        params.append(tag)
    # bm25() with the weights spelled out is cheaper than the `rank` column configured for Datasette, and
    # without filters there is no join: a common word can match most of a large lab.
    bm25 = f"bm25(docs_fts, {', '.join(map(str, WEIGHTS))})"
    if len(where) == 1:
        sql = f"SELECT rowid, {bm25} AS score FROM docs_fts WHERE docs_fts MATCH ? ORDER BY score LIMIT ?"
    else:
        sql = (
            f"SELECT d.id, {bm25} AS score FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid "
            f"WHERE {' AND '.join(where)} ORDER BY score LIMIT ?"
        )
    rows = conn.execute(sql, [*params, int(limit)]).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    marks_in = ",".join("?" * len(ids))
    # Snippets only for the rows shown (FTS5 reads their text back from `docs`); the rowid constraint goes on
    # the FTS table itself, or SQLite would evaluate the MATCH for every matching document.
    snippets = dict(
        conn.execute(
            f"SELECT rowid, snippet(docs_fts, -1, char(2), char(3), '…', 24) FROM docs_fts "
            f"WHERE docs_fts MATCH ? AND rowid IN ({marks_in})",
            [match, *ids],
        )
    )
    details = {
        r[0]: (*r[1:], snippets.get(r[0]))
        for r in conn.execute(f"SELECT id, type, key, title, section, path FROM docs WHERE id IN ({marks_in})", ids)
    }
    results = []
    rows.sort(key=lambda r: (r[1], details[r[0]][4]))  # equal scores: by path, the same after any rebuild
    for doc_id, rank in rows:
        type_, key, title, section, path, snippet = details[doc_id]
        snippet = decode_snippet(" ".join((snippet or "").split()), *marks)
        results.append(
            {
                "type": type_,
                "id": key,
                "title": title,
                "section": section or None,
                "snippet": snippet,
                "path": path,
                "score": float(f"{-rank:.6g}"),
            }
        )
    return results
