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

from lab.search.results import RUN_WEIGHT, opening, page_of, units

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
    """(phrase, prefix?, quoted?) for each "quoted phrase" and each other word; quotes are balanced by the caller."""
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text[i] == '"':
            end = text.index('"', i + 1)
            prefix = end + 1 < n and text[end + 1] == "*"
            yield text[i + 1 : end], prefix, True
            i = end + 1 + prefix
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] != '"':
                j += 1
            word = text[i:j]
            yield word.rstrip("*"), word.endswith("*"), False
            i = j


# Left out of the some-of-the-words ranking when other words remain: they occur in nearly every English
# document, so they add no evidence and cost the time of scoring the whole lab. (An all-words match still needs
# them, and negations such as "no", "not", "without" are kept.)
STOPWORDS = frozenset("a an the of and or to in on for is are be by as at it its this that with from".split())


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class Query:
    """What a user typed, parsed once: the terms every result must hold, and the words that rank.

    `"quoted phrases"` and `prefix*` terms are required (they are the user's explicit syntax); the other words
    are ranked: documents with all of them first, then those with some of them. A plain word also matches
    where the text writes it as two words or with a hyphen (`warmup` ~ `warm-up` ~ `warm up`), and two words
    where the text joins them.
    """

    def __init__(self, text: str | None, vocab=None):
        self.required: list[str] = []  # FTS5 terms
        self.words: list[tuple[str, str]] = []  # (the word as typed, its FTS5 expression)
        self.text = text or ""
        if not text:
            return
        text = text.replace("\x00", " ")
        if text.count('"') % 2:
            i = text.rfind('"')
            text = text[:i] + " " + text[i + 1 :]
        plain: list[str] = []
        for phrase, prefix, quoted in _parts(text):
            if not any(c.isalnum() for c in phrase):
                continue
            phrase = phrase.strip()
            if not phrase.isascii() and (_LAST_SINGLE or _compile() or _LAST_SINGLE).search(phrase):
                prefix = True  # a lone CJK character: bigrams starting with it, or a run's last character
            term = _quote(query_text(phrase)) + ("*" if prefix else "")
            if prefix or quoted:
                if term not in self.required:
                    self.required.append(term)
            elif term not in [t for _, t in self.words]:
                self.words.append((phrase, term))
                plain.append(phrase)
        if vocab is not None and self.words:
            self._word_forms(vocab)

    def _word_forms(self, vocab) -> None:
        """Add the spellings of each word as one word, two words or hyphenated that the index holds."""
        splits: dict[int, list[tuple[str, str]]] = {}
        joins: dict[int, str] = {}
        wanted: set[str] = set()
        for i, (word, _) in enumerate(self.words):
            w = word.lower()
            if w.isascii() and w.isalpha() and len(w) >= 5:
                splits[i] = [(w[:k], w[k:]) for k in range(3, len(w) - 1)]
                wanted.update(p for pair in splits[i] for p in pair)
            if i + 1 < len(self.words):
                nxt = self.words[i + 1][0].lower()
                if w.isascii() and w.isalpha() and nxt.isascii() and nxt.isalpha():
                    joins[i] = w + nxt
                    wanted.add(joins[i])
            parts = [p for p in w.replace("_", "-").split("-")]
            if len(parts) > 1 and all(p.isascii() and p.isalpha() for p in parts):
                joins.setdefault(-1 - i, "".join(parts))  # warm-up -> warmup (no lookup needed: a missing term costs nothing)
        known = vocab(sorted(wanted)) if wanted else set()
        forms: list[list[str]] = [[t] for _, t in self.words]
        for i, pairs in splits.items():
            forms[i] += [_quote(f"{a} {b}") for a, b in pairs if a in known and b in known]
        for i, joined in joins.items():
            if i < 0:
                forms[-1 - i].append(_quote(joined))
        self.forms = forms
        self.joins = {i: _quote(j) for i, j in joins.items() if i >= 0 and j in known}

    def _word_expr(self, i: int) -> str:
        forms = getattr(self, "forms", None)
        if not forms or len(forms[i]) == 1:
            return self.words[i][1]
        return "(" + " OR ".join(forms[i]) + ")"

    def all_words(self) -> str | None:
        """The FTS5 expression for documents with every term (what `lab search` always did, plus word forms)."""
        parts = list(self.required)
        joins = getattr(self, "joins", {})
        i = 0
        while i < len(self.words):
            if i in joins:  # `warm up` also as `warmup`
                parts.append(f"(({self._word_expr(i)} AND {self._word_expr(i + 1)}) OR {joins[i]})")
                i += 2
                continue
            parts.append(self._word_expr(i))
            i += 1
        return " AND ".join(parts) or None

    def some_words(self) -> str | None:
        """The FTS5 expression for documents with the required terms and at least one word; None when that is the
        same as `all_words` (one word, or none)."""
        count = len(self.words)
        if count < 2 and not getattr(self, "joins", None):
            return None
        keep = [i for i, (w, _) in enumerate(self.words) if w.lower() not in STOPWORDS] or list(range(count))
        alternatives = [self._word_expr(i) for i in keep] + list(getattr(self, "joins", {}).values())
        expr = "(" + " OR ".join(alternatives) + ")"
        return " AND ".join([*self.required, expr])

    def required_expr(self) -> str | None:
        return " AND ".join(self.required) or None

    def empty(self) -> bool:
        return not self.required and not self.words

    def highlight(self) -> str | None:
        """An expression matching every term, for snippets: all the words and their forms, OR-ed."""
        alternatives = [*self.required, *(self._word_expr(i) for i in range(len(self.words)))]
        alternatives += list(getattr(self, "joins", {}).values())
        return " OR ".join(alternatives) or None


