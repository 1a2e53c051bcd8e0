"""Paper notes: `papers/KEY.md`, linked both ways to experiments, and BibTeX for them.

A note is Markdown with YAML front matter (the keys in LAB_KEYS, in that order, then any keys the user added),
then the abstract in a block lab maintains, then a `## Notes` section that belongs to the user:

    ---
    arxiv_id: '1605.08386'
    ...
    experiments: [exp1]
    ---

    <!-- lab:abstract (lab rewrites this block when the note is refreshed; write in Notes below) -->

    > Graphs on lattice points are studied ...

    <!-- /lab:abstract -->

    ## Notes

Fetched text is data, not markup: the front matter keeps titles and abstracts as plain text (YAML quotes
them); the abstract in the body is a blockquote in which every character that Markdown (CommonMark and
Python-Markdown alike) would read as markup is escaped (`\\*`, `\\_`, `\\[`, `&lt;` ...), so the book shows it as
text and no HTML in it reaches the page. Refreshing replaces only the front matter keys lab owns (tags and
experiments are merged, `added_at` kept) and the abstract block; all other text and keys stay as they are.

The front matter's `experiments` is the truth for links. Each linked experiment's `report.md` shows its papers
between `<!-- lab:papers -->` and `<!-- /lab:papers -->` (a `## Papers` section is appended when the markers are
missing); lab rebuilds only what lies between the markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab.core import frontmatter
from lab.papers.ids import ArxivId, parse_id, parse_ids
from lab.errors import BadInput, LabError
from lab.core.fsutil import atomic_write_text, natural_key, read_text
from lab.search.index import refresh_paths

LAB_KEYS = (
    "arxiv_id", "version", "title", "authors", "published", "updated", "primary_category", "categories",
    "doi", "journal_ref", "comment", "url", "pdf_url", "tags", "experiments", "added_at",
)
ABSTRACT_START = "<!-- lab:abstract (lab rewrites this block when the note is refreshed; write in Notes below) -->"
ABSTRACT_END = "<!-- /lab:abstract -->"
PAPERS_START = "<!-- lab:papers -->"
PAPERS_END = "<!-- /lab:papers -->"
_ABSTRACT_RE = re.compile(r"<!-- lab:abstract\b[^\n]*?-->(.*?)<!-- /lab:abstract -->", re.S)
_PAPERS_RE = re.compile(re.escape(PAPERS_START) + r"(.*?)" + re.escape(PAPERS_END), re.S)


class NotFoundOnArxiv(LabError):
    """Some ids are unknown to arXiv; `written` holds the notes that were written for the others."""

    def __init__(self, message: str, written: list["NoteResult"]):
        super().__init__(message)
        self.written = written


@dataclass
class NoteResult:
    path: Path
    arxiv_id: str
    title: str
    created: bool


# ---- Markdown escaping -------------------------------------------------------------------------------------

# Characters both CommonMark and Python-Markdown (mkdocs) accept a backslash escape for, and that can start
# markup. `<` and `&` become entities instead (Python-Markdown has no `\<`), so no raw HTML survives.
_ENTITY = re.compile(r"&(?=#\d+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")


def escape_markdown(text: str) -> str:
    """Make `text` show as itself in a Markdown paragraph: no emphasis, links, code, headings or HTML."""
    text = _ENTITY.sub("&amp;", text)
    text = text.replace("<", "&lt;")
    # A backslash only escapes punctuation; before a letter (LaTeX `\alpha`) it is already literal.
    text = re.sub(r"\\(?=[!-/:-@\[-`{-~])", r"\\\\", text)
    text = re.sub(r"([`*_{}\[\]])", r"\\\1", text)
    # Characters that are markup only at the start of a line (one-line paragraphs here): `#`, `+`, `-`, `>`,
    # `1.`; `(` and `!` only around `[`, which is already escaped.
    text = re.sub(r"^([#+>-])", r"\\\1", text)
    text = re.sub(r"^(\d+)([.)])", r"\1\\\2", text)
    return text


def unescape_markdown(text: str) -> str:
    """Undo `escape_markdown` (for readers of the abstract block, such as the search index)."""
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)
    return text.replace("&lt;", "<").replace("&amp;", "&")


# ---- Notes -------------------------------------------------------------------------------------------------


def note_path(workspace, aid: ArxivId) -> Path:
    return workspace.papers_dir / f"{aid.key}.md"


def _abstract_block(abstract: str) -> str:
    quoted = "> " + escape_markdown(abstract) if abstract else "> (no abstract)"
    return f"{ABSTRACT_START}\n\n{quoted}\n\n{ABSTRACT_END}"


def abstract_of(body: str) -> str | None:
    """The abstract in a note's body, as plain text (None when the block is missing)."""
    m = _ABSTRACT_RE.search(body)
    if not m:
        return None
    lines = [line[2:] if line.startswith("> ") else line.lstrip(">") for line in m.group(1).strip().splitlines()]
    return unescape_markdown(" ".join(lines).strip())


def _as_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def _union(old, new) -> list[str]:
    out = _as_list(old)
    for item in new:
        if item not in out:
            out.append(item)
    return out


