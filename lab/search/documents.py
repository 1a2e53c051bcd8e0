"""What the search index holds for each kind of file: experiments' reports, settings, runs, paper notes, feeds.

`documents(root, rel)` reads one file and returns its documents (dicts with type, key, title, section, path,
exp, tags, exps, info and the searched fields title/heading/meta/body); which files are indexed, and of which
kind, is lab.core.layout's. Files are read as their owners write them (lab.core.workspace, lab.core.settings,
lab.runs.record, notes as lab.core.note models them, the feed puller); a malformed file is indexed as its raw
text, with a warning, and never stops indexing. Imported only when files changed.

Long text is cut into passages (lab.core.passages), each a document with the key and path of the whole: a
note's body, a report's sections, and a paper's PDF (`papers/KEY.pdf` beside `papers/KEY.md`), whose passages
carry their page (`info["page"]`) and section heading. A PDF's text comes from lab.core.pdftext's cache; PDFs
not extracted yet are extracted by a child process first (`prepare`), so no search imports pypdf. The text lab
itself puts into a new report (its template's prompts) is not indexed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.core import frontmatter
from lab.core.layout import kind_of
from lab.core.passages import VERSION, pdf_passages, split

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_md = None


def documents(root: Path, rel: str, warn=None) -> list[dict]:
    """The documents of file `rel` under `root` ([] for a file that holds none or vanished meanwhile)."""
    kind = kind_of(rel)
    if kind == "fulltext":
        return _fulltext(root, rel, warn or (lambda message: None))
    try:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    warn = warn or (lambda message: None)
    if kind == "report":
        return _report(rel, text, warn)
    if kind == "setting":
        return _setting(root, rel, text, warn)
    if kind == "run":
        return _run(rel, text, warn)
    if kind == "paper":
        return _paper(rel, text, warn)
    if kind == "feed":
        return _feed(rel, text, warn)
    return []


def prepare(root: Path, rels: list[str], warn=None) -> None:
    """Before `documents` reads them: extract, in a child process, the PDFs among `rels` with no kept text."""
    from lab.core import pdftext

    pdfs = [r for r in rels if kind_of(r) == "fulltext" and not pdftext.fresh(root, r) and (root / r).is_file()]
    problem = pdftext.extract_in_child(root, pdfs)
    if problem and warn:
        warn(problem)


def _doc(type, key, title, path, *, exp=None, section=None, tags=(), exps=(), info=None, heading="", meta="", body="", title_text=None):
    return {
        "type": type, "key": key, "title": title, "section": section, "path": path, "exp": exp,
        "tags": list(tags), "exps": list(exps), "info": info or {},
        "title_text": title if title_text is None else title_text,
        "heading": heading, "meta": meta, "body": body,
    }


def _front(rel: str, text: str, warn) -> tuple[dict, str]:
    """Front matter and body; invalid front matter is a warning, and the whole text is then the body."""
    meta, body, problem = frontmatter.parse_lenient(text, where=rel)
    if problem:
        warn(f"{problem}; indexed as plain text")
    return meta, body


def _strs(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _slug(heading: str, seen: dict) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-") or "section"
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


def _report(rel: str, text: str, warn) -> list[dict]:
    """One document for the experiment (title, tags, command, text before the first heading), one per section."""
    global _md
    exp = rel.split("/")[1]
    meta, body = _front(rel, text, warn)
    title = str(meta.get("title") or exp)
    tags = _strs(meta.get("tags"))
    command = meta.get("command") or ""
    if _md is None:
        from markdown_it import MarkdownIt

        _md = MarkdownIt("commonmark")
    lines = body.splitlines()
    tokens = _md.parse(body)
    heads = []  # (first line, level, heading text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            inline = tokens[i + 1].content if i + 1 < len(tokens) else ""
            heads.append((tok.map[0], int(tok.tag[1:]), inline.strip(), tok.map[1]))
    path = f"experiments/{exp}/report.md"
    preamble = _without_template("\n".join(lines[: heads[0][0]] if heads else lines))
    docs = [
        _doc("experiment", exp, title, path, exp=exp, tags=tags, info={"tags": tags},
             meta=" ".join([exp, *tags, str(command)]), body=_COMMENT.sub(" ", preamble))
    ]
    trail: list[tuple[int, str]] = []
    seen: dict = {}
    for n, (_start, level, heading, body_start) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        while trail and trail[-1][0] >= level:
            trail.pop()
        if not (level == 1 and heading == title):  # the report's `# title` is no section of its own
            trail.append((level, heading))
        slug = _slug(heading, seen)
        section_text = _without_template(_COMMENT.sub(" ", "\n".join(lines[body_start:end]))).strip()
        if not section_text:  # a heading alone (the report's `# title`), or only the template's prompt
            continue
        section = " › ".join(h for _, h in trail) or heading
        for part in split(section_text):
            docs.append(
                _doc("experiment", f"{exp}#{slug}", title, f"{path}#{slug}", exp=exp, section=section, tags=tags,
                     info={"tags": tags}, title_text="", heading=section, body=part)
            )
    return docs


_template_lines: set[str] | None = None


def _without_template(text: str) -> str:
    """`text` without the lines that lab's report template wrote (its prompts: "What do we want to learn, and
    why?"): a new report's sections hold nothing the researcher wrote."""
    global _template_lines
    if _template_lines is None:
        from lab.core.workspace import REPORT_TEMPLATE

        _, body = frontmatter.split(REPORT_TEMPLATE)
        _template_lines = {
            line.strip() for line in body.splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "<!--")) and "{" not in line
        }
    if not any(line.strip() in _template_lines for line in text.splitlines()):
        return text
    return "\n".join(line for line in text.splitlines() if line.strip() not in _template_lines)


