"""`lab note`: papers into the lab, from arXiv ids or from PDF files, with their full text.

`note(ids)` fetches the metadata of every id in one request, writes or refreshes the notes and the linked
reports' papers blocks, then keeps each new paper's PDF (`papers/KEY.pdf`, from the link arXiv's answer gives,
paced and bounded like the metadata: lab.papers.client) and extracts its text page by page (lab.core.pdftext)
into derived state. `note_pdf(file)` makes a note of a local PDF that is not on arXiv. `sync_pdfs` fetches the
PDFs of existing notes. `--no-pdf`, or `papers: {full_text: false}` in lab.yaml, skips the PDFs.

A PDF that cannot be had or read (too large, too slow, not a PDF, encrypted, damaged, a scan without text, a
decompression bomb, over the page cap) is one line through `progress`; the note is written regardless, and
nothing else is lost. PDFs are ignored by git (`papers/.gitignore`) unless lab.yaml says
`papers: {commit_pdfs: true}`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

from lab.core import pdftext
from lab.core.fsutil import natural_key, read_text
from lab.core.note import Note, as_list
from lab.errors import BadInput, LabError
from lab.papers.frontedit import refuse_unless_editable
from lab.papers.ids import parse_ids
from lab.papers.links import sync_report
from lab.papers.notes import NoteResult, lock, note_path, notes, write_note

GITIGNORE = "# lab: the papers' PDFs stay out of git (lab.yaml: papers: {commit_pdfs: true} to commit them)\n*.pdf\n*.PDF\n"


class NotFoundOnArxiv(LabError):
    """Some ids are unknown to arXiv; `written` holds the notes that were written for the others."""

    def __init__(self, message: str, written: list[NoteResult]):
        super().__init__(message)
        self.written = written


def _papers_config(workspace) -> dict:
    value = workspace.config.get("papers") or {}
    if not isinstance(value, dict):
        raise BadInput(f"{workspace.root / 'lab.yaml'}: papers: must be a mapping (full_text, commit_pdfs)")
    for key in value:
        if key not in ("full_text", "commit_pdfs"):
            raise BadInput(f"{workspace.root / 'lab.yaml'}: papers: unknown key {key!r} (full_text, commit_pdfs)")
    return value


def full_text_on(workspace) -> bool:
    """Whether `lab note` keeps PDFs and their text (lab.yaml `papers: {full_text: false}` turns it off)."""
    return _papers_config(workspace).get("full_text", True) is not False


def _check_links(workspace, exps, tags) -> tuple[list[str], list[str]]:
    exps = list(dict.fromkeys(exps or ()))
    for name in exps:
        workspace.experiment(name)  # BadInput (exit 2) when it does not exist
    tags = [t.strip() for t in dict.fromkeys(tags or ())]
    for tag in tags:
        if not tag or not tag.isprintable():  # no newline, tab, escape sequence or byte that is not UTF-8
            raise BadInput(f"bad tag {tag!r}: a tag is one line of printable text")
    return exps, tags


def note(workspace, ids, exps=(), tags=(), offline: bool = False, pdf: bool = True,
         progress: Callable[[str], None] | None = None) -> list[NoteResult]:
    """`lab note`: check the ids (BadInput, nothing sent, when one is malformed), fetch them in one request, write
    or refresh their notes and the linked experiments' reports, then keep the PDFs of papers that have none yet
    (unless `pdf` is False or lab.yaml turns full text off). Ids arXiv does not know raise NotFoundOnArxiv
    after the others were written. `offline` updates links and tags of existing notes without asking arXiv."""
    aids = parse_ids(ids, progress=progress)
    if not aids:
        raise BadInput("give at least one arXiv id, e.g. lab note 2301.12345")
    exps, tags = _check_links(workspace, exps, tags)
    pdf = pdf and not offline and full_text_on(workspace)
    # Refuse before sending anything when an existing note cannot be read back, or not edited in place.
    existing = {a.id: Note.read(note_path(workspace, a)) for a in aids if note_path(workspace, a).exists()}
    for old in existing.values():
        refuse_unless_editable(old)
    # ... or a report whose papers block will be rewritten cannot be read: nothing is half-written.
    for name in {*exps, *(e for old in existing.values() for e in old.experiments)}:
        report = workspace.experiments_dir / str(name) / "report.md"
        if "/" not in str(name) and report.is_file():
            read_text(report)
    if offline:
        missing = [a.id for a in aids if a.id not in existing]
        if missing:
            raise BadInput(f"--offline needs existing notes; none for {', '.join(missing)} in {workspace.papers_dir}")
        papers, unknown = {a.id: _paper_from_note(existing[a.id]) for a in aids}, []
    else:
        from lab.papers.client import fetch

        papers, unknown = fetch(aids, progress=progress)
    written: list[NoteResult] = []
    with lock(workspace):
        for aid in aids:
            if aid.id in papers:
                result = write_note(workspace, papers[aid.id], exps, tags)
                written.append(result)
                say(progress, f"{'wrote' if result.created else 'refreshed'} {result.path.relative_to(workspace.root)}: {result.title}")
        _sync_linked(workspace, exps, [r.path for r in written])
    if pdf:
        for result in written:
            if not result.path.with_suffix(".pdf").exists():
                keep_arxiv_pdf(workspace, papers[result.arxiv_id], result.path.with_suffix(".pdf"), progress)
    if unknown:
        raise NotFoundOnArxiv(f"not found on arXiv: {', '.join(unknown)}", written)
    return written


def say(progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _sync_linked(workspace, exps, paths) -> None:
    linked = set(exps)
    for path in paths:
        linked.update(Note.read(path).experiments)
    for name in sorted(linked, key=natural_key):
        if workspace.experiment(name, must_exist=False).dir.is_dir():
            sync_report(workspace, name)


def _paper_from_note(old: Note):
    from lab.papers.client import Paper

    meta = old.meta
    return Paper(
        **{k: meta.get(k) for k in ("arxiv_id", "version", "title", "published", "updated", "doi", "journal_ref", "comment", "url", "pdf_url")},
        authors=as_list(meta.get("authors")),
        primary_category=meta.get("primary_category") or "",
        categories=as_list(meta.get("categories")),
        abstract=old.abstract or "",
    )


# ---- PDFs --------------------------------------------------------------------------------------------------


def _ignore_pdfs(workspace) -> None:
    """`papers/.gitignore` keeps PDFs out of git, unless lab.yaml asks to commit them (then lab's file goes)."""
    path = workspace.papers_dir / ".gitignore"
    commit = _papers_config(workspace).get("commit_pdfs") is True
    current = path.read_text(encoding="utf-8", errors="replace") if path.exists() else None
    if commit:
        if current == GITIGNORE:
            path.unlink()
    elif current is None:
        from lab.core.fsutil import atomic_write_text

        atomic_write_text(path, GITIGNORE)


def _store_pdf(workspace, dest: Path, write: Callable[[str], None], progress) -> dict | None:
    """Write the PDF at `dest` (through `write(tmp)`, then an atomic rename), extract its text; say problems.
    A file that is not a PDF at all is not kept. Returns the kept extraction, or None."""
    import tempfile

    _ignore_pdfs(workspace)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        probe = pdftext.extract(tmp, max_pages=1, deadline_s=5)
        if probe["problem"] and probe["problem"].startswith("not a PDF"):
            say(progress, f"{dest.relative_to(workspace.root)}: {probe['problem']}; not kept (the note is written)")
            return None
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    rel = dest.relative_to(workspace.root).as_posix()
    entry = pdftext.ensure(workspace.root, rel)
    pages = entry.get("pages") or []
    if entry.get("problem"):
        say(progress, f"{rel}: {entry['problem']}")
    if any(pages):
        words = sum(len(p.split()) for p in pages)
        say(progress, f"kept {rel}: {len(pages)} pages, {words} words indexed")
    return entry


def keep_arxiv_pdf(workspace, paper, dest: Path, progress=None) -> dict | None:
    """Download `paper`'s PDF to `dest` and extract its text; a failure is one line, never an exception."""
    from lab.papers.client import download_pdf, pdf_url

    url = pdf_url(paper)
    try:
        body = download_pdf(url, progress=progress)
    except LabError as e:
        say(progress, f"{dest.relative_to(workspace.root)}: {e}; the note is written without its full text")
        return None

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(body)

    return _store_pdf(workspace, dest, write, progress)


def sync_pdfs(workspace, progress=None) -> int:
    """`lab note --sync --pdf`: fetch the PDF of every arXiv note that has none; return how many were kept."""
    from lab.papers.client import fetch

    if not full_text_on(workspace):
        raise BadInput(f"{workspace.root / 'lab.yaml'}: papers: full_text is false; no PDFs are fetched")
    wanting = [n for n in notes(workspace) if n.arxiv_id and not n.path.with_suffix(".pdf").exists()]
    if not wanting:
        say(progress, "every arXiv note has its PDF")
        return 0
    papers, _ = fetch([n.arxiv_id for n in wanting], progress=progress)
    kept = 0
    for n in wanting:
        paper = papers.get(n.arxiv_id) or _paper_from_note(n)
        if paper.pdf_url and keep_arxiv_pdf(workspace, paper, n.path.with_suffix(".pdf"), progress) is not None:
            kept += 1
    return kept


_ARXIV_IN_TEXT = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5}(?:v\d+)?|[a-z-]+(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)")
_DOI_IN_TEXT = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+[^\s\"<>.,;)])")


