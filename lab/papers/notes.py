"""Paper notes on disk: `papers/KEY.md` written and refreshed from arXiv's metadata, and read back.

The note's format and the one model every reader shares (`Note`) are lab.core.note's; editing lab's keys in
place is lab.papers.frontedit's. Writing a note never touches the search index: the index's freshness scan
(and `lab watch`) see the changed file on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.core.fsutil import atomic_write_text, natural_key
from lab.core.note import ABSTRACT_END, ABSTRACT_START, Note, abstract_block, abstract_of, as_list, escape_markdown, unescape_markdown
from lab.papers.frontedit import LAB_KEYS, updated_text
from lab.papers.ids import ArxivId, parse_id

__all__ = [
    "ABSTRACT_END", "ABSTRACT_START", "LAB_KEYS", "Note", "NoteResult", "abstract_of", "escape_markdown",
    "lock", "note_path", "notes", "render_note", "unescape_markdown", "write_note",
]


@dataclass
class NoteResult:
    path: Path
    arxiv_id: str
    title: str
    created: bool


def note_path(workspace, aid: ArxivId) -> Path:
    return workspace.papers_dir / f"{aid.key}.md"


def _union(old, new) -> list[str]:
    out = as_list(old)
    for item in new:
        if item not in out:
            out.append(item)
    return out


def _lab_meta(paper, old: dict, exps: list[str], tags: list[str], now: str) -> dict:
    """The values of lab's own keys for `paper` (tags and experiments merged into the old ones, added_at kept)."""
    return {
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


def render_note(meta: dict, abstract: str) -> str:
    """A new note: front matter, the abstract block, and an empty Notes section."""
    from lab.core import frontmatter

    return frontmatter.render(meta, f"\n{abstract_block(abstract)}\n\n## Notes\n\n")


def write_note(workspace, paper, exps=(), tags=(), now: str | None = None) -> NoteResult:
    """Create or refresh the note of `paper` (atomically), merging links and tags into what is there.

    A refresh changes only lab's keys, in place, and the abstract block (see lab.papers.frontedit)."""
    from lab.core.clock import now_iso

    aid = parse_id(paper.arxiv_id)
    path = note_path(workspace, aid)
    old = Note.read(path) if path.exists() else None
    values = _lab_meta(paper, old.meta if old else {}, list(exps), list(tags), now or now_iso())
    text = render_note(values, paper.abstract) if old is None else updated_text(old, values, paper.abstract)
    if old is None or text != old.text:
        atomic_write_text(path, text)
    return NoteResult(path, aid.id, paper.title, created=old is None)


def lock(workspace):
    """The papers lock: one writer of notes and of the reports' papers blocks at a time."""
    from lab.core.flock import locked

    return locked(workspace.state_dir / "papers.lock")


def notes(workspace) -> list[Note]:
    """Every note in `papers/` (any `*.md` with front matter), in natural order of file name."""
    if not workspace.papers_dir.is_dir():
        return []
    out = []
    for path in sorted(workspace.papers_dir.glob("*.md"), key=lambda p: natural_key(p.name)):
        n = Note.read(path)
        if n.meta:
            out.append(n)
    return out
