"""Long text cut into passages: what the index holds of a paper's full text, and of long notes and reports.

The semantic model reads 256 word pieces (about 180 words), so a document embedded whole is embedded from its
opening only: a sentence further down never counts. Every long text is therefore cut into passages of at most
`WORDS` words, at paragraph ends where it can, at sentence ends inside a long paragraph, and never across a
page of a PDF. Each passage is a document of its own in the index; a search shows each paper, note or report
section once, with its best passage (lab.search.query).

For PDFs, `pdf_passages` also finds the section a passage stands in from the page's heading lines (`4.2 Warmup`,
`IV. RESULTS`, `Appendix B`, `Acknowledgments`), carried from page to page.
"""

from __future__ import annotations

import re

WORDS = 150  # per passage: what the model reads of it, with room for the title in front
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_NUMBERED = re.compile(r"^(?:(\d{1,2}(?:\.\d{1,2}){0,3})\.?|([IVX]{1,5})\.|([A-H](?:\.\d{1,2})*)\.?)\s+([A-Z][^\n]{1,70})$")
_NAMED = re.compile(
    r"^(abstract|introduction|related work|background|method|methods|experiments|results|discussion|conclusions?|"
    r"acknowledge?ments?|references|appendix(?: [A-Z0-9]+)?)\s*$",
    re.I,
)


def split(text: str, words: int = WORDS) -> list[str]:
    """`text` as passages of at most `words` words (a paragraph longer than that at sentence ends, a sentence
    longer than that at `words`); blank input gives []."""
    passages: list[str] = []
    current: list[str] = []
    count = 0
    for paragraph in re.split(r"\n\s*\n", text):
        para_words = paragraph.split()
        if not para_words:
            continue
        pieces = [paragraph] if len(para_words) <= words else _sentences(paragraph, words)
        for piece in pieces:
            n = len(piece.split())
            if count and count + n > words:
                passages.append("\n\n".join(current))
                current, count = [], 0
            current.append(piece.strip())
            count += n
    if current:
        passages.append("\n\n".join(current))
    return passages


def _sentences(paragraph: str, words: int) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        tokens = sentence.split()
        for i in range(0, len(tokens), words):
            out.append(" ".join(tokens[i : i + words]))
    return out


def heading(line: str) -> str | None:
    """The section heading `line` is, or None (a numbered heading with its number: `4.2 Warmup schedule`)."""
    line = line.strip()
    if not 3 <= len(line) <= 80 or line.endswith((",", ";")):
        return None
    m = _NUMBERED.match(line)
    if m:
        title = m.group(4).strip()
        # A sentence that starts with a number ("2 GPUs were used.") is no heading: headings are short and
        # rarely end with a full stop.
        # Nor is a reference ("6 G. Semerjian, M. Tarzia and F. Zamponi, Phys. Rev. B"): initials, commas.
        if len(title.split()) > 10 or title.endswith(".") or re.search(r"\d{3,}|=|\(\d|\b[A-Z]\.\s|,.*,", title):
            return None
        return line
    if _NAMED.match(line):
        return line
    if line.isupper() and 1 <= len(line.split()) <= 6 and line.replace(" ", "").isalpha():
        return line
    return None


def pdf_passages(pages: list[str], words: int = WORDS) -> list[tuple[int, str | None, str]]:
    """[(page number from 1, section heading or None, passage text)] for a PDF's pages, in order."""
    out: list[tuple[int, str | None, str]] = []
    section: str | None = None
    for number, page in enumerate(pages, 1):
        if not page.strip():
            continue
        block: list[str] = []
        block_section = section
        for line in page.split("\n"):
            found = heading(line)
            if found:
                if block:
                    out += [(number, block_section, p) for p in split("\n".join(block), words)]
                    block = []
                section = block_section = found
                continue
            block.append(line)
        if block:
            out += [(number, block_section, p) for p in split("\n".join(block), words)]
    return [row for row in out if len(row[2].split()) >= MIN_WORDS]


MIN_WORDS = 3  # less is a page number or a running head, not a passage