def _meta_for(paper, old: dict, exps: list[str], tags: list[str], now: str) -> dict:
    meta = {
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "authors": list(paper.authors),
        "published": paper.published,
        "updated": paper.updated,
        "primary_category": paper.primary_category,
        "categories": list(paper.categories),
        "doi": paper.doi,
        "journal_ref": paper.journal_ref,
        "comment": paper.comment,
        "url": paper.url,
        "pdf_url": paper.pdf_url,
        "tags": _union(old.get("tags"), tags),
        "experiments": _union(old.get("experiments"), exps),
        "added_at": old.get("added_at") or now,
    }
    meta.update({k: v for k, v in old.items() if k not in LAB_KEYS})
    return meta


def render_note(meta: dict, abstract: str) -> str:
    """A new note: front matter, the abstract block, and an empty Notes section."""
    return frontmatter.render(meta, f"\n{_abstract_block(abstract)}\n\n## Notes\n\n")


def _refresh_body(body: str, abstract: str) -> str:
    """Replace the abstract block only; a body without the block (the user removed it) stays as it is."""
    if not _ABSTRACT_RE.search(body):
        return body
    return _ABSTRACT_RE.sub(lambda m: _abstract_block(abstract), body, count=1)


def write_note(workspace, paper, exps=(), tags=(), now: str | None = None) -> NoteResult:
    """Create or refresh the note of `paper` (atomically), merging links and tags into what is there."""
    from lab.core.clock import now_iso

    aid = parse_id(paper.arxiv_id)
    path = note_path(workspace, aid)
    old, body = ({}, None)
    if path.exists():
        old, body = frontmatter.read(path)
    meta = _meta_for(paper, old, list(exps), list(tags), now or now_iso())
    text = render_note(meta, paper.abstract) if body is None else frontmatter.render(meta, _refresh_body(body, paper.abstract))
    atomic_write_text(path, text)
    refresh_paths(workspace.root, [path])
    return NoteResult(path, aid.id, paper.title, created=body is None)


def _check_links(workspace, exps, tags) -> tuple[list[str], list[str]]:
    exps = list(dict.fromkeys(exps or ()))
    for name in exps:
        workspace.experiment(name)  # BadInput (exit 2) when it does not exist
    tags = [t.strip() for t in dict.fromkeys(tags or ())]
    for tag in tags:
        if not tag or not tag.isprintable():  # no newline, tab, escape sequence or byte that is not UTF-8
            raise BadInput(f"bad tag {tag!r}: a tag is one line of printable text")
    return exps, tags


def _lock(workspace):
    from lab.core.flock import locked

    return locked(workspace.state_dir / "papers.lock")


def note(workspace, ids, exps=(), tags=(), offline: bool = False, progress: Callable[[str], None] | None = None) -> list[NoteResult]:
    """`lab note`: check the ids (BadInput, nothing sent, when one is malformed), fetch them in one request, write
    or refresh their notes and the linked experiments' reports. Ids arXiv does not know raise NotFoundOnArxiv
    after the others were written. `offline` updates links and tags of existing notes without asking arXiv."""
    aids = parse_ids(ids)
    if not aids:
        raise BadInput("give at least one arXiv id, e.g. lab note 2301.12345")
    exps, tags = _check_links(workspace, exps, tags)
    # Refuse before sending anything when an existing note cannot be read back.
    existing = {a.id: frontmatter.read(note_path(workspace, a)) for a in aids if note_path(workspace, a).exists()}
    # ... or a report whose papers block will be rewritten cannot be read: nothing is half-written.
    for name in {*exps, *(e for meta, _ in existing.values() for e in _as_list(meta.get("experiments")))}:
        report = workspace.experiments_dir / str(name) / "report.md"
        if "/" not in str(name) and report.is_file():
            read_text(report)
    if offline:
        missing = [a.id for a in aids if a.id not in existing]
        if missing:
            raise BadInput(f"--offline needs existing notes; none for {', '.join(missing)} in {workspace.papers_dir}")
        papers, unknown = {a.id: _paper_from_meta(existing[a.id][0], existing[a.id][1]) for a in aids}, []
    else:
        from lab.papers.client import fetch

        papers, unknown = fetch(aids, progress=progress)
    written: list[NoteResult] = []
    with _lock(workspace):
        for aid in aids:
            if aid.id in papers:
                result = write_note(workspace, papers[aid.id], exps, tags)
                written.append(result)
                progress and progress(f"{'wrote' if result.created else 'refreshed'} {result.path.relative_to(workspace.root)}: {result.title}")
        linked = set(exps)
        for result in written:
            linked.update(_as_list(frontmatter.read(result.path)[0].get("experiments")))
        for name in sorted(linked, key=natural_key):
            if workspace.experiment(name, must_exist=False).dir.is_dir():
                sync_report(workspace, name)
    if unknown:
        raise NotFoundOnArxiv(f"not found on arXiv: {', '.join(unknown)}", written)
    return written


