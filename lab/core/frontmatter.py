"""Markdown files with YAML front matter: reports and paper notes. The one reader of front matter in lab
(the index, the book, notes and reports all read it here)."""

from __future__ import annotations

from pathlib import Path

from lab.errors import BadInput

_FENCE = "---"


def split(text: str) -> tuple[str | None, str]:
    """Split a document into its front matter source (None if it has none) and its body."""
    if not text.startswith(_FENCE):
        return None, text
    lines = text.splitlines(keepends=True)
    if lines[0].rstrip("\r\n") != _FENCE:
        return None, text
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") in (_FENCE, "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


def parse(text: str, where: str = "") -> tuple[dict, str]:
    """Return (front matter as a dict, body). A document without front matter gives ({}, text); front matter that
    is not YAML, or not a mapping, is BadInput naming `where`, line and column."""
    source, body = split(text)
    if source is None:
        return {}, text
    return load(source, where), body


def parse_lenient(text: str, where: str = "") -> tuple[dict, str, str | None]:
    """Like `parse`, for readers that must go on (the search index): bad front matter gives ({}, the whole text,
    the problem as `parse` words it) instead of an error."""
    try:
        meta, body = parse(text, where)
    except BadInput as e:
        return {}, text, str(e)
    return meta, body, None


def load(source: str, where: str) -> dict:
    """The front matter's YAML `source` as a dict; BadInput naming `where`, line and column when it is not YAML
    or not a mapping."""
    import yaml

    # libyaml when present: 10,000 notes take seconds, not minutes. It accepts what the pure-Python loader
    # accepts; on an error the pure-Python loader says where, in its own words.
    fast = getattr(yaml, "CSafeLoader", None)
    try:
        meta = yaml.load(source, Loader=fast or yaml.SafeLoader)
    except yaml.YAMLError as e:
        if fast is None:
            raise BadInput(_yaml_problem(e, where)) from None
        try:
            meta = yaml.safe_load(source)
        except yaml.YAMLError as e:
            raise BadInput(_yaml_problem(e, where)) from None
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: front matter must be a mapping of keys to values")
    return meta


def _yaml_problem(e, where: str) -> str:
    mark = getattr(e, "problem_mark", None)
    pos = f":{mark.line + 2}:{mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}{pos}: front matter is not valid YAML: {problem}"


def read(path: Path) -> tuple[dict, str]:
    """Read a Markdown file and return (front matter, body)."""
    from lab.core.fsutil import read_text

    return parse(read_text(path), where=str(path))


def render(meta: dict, body: str) -> str:
    """Compose front matter and body into one document."""
    import yaml

    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return f"{_FENCE}\n{head}{_FENCE}\n{body}"
