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
text and no HTML in it reaches the page.

Refreshing changes only the values of the front matter keys lab owns (tags and experiments are merged,
`added_at` kept) and the abstract block, and it edits them in the text, where they stand
(`update_front_matter`): the user's keys, comments, quoting and line endings (CRLF too) stay byte for byte, so
`room: 0123`, `model_ver: 1.10` or `yes` are never re-serialised. (A round-trip YAML library was the other way;
editing lab's keys in the text needs no new dependency and cannot change what lab does not own.) A key whose
value did not change keeps its text; a note that would not change is not written.

`Note` is the one model of a note: everything that reads notes (links, BibTeX, the book) uses `Note.read`.

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
from lab.papers.markdown import escape_markdown, unescape_markdown  # noqa: F401
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


# Markdown escaping of fetched text: one owner, lab.papers.markdown.


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
    return frontmatter.render(meta, f"\n{_abstract_block(abstract)}\n\n## Notes\n\n")


def _refresh_body(body: str, abstract: str, newline: str = "\n") -> str:
    """Replace the abstract block only; a body without the block (the user removed it) stays as it is."""
    if not _ABSTRACT_RE.search(body):
        return body
    block = _abstract_block(abstract).replace("\n", newline)
    return _ABSTRACT_RE.sub(lambda m: block, body, count=1)


# ---- Editing front matter in place -------------------------------------------------------------------------


def _dump_key(key: str, value) -> str:
    import yaml

    return yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _key_spans(source: str) -> dict[str, tuple[int, int, str]] | None:
    """Where each top-level key of a block mapping sits in `source`: {key: (start, end, trailing comment)}.

    The span runs from the start of the key's line to the end of its value's last line; comment and blank
    lines after the value (PyYAML counts them into a block collection) are left out, so they stay where they
    are. A comment on the value's last line is returned apart, to be kept. None when `source` is not a block
    mapping (a flow mapping `{...}` on one line, say)."""
    import yaml

    node = yaml.compose(source, Loader=yaml.SafeLoader)
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode) or node.flow_style:
        return None
    spans = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            return None
        start = _line_start(source, key_node.start_mark.index)
        end = value_node.end_mark.index
        comment = ""
        if end > 0 and source[end - 1] != "\n":
            eol = source.find("\n", end)
            eol = len(source) if eol < 0 else eol + 1
            rest = source[end:eol]
            if rest.strip().startswith("#"):
                comment = rest.rstrip("\r\n")
            end = eol
        block_scalar = isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")
        if not block_scalar:
            # Give back the trailing comment and blank lines that PyYAML counted into the value.
            while end > start:
                prev = _line_start(source, end - 1)
                line = source[prev:end].strip()
                if prev <= value_node.start_mark.index or (line and not line.startswith("#")):
                    break
                end = prev
        spans[str(key_node.value)] = (start, end, comment)
    return spans


def update_front_matter(source: str, values: dict, order=LAB_KEYS) -> str:
    """`source` (a front matter's YAML text) with the keys in `values` set to their values, and nothing else
    changed: comments, quoting, key order, other keys' text and line endings stay as written.

    A key whose value is already equal keeps its text; a changed key's text is replaced where it stands (a
    comment at the end of its line is kept); a missing key is added after the nearest key before it in
    `order` (at the top when there is none)."""
    import yaml

    newline = "\r\n" if "\r\n" in source else "\n"
    if source and not source.endswith("\n"):
        source += newline
    old = yaml.safe_load(source) or {} if source.strip() else {}
    spans = _key_spans(source) if source.strip() else {}
    if spans is None or not isinstance(old, dict):
        raise BadInput("front matter is not a block mapping of keys to values")
    edits: list[tuple[int, int, str]] = []
    inserts: dict[int, list[str]] = {}
    anchor = 0
    for key in [k for k in order if k in values] + [k for k in values if k not in order]:
        value = values[key]
        if key in spans:
            start, end, comment = spans[key]
            anchor = end
            if key in old and old[key] == value and type(old[key]) is type(value):
                continue
            text = _dump_key(key, value)
            if comment:
                text = text[:-1] + comment + "\n"
            edits.append((start, end, text.replace("\n", newline)))
        else:
            inserts.setdefault(anchor, []).append(_dump_key(key, value).replace("\n", newline))
    for at, texts in inserts.items():
        edits.append((at, at, "".join(texts)))
    # Apply from the end, so that earlier offsets stay right; an insert at a span's end goes after its edit.
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        source = source[:start] + text + source[end:]
    return source


# ---- The note model ----------------------------------------------------------------------------------------