class _Literal(float):
    """A JSON number as the user wrote it (`2e-5`), still a float."""

    def __new__(cls, text):
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def _flatten(value, prefix: str, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out.append(f"{prefix}={_scalar(value)}")


def _scalar(value) -> str:
    if isinstance(value, _Literal):
        python = repr(float(value))
        return value.text if python == value.text else f"{value.text} {python}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return " ".join(_scalar(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def flatten(value) -> str:
    """Settings as `key.sub=value` lines (floats both as written and as Python prints them)."""
    out: list[str] = []
    _flatten(value, "", out)
    return "\n".join(out)


def _setting(root: Path, rel: str, text: str, warn) -> list[dict]:
    _, exp, _, name = rel.split("/")
    stem = name.rsplit(".", 1)[0]
    key = f"{exp}/{stem}"
    body, info = "", {}
    try:
        if name.endswith(".jsonnet"):
            from lab.core.settings import resolve_sweep_or_setting

            value = resolve_sweep_or_setting(root / rel, where=rel)  # a sweep: each of its settings
            body = "\n".join(flatten(v) for v in (value if isinstance(value, list) else [value])) + "\n" + text
        else:
            value = json.loads(text, parse_float=_Literal)
            if not isinstance(value, dict):
                raise ValueError("a setting must be a JSON object")
            body = flatten(value)
    except Exception as e:  # malformed: the raw text is still worth finding
        if isinstance(e, json.JSONDecodeError):
            message = f"{rel}:{e.lineno}:{e.colno}: {e.msg}"
        else:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            message = message if message.startswith(rel) else f"{rel}: {message}"
        warn(f"{message}; indexed as raw text")
        body, info = text, {"error": message}
    return [_doc("setting", key, key, rel, exp=exp, info=info, meta=f"{exp} {stem}", body=body)]


def _run(rel: str, text: str, warn) -> list[dict]:
    _, exp, _, name = rel.split("/")
    stem = name[: -len(".json")]
    try:
        record = json.loads(text, parse_float=_Literal)
    except ValueError:
        warn(f"{rel}: not a JSON run record; skipped")
        return []
    if not isinstance(record, dict):
        return []
    state = str(record.get("state") or "unknown")
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    settings = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    lines = [f"state={state}"]
    for field in ("exit_code", "attempt", "executor", "started_at", "ended_at", "duration_s", "error"):
        if record.get(field) is not None:
            lines.append(f"{field}={_scalar(record[field])}")
    if isinstance(record.get("argv"), list):
        lines.append("argv=" + " ".join(map(str, record["argv"])))
    body = "\n".join(lines) + "\n" + flatten(metrics) + "\n" + flatten(settings)
    key = f"{exp}/{stem}"
    info = {"state": state, "metrics": {k: float(v) if isinstance(v, _Literal) else v for k, v in metrics.items()}}
    return [_doc("run", key, f"{key} ({state})", rel, exp=exp, info=info, meta=f"{exp} {stem} {state}", body=body)]


def _paper(rel: str, text: str, warn) -> list[dict]:
    """The note: one document with its title, authors and links, then one per further passage of its body."""
    note = _parsed(rel, text)
    if note.problem:
        warn(f"{note.problem}; indexed as plain text")
    meta, body = note.meta, note.body
    headings = _MD_HEADING.findall(body)
    title = str(note.title or (headings[0] if headings else "") or Path(rel).stem).strip()
    key, info = _paper_key(rel, note)
    other = [str(meta[k]) for k in ("arxiv_id", "url", "link", "published", "year", "venue") if meta.get(k)]
    heading = "\n".join(h for h in headings if h.strip() != title)
    parts = split(_COMMENT.sub(" ", body)) or [""]
    docs = [
        _doc("paper", key, title, rel, tags=note.tags, exps=note.experiments, info=info, heading=heading,
             meta=" ".join([*note.authors, *note.tags, *note.experiments, *other]), body=parts[0])
    ]
    for part in parts[1:]:
        docs.append(_doc("paper", key, title, rel, tags=note.tags, exps=note.experiments, info=info, title_text="", body=part))
    return docs


_notes: dict = {}  # (path, text) -> Note: a paper's note is read for itself and again for its PDF's passages


def _parsed(rel: str, text: str):
    """The note `text` at `rel`, parsed once (YAML is most of the cost of indexing a note)."""
    from lab.core.note import Note

    note = _notes.get((rel, text))
    if note is None:
        if len(_notes) >= 64:
            _notes.clear()
        note = _notes[rel, text] = Note.parse(text, rel, lenient=True)
    return note


def _paper_key(rel: str, note) -> tuple[str, dict]:
    stem = rel[len("papers/") :].rsplit(".", 1)[0]
    info = {"authors": note.authors, "arxiv_id": note.arxiv_id, "tags": note.tags, "experiments": note.experiments}
    return (note.arxiv_id or "").strip() or stem, info


def _fulltext(root: Path, rel: str, warn) -> list[dict]:
    """A paper's PDF: one document per passage, with its page and section, under the note's key and path."""
    from lab.core import pdftext
    from lab.core.note import Note

    entry = pdftext.cached(root, rel)
    if entry is None:
        if (root / rel).is_file():
            warn(f"{rel}: its text is not extracted yet; indexed on the next search")
        return []
    note_rel = rel.rsplit(".", 1)[0] + ".md"
    try:
        note = _parsed(note_rel, (root / note_rel).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        note = Note.parse("", note_rel)
    key, info = _paper_key(note_rel, note)
    title = str(note.title or Path(rel).stem)
    tags, exps = note.tags, note.experiments
    kept = entry.get("passages")
    if isinstance(kept, dict) and kept.get("version") == VERSION and isinstance(kept.get("cut"), list):
        cut = kept["cut"]  # as lab.core.pdftext kept them when it extracted the text
    else:  # kept by an older lab: cut now (the next extraction keeps them)
        cut = pdf_passages(entry.get("pages") or [])
    docs = []
    for page, section, text in (c for c in cut if isinstance(c, list) and len(c) == 3):
        docs.append(
            _doc("paper", key, title, note_rel, section=section, tags=tags, exps=exps,
                 info={**info, "page": page, "pdf": rel}, title_text="", heading=section or "", body=text)
        )
    return docs


def _feed(rel: str, text: str, warn) -> list[dict]:
    feed = rel.split("/")[-1][: -len(".jsonl")]
    docs, bad = [], 0
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(item, dict):
            bad += 1
            continue
        authors = _strs(item.get("authors"))
        key = str(item.get("id") or item.get("arxiv_id") or item.get("link") or f"{feed}:{n}")
        info = {k: item.get(k) for k in ("link", "published", "arxiv_id", "feed", "added_at")}
        info["authors"] = authors
        meta = " ".join([*authors, *(str(item[k]) for k in ("link", "arxiv_id", "feed") if item.get(k))])
        docs.append(_doc("feed", key, str(item.get("title") or key), f"{rel}:{n}", info=info, meta=meta,
                         body=str(item.get("summary") or "")))
    if bad:
        warn(f"{rel}: {bad} line(s) are not JSON objects; skipped")
    return docs