def _paper_from_meta(meta: dict, body: str):
    from lab.papers.client import Paper

    return Paper(
        **{k: meta.get(k) for k in ("arxiv_id", "version", "title", "published", "updated", "doi", "journal_ref", "comment", "url", "pdf_url")},
        authors=_as_list(meta.get("authors")),
        primary_category=meta.get("primary_category") or "",
        categories=_as_list(meta.get("categories")),
        abstract=abstract_of(body) or "",
    )


@dataclass
class Note:
    path: Path
    meta: dict
    body: str

    @property
    def key(self) -> str:
        return self.path.stem

    @property
    def experiments(self) -> list[str]:
        return _as_list(self.meta.get("experiments"))

    @property
    def tags(self) -> list[str]:
        return _as_list(self.meta.get("tags"))

    @property
    def abstract(self) -> str | None:
        return abstract_of(self.body)


def notes(workspace) -> list[Note]:
    """Every note in `papers/` (any `*.md` with front matter), in natural order of file name."""
    if not workspace.papers_dir.is_dir():
        return []
    out = []
    for path in sorted(workspace.papers_dir.glob("*.md"), key=lambda p: natural_key(p.name)):
        meta, body = frontmatter.read(path)
        if meta:
            out.append(Note(path, meta, body))
    return out


# ---- Links from experiments --------------------------------------------------------------------------------


def papers_block(workspace, exp_name: str) -> str:
    """The Markdown list of the papers whose notes name `exp_name`, between the markers."""
    lines = []
    for n in notes(workspace):
        if exp_name in n.experiments:
            title = escape_markdown(str(n.meta.get("title") or n.key))
            arxiv_id = " ".join(str(n.meta.get("arxiv_id") or n.key).split())
            if not re.fullmatch(r"[A-Za-z0-9./-]+", arxiv_id):  # a hand-edited note may hold anything: text, not markup
                arxiv_id = escape_markdown(arxiv_id)
            lines.append(f"- [{title}](../../papers/{n.key}.md) (arXiv:{arxiv_id})")
    inner = "\n\n" + "\n".join(lines) + "\n\n" if lines else "\n"
    return f"{PAPERS_START}{inner}{PAPERS_END}"


def sync_report(workspace, exp_name: str) -> bool:
    """Rebuild the papers block of `experiments/EXP/report.md` from the notes; return whether the file changed.

    Only the text between the markers changes; when they are missing, a `## Papers` section holding them is
    appended at the end (a missing report is created with just that section)."""
    exp = workspace.experiment(exp_name)
    path = exp.report_path
    text = read_text(path) if path.exists() else ""
    block = papers_block(workspace, exp_name)
    if _PAPERS_RE.search(text):
        new = _PAPERS_RE.sub(lambda m: block, text, count=1)
    else:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{sep}## Papers\n\n{block}\n"
    if new == text:
        return False
    atomic_write_text(path, new)
    refresh_paths(workspace.root, [path])
    return True


def sync_all(workspace) -> list[str]:
    """Rebuild the papers block of every experiment that has linked papers or a block already (offline)."""
    named = {e for n in notes(workspace) for e in n.experiments}
    changed = []
    with _lock(workspace):
        for exp in workspace.experiments():
            has_block = exp.report_path.exists() and PAPERS_START in read_text(exp.report_path)
            if (exp.name in named or has_block) and sync_report(workspace, exp.name):
                changed.append(exp.name)
    return changed


# ---- BibTeX ------------------------------------------------------------------------------------------------


def _bib_value(text: str) -> str:
    """Protect BibTeX's specials; keep LaTeX math and commands as they are; balance braces."""
    text = re.sub(r"(?<!\\)([&%#])", r"\\\1", str(text))
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            break
    if depth != 0:
        text = text.replace("{", "").replace("}", "")
    return text


def bibtex_entry(meta: dict) -> str:
    aid = str(meta.get("arxiv_id") or "")
    fields = [
        ("title", "{" + _bib_value(meta.get("title") or "") + "}"),
        ("author", " and ".join(_bib_value(a) for a in _as_list(meta.get("authors")))),
        ("year", str(meta.get("published") or "")[:4]),
        ("eprint", aid),
        ("archivePrefix", "arXiv"),
        ("primaryClass", meta.get("primary_category") or ""),
    ]
    if meta.get("doi"):
        fields.append(("doi", str(meta["doi"])))
    if meta.get("journal_ref"):
        fields.append(("note", _bib_value(meta["journal_ref"])))
    fields.append(("url", meta.get("url") or f"https://arxiv.org/abs/{aid}"))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@misc{{arXiv:{aid},\n{body}\n}}\n"


def bibtex(workspace, exps=(), tags=()) -> str:
    """BibTeX (`@misc` with eprint, archivePrefix, primaryClass, doi) for the notes linked to any of `exps` and
    tagged with any of `tags` (no filter: every note)."""
    exps, tags = list(exps or ()), list(tags or ())
    for name in exps:
        workspace.experiment(name)
    chosen = [
        n for n in notes(workspace)
        if n.meta.get("arxiv_id")
        and (not exps or set(exps) & set(n.experiments))
        and (not tags or set(tags) & set(n.tags))
    ]
    return "\n".join(bibtex_entry(n.meta) for n in chosen)