def fts_query(text: str | None) -> str | None:
    """Translate what a user typed into a safe FTS5 MATCH expression for documents with every term, or None when
    nothing is searchable.

    Every word and every "quoted phrase" becomes a quoted FTS5 phrase, so punctuation and the words AND, OR,
    NOT, NEAR are plain text and never syntax. A trailing `*` makes a prefix query. A stray double quote is ignored.
    """
    return Query(text).all_words()


def vocabulary(conn: sqlite3.Connection):
    """A lookup of which words the index holds (as FTS5 stores them: lower case, stemmed)."""

    def known(words: list[str]) -> set[str]:
        if not words:
            return set()
        try:
            marks = ",".join("?" * len(words))
            return {r[0] for r in conn.execute(f"SELECT term FROM docs_vocab WHERE term IN ({marks})", words)}
        except sqlite3.OperationalError:
            return set()

    return known


def _filters(type, exp, tag) -> tuple[list[str], list]:
    where: list[str] = []
    params: list = []
    if type:
        where.append("d.type = ?")
        params.append(type)
    if exp:
        where.append("(d.exp = ? OR EXISTS (SELECT 1 FROM json_each(d.exps) WHERE value = ?))")
        params += [exp, exp]
    if tag:
        where.append("EXISTS (SELECT 1 FROM json_each(d.tags) WHERE lower(value) = lower(?))")
        params.append(tag)
    return where, params


def _ranked(conn, match: str, where: list[str], params: list, limit: int) -> list[tuple[int, float]]:
    # bm25() with the weights spelled out is cheaper than the `rank` column configured for Datasette, and
    # without filters there is no join: a common word can match most of a large lab.
    bm25 = f"bm25(docs_fts, {', '.join(map(str, WEIGHTS))})"
    if not where:
        sql = f"SELECT rowid, {bm25} AS score FROM docs_fts WHERE docs_fts MATCH ? ORDER BY score LIMIT ?"
    else:
        sql = (
            f"SELECT d.id, {bm25} AS score FROM docs_fts JOIN docs d ON d.id = docs_fts.rowid "
            f"WHERE docs_fts MATCH ? AND {' AND '.join(where)} ORDER BY score LIMIT ?"
        )
    return conn.execute(sql, [match, *params, int(limit)]).fetchall()