def _title_from_page(text: str) -> str | None:
    """The title on a paper's first page: its first line of words, with the next when the title wraps."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not _ARXIV_IN_TEXT.search(line) and len(line.split()) >= 1]
    for i, line in enumerate(lines[:8]):
        if len(line.split()) < 2 or not line[0].isalpha():
            continue
        title = line
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt and not title.endswith((".", ":")) and nxt[0].isupper() and not re.search(r"[\d,∗*†]", nxt) and len(title + nxt) < 200:
            title = f"{title} {nxt}"
        return title[:200]
    return None


def _pdf_metadata(path: Path) -> dict:
    try:
        import pypdf

        info = pypdf.PdfReader(path, strict=False).metadata or {}
        return {k: str(info.get(f"/{k}") or "").strip() for k in ("Title", "Author")}
    except Exception:  # damaged or encrypted: the first page may still say, and if not the file name does
        return {}


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:8]
    return "-".join(words)[:60] or "paper"


def note_pdf(workspace, file, exps=(), tags=(), progress=None) -> NoteResult:
    """`lab note --pdf FILE.pdf`: keep a local PDF as `papers/KEY.pdf` with a note `papers/KEY.md` (title and
    authors from its metadata or first page; an arXiv id or DOI found in its text linked). A PDF whose arXiv id
    has a note already is kept with that note."""
    from lab.core.clock import now_iso
    from lab.core import frontmatter
    from lab.core.fsutil import atomic_write_text
    from lab.papers.ids import parse_id

    src = Path(file).expanduser()
    if not src.is_file():
        raise BadInput(f"{file}: no such file")
    exps, tags = _check_links(workspace, exps, tags)
    probe = pdftext.extract(src)
    if probe["problem"] and probe["problem"].startswith("not a PDF"):
        raise BadInput(f"{file}: {probe['problem']}")
    first = probe["pages"][0] if probe["pages"] else ""
    text = "\n".join(probe["pages"][:2])
    found = probe.get("arxiv_stamp") or (_ARXIV_IN_TEXT.search(text) or [None, None])[1]
    aid = None
    if found:
        try:
            aid = parse_id(found)
        except BadInput:
            aid = None
    doi = _DOI_IN_TEXT.search(text)
    meta_info = _pdf_metadata(src)
    bad_title = not meta_info.get("Title") or meta_info["Title"].lower() in ("untitled", "") or meta_info["Title"].startswith("Microsoft Word")
    title = (None if bad_title else meta_info["Title"]) or probe.get("title") or _title_from_page(first) or src.stem
    authors = [a.strip() for a in re.split(r",|;| and ", meta_info.get("Author") or "") if a.strip()]
    key = aid.key if aid else _slug(title)
    dest_note = workspace.papers_dir / f"{key}.md"
    with lock(workspace):
        if dest_note.exists():
            old = Note.read(dest_note)
            if aid is None and old.meta.get("pdf_file") not in (None, src.name):
                key = f"{key}-{len(list(workspace.papers_dir.glob(key + '*.md'))) + 1}"
                dest_note = workspace.papers_dir / f"{key}.md"
        created = not dest_note.exists()
        if created:
            meta = {"title": title, "authors": authors}
            if aid:
                meta.update(arxiv_id=aid.id, url=f"https://arxiv.org/abs/{aid.id}")
            if doi:
                meta["doi"] = doi.group(1)
            meta.update(pdf_file=src.name, tags=list(tags), experiments=list(exps), added_at=now_iso())
            atomic_write_text(dest_note, frontmatter.render(meta, "\n## Notes\n\n"))
        elif exps or tags:
            from lab.papers.frontedit import updated_text

            old = Note.read(dest_note)
            values = {"tags": _merge(old.tags, tags), "experiments": _merge(old.experiments, exps)}
            new = updated_text(old, values, None)
            if new != old.text:
                atomic_write_text(dest_note, new)
        _sync_linked(workspace, exps, [dest_note])
    say(progress, f"{'wrote' if created else 'kept the PDF with'} {dest_note.relative_to(workspace.root)}: {title}")
    if full_text_on(workspace):
        _store_pdf(workspace, dest_note.with_suffix(".pdf"), lambda tmp: shutil.copyfile(src, tmp), progress)
    return NoteResult(dest_note, aid.id if aid else key, title, created)


def _merge(old: list[str], new) -> list[str]:
    return old + [x for x in new if x not in old]
