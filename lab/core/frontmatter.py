"""Markdown files with YAML front matter: reports and paper notes."""

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
    """Return (front matter as a dict, body). A document without front matter gives ({}, text)."""
    import yaml

    source, body = split(text)
    if source is None:
        return {}, text
    try:
        meta = yaml.safe_load(source) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f":{mark.line + 2}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}{pos}: front matter is not valid YAML: {problem}") from None
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: front matter must be a mapping of keys to values")
    return meta, body


def read(path: Path) -> tuple[dict, str]:
    """Read a Markdown file and return (front matter, body)."""
    from lab.core.fsutil import read_text

    return parse(read_text(path), where=str(path))


def render(meta: dict, body: str) -> str:
    """Compose front matter and body into one document."""
    import yaml

    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return f"{_FENCE}\n{head}{_FENCE}\n{body}"