def keyword_ranking(conn, q: Query, where: list[str], params: list, depth: int, need: int | None = None) -> list[tuple[int, float, int]]:
    """(doc id, bm25 with its sign flipped, phase) best first: documents with every word (phase 0), then those with
    some of the words (1), each by bm25 (which grows with every word a document holds), then those with only
    the quoted phrases and prefix* terms (2). A later phase runs only while fewer than `depth` rows, or with
    `need`, fewer than `need` documents (passages of one count once), were found."""
    rows: list[tuple[int, float, int]] = []
    seen: set[int] = set()
    phases = [q.all_words(), q.some_words(), q.required_expr() if q.words else None]
    for phase, expr in enumerate(phases):
        if expr is None or len(rows) >= depth or (need and rows and len(set(units(conn, seen).values())) >= need):
            continue
        for doc_id, score in _ranked(conn, expr, where, params, depth):
            if doc_id not in seen and len(rows) < depth:
                seen.add(doc_id)
                rows.append((doc_id, -score, phase))
    return rows


MODES = ("hybrid", "keyword", "semantic")
DEPTH = 100  # how deep each ranking goes into the fusion


def fuse(*rankings) -> dict:
    """Hybrid scores: each ranking's scores (higher better) scaled to 0..1 over its own top DEPTH (min-max), then
    added (CombSUM, Fox and Shaw 1994), equal weights; a document absent from a ranking gets 0 from it.

    Chosen over reciprocal rank fusion because it keeps how far apart the scores are, not only their order:
    on the SciFact claims (benchmarks/bench_scifact.py) it lifts lab above both of its parts, where RRF
    (k=60) fell between them. Bruch, Gai and Ingber (2023, "An Analysis of Fusion Functions for Hybrid
    Retrieval") found the same of normalised score sums against RRF.
    """
    fused: dict = {}
    for ranking in rankings:
        if not ranking:
            continue
        scores = [row[1] for row in ranking]
        low, high = min(scores), max(scores)
        for row in ranking:
            part = (row[1] - low) / (high - low) if high > low else 1.0
            fused[row[0]] = fused.get(row[0], 0.0) + part
    return fused