def _safe_load(source: str, where: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        meta = yaml.load(source, Loader=loader)
    except yaml.YAMLError:
        # The pure-Python parser names line and column the same way for everyone.
        return frontmatter.parse(f"---\n{source}---\n", where=where)[0]
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: front matter must be a mapping of keys to values")
    return meta


@dataclass
class Note:
    """One paper note, `papers/KEY.md`, as its file holds it: the one model of a note that lab's readers share.

    `Note.read(path)` reads it (BadInput naming the file when its front matter is not valid YAML); a file
    without front matter gives `meta == {}` and the whole text as body. Public attributes:

    - `path`, `key` (the file stem, e.g. `1605.08386` or `hep-th_9901001`), `text` (the file as read: CRLF kept);
    - `meta`: the front matter as a dict (lab's keys LAB_KEYS and the user's own);
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
    front: str | None = None  # the front matter's YAML source, as written

    @classmethod
    def read(cls, path) -> "Note":
        path = Path(path)
        with open(path, encoding="utf-8", newline="") as f:
            return cls.parse(f.read(), path)

    @classmethod
    def parse(cls, text: str, path) -> "Note":
        source, body = frontmatter.split(text)
        if source is None:
            return cls(Path(path), {}, text, text, None)
        return cls(Path(path), _safe_load(source, str(path)), body, text, source)

    @property
    def key(self) -> str:
        return self.path.stem

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    @property
    def arxiv_id(self) -> str | None:
        value = self.meta.get("arxiv_id")
        return str(value) if value not in (None, "") else None

    @property
    def title(self) -> str | None:
        value = self.meta.get("title")
        return str(value) if value not in (None, "") else None

    @property
    def published(self) -> str | None:
        value = self.meta.get("published")
        return str(value) if value not in (None, "") else None

    @property
    def url(self) -> str | None:
        value = self.meta.get("url")
        return str(value) if value not in (None, "") else None

    @property
    def authors(self) -> list[str]:
        return _as_list(self.meta.get("authors"))

    @property
    def experiments(self) -> list[str]:
        return _as_list(self.meta.get("experiments"))

    @property
    def tags(self) -> list[str]:
        return _as_list(self.meta.get("tags"))

    @property
    def abstract(self) -> str | None:
        return abstract_of(self.body)

    @property
    def notes_markdown(self) -> str:
        rest = _ABSTRACT_RE.sub("", self.body, count=1).strip()
        rest = re.sub(r"\A## Notes[ \t]*(?:\r?\n|\Z)", "", rest)
        return rest.strip()

    def updated(self, values: dict, abstract: str | None) -> str:
        """The file's new text: lab's keys `values` set in place in the front matter (all other text as
        written), and the abstract block replaced when `abstract` is not None."""
        nl = self.newline
        body = self.body if abstract is None else _refresh_body(self.body, abstract, nl)
        if self.front is None:
            return frontmatter.render(values, "").replace("\n", nl) + body
        try:
            front = update_front_matter(self.front, values)
        except BadInput as e:
            raise BadInput(f"{self.path}: {e}") from None
        lines = self.text.splitlines(keepends=True)
        opening = lines[0]
        closing_at = len(opening) + len(self.front)
        closing = self.text[closing_at : len(self.text) - len(self.body)]
        return opening + front + closing + body


def write_note(workspace, paper, exps=(), tags=(), now: str | None = None) -> NoteResult:
    """Create or refresh the note of `paper` (atomically), merging links and tags into what is there.

    A refresh changes only lab's keys, in place, and the abstract block (see `Note.updated`)."""
    from lab.core.clock import now_iso

    aid = parse_id(paper.arxiv_id)
    path = note_path(workspace, aid)
    old = Note.read(path) if path.exists() else None
    values = _lab_meta(paper, old.meta if old else {}, list(exps), list(tags), now or now_iso())
    text = render_note(values, paper.abstract) if old is None else old.updated(values, paper.abstract)
    if old is None or text != old.text:
        atomic_write_text(path, text)
        refresh_paths(workspace.root, [path])
    return NoteResult(path, aid.id, paper.title, created=old is None)


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
    aids = parse_ids(ids, progress=progress)
    if not aids:
        raise BadInput("give at least one arXiv id, e.g. lab note 2301.12345")
    exps, tags = _check_links(workspace, exps, tags)
    # Refuse before sending anything when an existing note cannot be read back, or not edited in place.
    existing = {a.id: Note.read(note_path(workspace, a)) for a in aids if note_path(workspace, a).exists()}
    for old in existing.values():
        if old.front is not None:
            try:
                _key_spans_or_refuse(old)
            except BadInput as e:
                raise BadInput(f"{old.path}: {e}") from None
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
    with _lock(workspace):
        for aid in aids:
            if aid.id in papers:
                result = write_note(workspace, papers[aid.id], exps, tags)
                written.append(result)
                progress and progress(f"{'wrote' if result.created else 'refreshed'} {result.path.relative_to(workspace.root)}: {result.title}")
        linked = set(exps)
        for result in written:
            linked.update(Note.read(result.path).experiments)
        for name in sorted(linked, key=natural_key):
            if workspace.experiment(name, must_exist=False).dir.is_dir():
                sync_report(workspace, name)
    if unknown:
        raise NotFoundOnArxiv(f"not found on arXiv: {', '.join(unknown)}", written)
    return written


def _key_spans_or_refuse(old: Note) -> None:
    if old.front.strip() and _key_spans(old.front) is None:
        raise BadInput("front matter is not a block mapping of keys to values; lab cannot update it in place")


def _paper_from_note(old: Note):
    from lab.papers.client import Paper

    meta = old.meta
    return Paper(
        **{k: meta.get(k) for k in ("arxiv_id", "version", "title", "published", "updated", "doi", "journal_ref", "comment", "url", "pdf_url")},
        authors=_as_list(meta.get("authors")),
        primary_category=meta.get("primary_category") or "",
        categories=_as_list(meta.get("categories")),
        abstract=old.abstract or "",
    )


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


# Control symbols LaTeX knows (`\&`, `\"o`, `\,` ...): a backslash before one of these is kept as written.
_CONTROL_SYMBOLS = set("&%$#_{}'\"`^~=.,;:!\\ ()[]-/@|<>*+")
_MATH_PAIRS = {"\\(": "\\)", "\\[": "\\]"}


def _math_end(text: str, i: int) -> int | None:
    """Where the math that starts at `text[i]` (`$`, `$$`, `\\(` or `\\[`) ends (the index after it), or None.

    A `$` opens math only with a non-space right after it and closes it only with a non-space right before it
    and no digit right after it (pandoc's rule), so `Costs below $5 per GPU-hour and $10 a day` is text."""
    pair = text[i : i + 2]
    if pair in _MATH_PAIRS:
        end = text.find(_MATH_PAIRS[pair], i + 2)
        return None if end < 0 else end + 2
    if pair == "$$":
        end = text.find("$$", i + 2)
        return None if end < 0 or end == i + 2 else end + 2
    if i + 1 >= len(text) or text[i + 1].isspace():
        return None
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "$":
            if not text[j - 1].isspace() and not (j + 1 < len(text) and text[j + 1].isdigit()):
                return j + 1
        j += 1
    return None


def _unmatched_braces(text: str) -> set[int]:
    """Positions of braces without a partner, counted as BibTeX counts them: every brace, escaped or not."""
    stack, unmatched = [], set()
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                stack.pop()
            else:
                unmatched.add(i)
    return unmatched | set(stack)


_LONE_BRACE = {("{", False): "\\textbraceleft{}", ("}", False): "\\textbraceright{}", ("{", True): "\\lbrace ", ("}", True): "\\rbrace "}


def _with_lone_braces(segment: str, start: int, unmatched: set[int], math: bool) -> str:
    """`segment` (at `start` in the text) with each brace BibTeX would find unbalanced (and a backslash before
    it) written as a command without braces of its own."""
    out, k = [], 0
    while k < len(segment):
        pos = start + k
        if segment[k] == "\\" and k + 1 < len(segment) and pos + 1 in unmatched:
            out.append(_LONE_BRACE[(segment[k + 1], math)])
            k += 2
        elif pos in unmatched:
            out.append(_LONE_BRACE[(segment[k], math)])
            k += 1
        else:
            out.append(segment[k])
            k += 1
    return "".join(out)


def _bib_value(text: str) -> str:
    """A field value that LaTeX and BibTeX read as the text it is.

    Balanced math (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`), LaTeX commands (`\\alpha`, `{\\em x}`) and control
    symbols (`\\"o`, `\\&`) are kept as written; outside math `_ % & # $` get a backslash, `^` becomes `\\^{}`,
    a backslash that starts nothing (a trailing one, say) becomes `\\textbackslash{}`, and a brace without
    its partner (BibTeX counts escaped braces too) becomes `\\textbraceleft{}` (`\\lbrace` in math), so every
    entry keeps BibTeX's braces balanced."""
    text = str(text)
    unmatched = _unmatched_braces(text)
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" or text[i : i + 2] in _MATH_PAIRS:
            end = _math_end(text, i)
            if end is not None:
                out.append(_with_lone_braces(text[i:end], i, unmatched, math=True))
                i = end
                continue
            if ch == "$":
                out.append("\\$")
                i += 1
                continue
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt.isascii() and nxt.isalpha():
                j = i + 1
                while j < len(text) and text[j].isascii() and text[j].isalpha():
                    j += 1
                out.append(text[i:j])
                i = j
            elif nxt in "{}" and nxt and i + 1 in unmatched:
                out.append(_LONE_BRACE[(nxt, False)])
                i += 2
            elif nxt and nxt in _CONTROL_SYMBOLS:
                out.append(text[i : i + 2])
                i += 2
            else:
                out.append("\\textbackslash{}")
                i += 1
            continue
        if ch in "_%&#":
            out.append("\\" + ch)
        elif ch == "^":
            out.append("\\^{}")
        elif ch in "{}" and i in unmatched:
            out.append(_LONE_BRACE[(ch, False)])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


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
