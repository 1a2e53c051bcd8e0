"""What the book reads from the lab: the experiments (report, runs table, curves), the paper notes (through
lab.papers.notes.Note, the one reader of a note), the tags, and the files an experiment publishes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.book import table as book
from lab.book.text import str_list
from lab.core import frontmatter
from lab.core.fsutil import natural_key
from lab.core.workspace import NAME_RE
from lab.errors import BadInput, LabError
from lab.papers.notes import Note

# An experiment's own files published beside its page by default: its settings files and figures, never what lies
# in these directories; `book: publish: [glob, ...]` in lab.yaml adds more.
SKIP_DIRS = {"models", "logs", "runs"}
SETTINGS_SUFFIXES = {".json", ".jsonnet", ".libsonnet"}
FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif"}
MAX_STATIC_BYTES = 10_000_000


@dataclass
class Paper:
    """A paper note as the book shows it: its front matter, the abstract's plain text and the user's own Markdown."""

    key: str
    meta: dict
    abstract: str
    notes: str
    # Whether the paper's full text is in the search index; None when nothing says (shown only when known).
    fulltext_indexed: bool | None = None
    fulltext: dict | None = None  # lab.core.pdftext.summary: the kept PDF, pages and words indexed

    def text(self, name: str) -> str:
        value = self.meta.get(name)
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    def title(self) -> str:
        return " ".join(self.text("title").split()) or self.key

    def authors(self) -> list[str]:
        return str_list(self.meta.get("authors"))

    def experiments(self) -> list[str]:
        return str_list(self.meta.get("experiments"))

    def tags(self) -> list[str]:
        return str_list(self.meta.get("tags"))

    def added_at(self) -> str:
        return str(self.meta.get("added_at") or "")


@dataclass
class ExperimentInfo:
    exp: object
    name: str
    title: str
    tags: list[str]
    command: str | None
    body: str
    table: book.RunsTable
    curves: dict[str, Path] = field(default_factory=dict)
    group_by: list[str] = field(default_factory=lambda: ["seed"])



def read_paper(path: Path) -> Paper | None:
    """A paper note, or None when the file is some other Markdown file (no title or arxiv_id)."""
    note = Note.read(path)
    if not (note.meta.get("title") or note.meta.get("arxiv_id")):
        return None
    return Paper(note.key, note.meta, note.abstract or "", note.notes_markdown)


def load_papers(ws, warn) -> list[Paper]:
    papers = []
    if not ws.papers_dir.is_dir():
        return papers
    for path in sorted(ws.papers_dir.glob("*.md")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            paper = read_paper(path)
        except (LabError, OSError, UnicodeDecodeError) as e:
            warn(f"lab: skipped paper note {path}: {e}")
            continue
        if paper is None:
            continue
        if not NAME_RE.fullmatch(paper.key) or paper.key == "index":
            warn(f"lab: skipped paper note {path}: name it with letters, digits, '-', '_' and '.' (not 'index')")
            continue
        papers.append(paper)
    found = fulltext(ws, [p.key for p in papers])
    for paper in papers:
        paper.fulltext = found.get(paper.key)
        paper.fulltext_indexed = None if paper.fulltext is None else paper.fulltext["pages"] > 0
    return papers


def fulltext(ws, keys: list[str]) -> dict[str, dict]:
    """Note key -> its full text as the book shows it (lab.core.pdftext.summary: the kept PDF `papers/KEY.pdf`,
    pages and words indexed, a problem), for the notes that have a PDF."""
    from lab.core import pdftext

    out = {}
    for key in keys:
        summary = pdftext.summary(ws.root, f"papers/{key}.md")
        if summary is not None:
            out[key] = summary
    return out


def published_pdf(patterns: list[str], key: str) -> bool:
    """Whether `book: publish:` names a paper's kept PDF (`papers/*.pdf`, relative to the lab's root): PDFs are
    not published by default (a publisher's copy may not be ours to put on a website)."""
    import fnmatch

    return any(fnmatch.fnmatch(f"papers/{key}.pdf", g) for g in patterns if g.startswith("papers/"))


def load_experiment(exp, warn) -> ExperimentInfo:
    meta, body = {}, ""
    if exp.report_path.is_file():
        try:
            meta, body = frontmatter.read(exp.report_path)
        except (LabError, OSError, UnicodeDecodeError) as e:
            warn(f"lab: {e}" if str(e).startswith(str(exp.report_path)) else f"lab: {exp.report_path}: {e}")
    command = meta.get("command")
    try:
        configured = book.configured_metrics(exp, meta)
    except LabError as e:
        warn(f"lab: {e}; the default columns are shown")
        configured = []
    from lab.book.sweep import DEFAULT_GROUP_BY, group_keys

    try:
        group_by = group_keys(exp, meta)
    except LabError as e:
        warn(f"lab: {e}; grouped by seed")
        group_by = list(DEFAULT_GROUP_BY)
    return ExperimentInfo(
        group_by=group_by,
        exp=exp,
        name=exp.name,
        title=" ".join(str(meta.get("title") or exp.name).split()),
        tags=str_list(meta.get("tags")),
        command=command if isinstance(command, str) and command.strip() else None,
        body=body,
        table=book.runs_table(exp, runs=book.load_runs(exp, resolve_missing=False), configured=configured),
    )


def tag_slugs(tags) -> dict[str, str]:
    """tag -> a unique, URL-safe page name."""
    slugs, used = {}, set()
    for tag in sorted(set(tags), key=natural_key):
        base = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")
        if not base or base == "index":
            base = "tag-" + hashlib.sha1(tag.encode()).hexdigest()[:8]
        slug, n = base, 2
        while slug in used:
            slug, n = f"{base}-{n}", n + 1
        used.add(slug)
        slugs[tag] = slug
    return slugs



def publish_patterns(ws) -> list[str]:
    """`book: publish: [glob, ...]` of lab.yaml: more of an experiment's files to publish, relative to its directory."""
    where = f"{ws.root / 'lab.yaml'}: book"
    config = ws.config.get("book")
    if config is None:
        return []
    if not isinstance(config, dict):
        raise BadInput(f"{where}: must be a mapping, e.g. book: {{publish: ['data/*.csv']}}")
    patterns = config.get("publish") or []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(g, str) and g.strip() for g in patterns):
        raise BadInput(f"{where}.publish: must be a list of glob patterns relative to an experiment, e.g. ['data/*.csv']")
    for glob in patterns:
        if glob.startswith(("/", "~")) or ".." in Path(glob).parts:
            raise BadInput(f"{where}.publish: {glob!r} must stay inside the experiment (no leading '/', no '..')")
    return [g.strip() for g in patterns]


def _publishable(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_STATIC_BYTES
    except OSError:
        return False


def own_files(exp_dir: Path, prefix: str, patterns: list[str] = ()):
    """The experiment's own files to publish beside its page: the settings files in `settings/` and figures
    anywhere outside runs, logs and models, then the files `patterns` (book: publish:) match; nothing hidden."""
    chosen: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(exp_dir):
        rel_dir = Path(dirpath).relative_to(exp_dir)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and d != "curves"]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        in_settings = rel_dir.parts[:1] == ("settings",)
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or not (suffix in FIGURE_SUFFIXES or in_settings and suffix in SETTINGS_SUFFIXES):
                continue
            path = Path(dirpath) / name
            if _publishable(path):
                chosen[(rel_dir / name).as_posix()] = path
    root = exp_dir.resolve()
    for glob in patterns:
        for path in sorted(exp_dir.glob(glob)):
            rel = path.relative_to(exp_dir)
            if any(part.startswith(".") for part in rel.parts) or rel.suffix == ".md" or rel.parts[:1] == ("curves",):
                continue
            if path.resolve().is_relative_to(root) and _publishable(path):
                chosen.setdefault(rel.as_posix(), path)
    for rel, path in chosen.items():
        yield f"{prefix}/{rel}", path