def search(
    conn: sqlite3.Connection,
    query: str,
    type: str | None = None,
    exp: str | None = None,
    tag: str | None = None,
    limit: int = 20,
    marks: tuple[str, str] = ("**", "**"),
    mode: str = "keyword",
    semantic=None,
) -> list[dict]:
    """The best `limit` documents for `query`, best first: dicts with type, id, title, section, snippet, path,
    score, match (["keyword"], ["semantic"] or both), and for a paper found in its PDF `page` (from 1) and
    `passage` (the passage's text; both None otherwise). A document whose text is cut into passages (a paper's
    note and PDF, a long report section) appears once, with its best passage.

    `mode` "keyword": the bm25 ranking (all words first, then some), `score` is bm25 with its sign flipped (higher
    is better). "semantic": by cosine similarity to the query (`score`), through `semantic(ids_allowed, depth)`,
    a callable that returns [(doc id, similarity)] best first (lab.search.embed.ranker). "hybrid": both rankings
    fused (`fuse`: each scaled to 0..1 and added, so `score` is between 0 and 2).
    """
    q = Query(query, vocabulary(conn))
    if q.empty():
        return []
    where, params = _filters(type, exp, tag)
    # Deeper than `limit`: the passages of one paper or section count once (below).
    depth = limit * 3 + 20 if mode == "keyword" else max(limit * 3, DEPTH)
    similar: list[tuple[int, float]] = []
    finish = None
    if mode != "keyword" and semantic is not None:
        allowed = None
        if where or q.required:
            sql = "SELECT d.id FROM docs d WHERE " + " AND ".join(where or ["1"])
            args = list(params)
            if q.required:
                sql += " AND d.id IN (SELECT rowid FROM docs_fts WHERE docs_fts MATCH ?)"
                args.append(q.required_expr())
            allowed = [r[0] for r in conn.execute(sql, args)]
        # A ranker with `begin` (lab.search.embed.ranker) may hand the work to the lab's watcher: asked first, it
        # embeds the query while the keyword ranking runs here.
        begin = getattr(semantic, "begin", None)
        finish = begin(allowed, depth) if begin is not None else (lambda: semantic(allowed, depth))
    keyword = keyword_ranking(conn, q, where, params, depth, limit if mode == "keyword" else None) if mode != "semantic" else []
    if finish is not None:
        similar = finish()
    by_keyword = {r[0] for r in keyword}
    by_meaning = {doc_id for doc_id, _ in similar}
    candidates = {r[0] for r in keyword} | by_meaning
    if not candidates:
        return []
    kinds = units(conn, candidates)
    # (doc id, score, order): `order` sorts, equal ones by path (the same after any rebuild). A run record
    # matches mostly on its settings' names (`learning_rate`): it goes below documents that match in text.
    if mode == "keyword":
        ranked = [(doc_id, score, (phase, kinds[doc_id][0] == "run", -score)) for doc_id, score, phase in keyword]
    elif mode == "semantic":
        ranked = [(doc_id, score, (-score,)) for doc_id, score in similar]
    else:
        fused = fuse(keyword, similar)
        ranked = [(doc_id, score, (-score * (RUN_WEIGHT if kinds[doc_id][0] == "run" else 1.0), doc_id not in by_keyword))
                  for doc_id, score in fused.items()]
    ranked = [r for r in ranked if r[0] in kinds]
    ranked.sort(key=lambda r: r[2])
    # One result per document: a paper's passages, a long section's passages speak through the best of them.
    seen: set = set()
    unique = []
    for row in ranked:
        unit = kinds[row[0]]
        if unit not in seen:
            seen.add(unit)
            unique.append(row)
            if len(unique) >= limit + 20:  # a few more than shown: equal scores at the cut are then ordered by path
                break
    ranked = unique
    ids = [r[0] for r in ranked]
    details = {
        r[0]: r[1:]
        for r in conn.execute(
            f"SELECT id, type, key, title, section, path, fts_body, fts_title, info FROM docs WHERE id IN ({','.join('?' * len(ids))})",
            ids,
        )
    }
    ranked = [r for r in ranked if r[0] in details]
    ranked.sort(key=lambda r: (r[2], details[r[0]][4]))
    ranked = ranked[:limit]
    snippets: dict = {}
    hits = [r[0] for r in ranked if r[0] in by_keyword]
    if hits:
        # Snippets only for the rows shown (FTS5 reads their text back from `docs`); the rowid constraint goes on
        # the FTS table itself, or SQLite would evaluate the MATCH for every matching document.
        snippets = dict(
            conn.execute(
                f"SELECT rowid, snippet(docs_fts, -1, char(2), char(3), '…', 24) FROM docs_fts "
                f"WHERE docs_fts MATCH ? AND rowid IN ({','.join('?' * len(hits))})",
                [q.highlight(), *hits],
            )
        )
    results = []
    for doc_id, score, _ in ranked:
        type_, key, title, section, path, body, title_text, info = details[doc_id]
        snippet = snippets.get(doc_id)
        if snippet is None:
            snippet = opening(body or title_text or "")
        snippet = decode_snippet(" ".join((snippet or "").split()), *marks)
        match = [m for m, found in (("keyword", doc_id in by_keyword), ("semantic", doc_id in by_meaning)) if found]
        page = page_of(type_, info)
        results.append(
            {
                "type": type_,
                "id": key,
                "title": title,
                "section": section or None,
                "snippet": snippet,
                "path": path,
                "score": float(f"{score:.6g}"),
                "match": match,
                "page": page,
                "passage": decode_snippet(body or "", "", "") if page is not None else None,
            }
        )
    return results
