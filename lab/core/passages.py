"""Long text cut into passages: what the index holds of a paper's full text, and of long notes and reports.

The semantic model reads 256 word pieces (about 180 words), so a document embedded whole is embedded from its
opening only: a sentence further down never counts. Every long text is therefore cut into passages of at most
`WORDS` words, at paragraph ends where it can, at sentence ends inside a long paragraph, and never across a
page of a PDF. Each passage is a document of its own in the index; a search shows each paper, note or report
section once, with its best passage (lab.search.query).

For PDFs, `pdf_passages` also finds the section a passage stands in from the page's heading lines (`4.2 Warmup`,
`IV. RESULTS`, `Appendix B`, `Acknowledgments`), carried from page to page. A PDF's passages are kept with its
extracted text (lab.core.pdftext), under `VERSION`: cutting millions of words into passages is done once per PDF,
not at every rebuild of the index. Change `VERSION` whenever the cut changes, and kept passages are cut again.
"""

from __future__ import annotations

import re

VERSION = 1  # of the cut: passages kept under another version are not used
WORDS = 150  # per passage: what the model reads of it, with room for the title in front
_SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z0-9(\"'])")
_PARAGRAPH = re.compile(r"\n\s*\n")
_NUMBERED = re.compile(r"^(?:(\d{1,2}(?:\.\d{1,2}){0,3})\.?|([IVX]{1,5})\.|([A-H](?:\.\d{1,2})*)\.?)\s+([A-Z][^\n]{1,70})$")
_NAMED = re.compile(
    r"^(abstract|introduction|related work|background|method|methods|experiments|results|discussion|conclusions?|"
    r"acknowledge?ments?|references|appendix(?: [A-Z0-9]+)?)\s*$",
    re.I,
)


def split(text: str, words: int = WORDS) -> list[str]:
    """`text` as passages of at most `words` words (a paragraph longer than that at sentence ends, a sentence
    longer than that at `words`); blank input gives []."""
    return [passage for passage, _ in _counted(text, words)]


def _counted(text: str, words: int) -> list[tuple[str, int]]:
    """`split`'s passages with their number of words (each text is split into words once: a paper's full text is
    millions of words)."""
    passages: list[tuple[str, int]] = []
    current: list[str] = []
    count = 0
    for paragraph in _PARAGRAPH.split(text):
        n = len(paragraph.split())
        if not n:
            continue
        pieces = [(paragraph.strip(), n)] if n <= words else _sentences(paragraph, words)
        for piece, n in pieces:
            if count and count + n > words:
                passages.append(("\n\n".join(current), count))
                current, count = [], 0
            current.append(piece)
            count += n
    if current:
        passages.append(("\n\n".join(current), count))
    return passages


def _sentences(paragraph: str, words: int) -> list[tuple[str, int]]:
    """The paragraph's sentences (a sentence over `words` words cut every `words`), each with its words joined by
    one space, and its number of words. The ends are found by a pattern that starts with the punctuation: SRE
    skips ahead to it, where a look-behind would be tried at every character."""
    out: list[tuple[str, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(paragraph):
        _words(paragraph[start : m.start() + 1], words, out)
        start = m.end()
    _words(paragraph[start:], words, out)
    return out


def _words(sentence: str, words: int, out: list[tuple[str, int]]) -> None:
    tokens = sentence.split()
    for i in range(0, len(tokens), words):
        chunk = tokens[i : i + words]
        out.append((" ".join(chunk), len(chunk)))


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
                    out += [(number, block_section, p) for p, n in _counted("\n".join(block), words) if n >= MIN_WORDS]
                    block = []
                section = block_section = found
                continue
            block.append(line)
        if block:
            out += [(number, block_section, p) for p, n in _counted("\n".join(block), words) if n >= MIN_WORDS]
    return out


MIN_WORDS = 3  # less is a page number or a running head, not a passage
