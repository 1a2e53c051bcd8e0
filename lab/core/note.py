"""A paper note, `papers/KEY.md`, as its file holds it: the one model of a note that every reader shares.

A note is Markdown with YAML front matter (lab's keys, then any keys the user added), then the abstract in a
block lab maintains, then a `## Notes` section that belongs to the user:

    ---
    arxiv_id: '1605.08386'
    ...
    experiments: [exp1]
    ---

    <!-- lab:abstract (lab rewrites this block when the note is refreshed; write in Notes below) -->

    > Graphs on lattice points are studied ...

    <!-- /lab:abstract -->

    ## Notes

Fetched text is data, not markup: the abstract in the body is a blockquote in which every character that
Markdown (CommonMark and Python-Markdown alike) would read as markup is escaped (`escape_markdown`), so the book
shows it as text and no HTML in it reaches the page; `abstract_of` gives it back as plain text.

Here in lab.core because every wing reads notes: `lab note` and the links (lab.papers), the search index
(lab.search, which does not import lab.papers) and the book. Writing and editing notes is lab.papers'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.core import frontmatter
from lab.core.markdown import escape_markdown, unescape_markdown  # noqa: F401 (re-exported for readers of notes)
from lab.errors import BadInput

ABSTRACT_START = "<!-- lab:abstract (lab rewrites this block when the note is refreshed; write in Notes below) -->"
ABSTRACT_END = "<!-- /lab:abstract -->"
ABSTRACT_RE = re.compile(r"<!-- lab:abstract\b[^\n]*?-->(.*?)<!-- /lab:abstract -->", re.S)

# Characters both CommonMark and Python-Markdown (mkdocs) accept a backslash escape for, and that can start
# markup. `<` and `&` become entities instead (Python-Markdown has no `\<`), so no raw HTML survives.


def abstract_block(abstract: str) -> str:
    quoted = "> " + escape_markdown(abstract) if abstract else "> (no abstract)"
    return f"{ABSTRACT_START}\n\n{quoted}\n\n{ABSTRACT_END}"


def abstract_of(body: str) -> str | None:
    """The abstract in a note's body, as plain text (None when the block is missing)."""
    m = ABSTRACT_RE.search(body)
    if not m:
        return None
    lines = [line[2:] if line.startswith("> ") else line.lstrip(">") for line in m.group(1).strip().splitlines()]
    return unescape_markdown(" ".join(lines).strip())


def as_list(value) -> list[str]:
    """A front matter value as a list of strings (a single value becomes a list of one; empty ones dropped)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def _text(meta: dict, key: str) -> str | None:
    value = meta.get(key)
    return str(value) if value not in (None, "") else None


@dataclass
class Note:
    """One paper note as its file holds it.

    `Note.read(path)` reads it (BadInput naming the file when its front matter is not valid YAML);
    `Note.parse(text, path, lenient=True)` never raises for bad front matter: `meta` is then {} and `problem`
    says what is wrong (the search index indexes such a note as plain text). A file without front matter gives
    `meta == {}` and the whole text as body. Public attributes:

    - `path`, `key` (the file stem, e.g. `1605.08386` or `hep-th_9901001`), `text` (the file as read: CRLF kept);
    - `meta`: the front matter as a dict (lab's keys and the user's own); `front`: its YAML source as written;
    - `arxiv_id`, `title`, `authors`, `experiments`, `tags`, `published`, `url`: from `meta`, normalised
      (lists of strings; strings or None);
    - `body`: everything after the front matter;
    - `abstract`: the abstract block's text, plain and unescaped (None when the user removed the block);
    - `notes_markdown`: the user's part of the body: the body without lab's abstract block and without the
      `## Notes` heading lab puts above it, stripped ('' when the user wrote nothing).
    """

    path: Path
    meta: dict
    body: str
    text: str = ""
    front: str | None = None
    problem: str | None = None  # with lenient parsing: why the front matter was not read

    @classmethod
    def read(cls, path) -> "Note":
        path = Path(path)
        with open(path, encoding="utf-8", newline="") as f:
            return cls.parse(f.read(), path)

    @classmethod
    def parse(cls, text: str, path, lenient: bool = False) -> "Note":
        source, body = frontmatter.split(text)
        if source is None:
            return cls(Path(path), {}, text, text, None)
        try:
            meta = frontmatter.load(source, str(path))
        except BadInput as e:
            if not lenient:
                raise
            return cls(Path(path), {}, text, text, None, str(e))
        return cls(Path(path), meta, body, text, source)

    @property
    def key(self) -> str:
        return self.path.stem

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    @property
    def arxiv_id(self) -> str | None:
        return _text(self.meta, "arxiv_id")

    @property
    def title(self) -> str | None:
        return _text(self.meta, "title")

    @property
    def published(self) -> str | None:
        return _text(self.meta, "published")

    @property
    def url(self) -> str | None:
        return _text(self.meta, "url")

    @property
    def authors(self) -> list[str]:
        return as_list(self.meta.get("authors"))

    @property
    def experiments(self) -> list[str]:
        return as_list(self.meta.get("experiments"))

    @property
    def tags(self) -> list[str]:
        return as_list(self.meta.get("tags"))

    @property
    def abstract(self) -> str | None:
        return abstract_of(self.body)

    @property
    def notes_markdown(self) -> str:
        rest = ABSTRACT_RE.sub("", self.body, count=1).strip()
        rest = re.sub(r"\A## Notes[ \t]*(?:\r?\n|\Z)", "", rest)
        return rest.strip()
