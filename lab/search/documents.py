"""What the search index holds for each kind of file: experiments' reports, settings, runs, paper notes, feeds.

`documents(root, rel)` reads one file and returns its documents (dicts with type, key, title, section, path,
exp, tags, exps, info and the searched fields title/heading/meta/body); which files are indexed, and of which
kind, is lab.core.layout's. Files are read as their owners write them (lab.core.workspace, lab.core.settings,
lab.runs.record, `lab note`, the feed puller); a malformed file is indexed as its raw text, with a warning, and
never stops indexing. Imported only when files changed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.core import frontmatter
from lab.core.layout import kind_of

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_md = None


def documents(root: Path, rel: str, warn=None) -> list[dict]:
    """The documents of file `rel` under `root` ([] for a file that holds none or vanished meanwhile)."""
    kind = kind_of(rel)
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
    preamble = "\n".join(lines[: heads[0][0]] if heads else lines)
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
        section_text = _COMMENT.sub(" ", "\n".join(lines[body_start:end])).strip()
        if not section_text:  # a heading alone (the report's `# title`): nothing to point at
            continue
        section = " › ".join(h for _, h in trail) or heading
        docs.append(
            _doc("experiment", f"{exp}#{slug}", title, f"{path}#{slug}", exp=exp, section=section, tags=tags,
                 info={"tags": tags}, title_text="", heading=section, body=section_text)
        )
    return docs


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
    meta, body = _front(rel, text, warn)
    headings = _MD_HEADING.findall(body)
    stem = rel[len("papers/") : -len(".md")]
    title = str(meta.get("title") or (headings[0] if headings else "") or Path(rel).stem).strip()
    authors = _strs(meta.get("authors"))
    tags = _strs(meta.get("tags"))
    exps = _strs(meta.get("experiments"))
    arxiv_id = str(meta.get("arxiv_id") or "").strip()
    info = {"authors": authors, "arxiv_id": arxiv_id or None, "tags": tags, "experiments": exps}
    other = [str(meta[k]) for k in ("arxiv_id", "url", "link", "published", "year", "venue") if meta.get(k)]
    heading = "\n".join(h for h in headings if h.strip() != title)
    return [
        _doc("paper", arxiv_id or stem, title, rel, tags=tags, exps=exps, info=info, heading=heading,
             meta=" ".join([*authors, *tags, *exps, *other]), body=_COMMENT.sub(" ", body))
    ]


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
