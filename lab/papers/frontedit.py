"""Editing a note's front matter in place: only the values of the keys lab owns change, where they stand.

Refreshing a note changes only the values of the front matter keys lab owns (tags and experiments are merged,
`added_at` kept) and the abstract block, and it edits them in the text, where they stand
(`update_front_matter`): the user's keys, comments, quoting and line endings (CRLF too) stay byte for byte, so
`room: 0123`, `model_ver: 1.10` or `yes` are never re-serialised. (A round-trip YAML library was the other way;
editing lab's keys in the text needs no new dependency and cannot change what lab does not own.) A key whose
value did not change keeps its text; a note that would not change is not written.
"""

from __future__ import annotations

from lab.core import frontmatter
from lab.core.note import ABSTRACT_RE, Note, abstract_block
from lab.errors import BadInput

LAB_KEYS = (
    "arxiv_id", "version", "title", "authors", "published", "updated", "primary_category", "categories",
    "doi", "journal_ref", "comment", "url", "pdf_url", "tags", "experiments", "added_at",
)


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

    newline = "\r\n" if "\r\n" in source else "\n"
    if source and not source.endswith("\n"):
        source += newline
    try:
        old = frontmatter.load(source, "front matter") if source.strip() else {}
    except BadInput:
        old = None  # not a mapping: refused below, in the words of this function
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


def refuse_unless_editable(note: Note) -> None:
    """BadInput when `note`'s front matter cannot be edited in place (a flow mapping on one line, say)."""
    if note.front is not None and note.front.strip() and _key_spans(note.front) is None:
        raise BadInput(f"{note.path}: front matter is not a block mapping of keys to values; lab cannot update it in place")


def _refresh_body(body: str, abstract: str, newline: str = "\n") -> str:
    """Replace the abstract block only; a body without the block (the user removed it) stays as it is."""
    if not ABSTRACT_RE.search(body):
        return body
    block = abstract_block(abstract).replace("\n", newline)
    return ABSTRACT_RE.sub(lambda m: block, body, count=1)


def updated_text(note: Note, values: dict, abstract: str | None) -> str:
    """`note`'s new text: lab's keys `values` set in place in the front matter (all other text as written), and
    the abstract block replaced when `abstract` is not None."""
    nl = note.newline
    body = note.body if abstract is None else _refresh_body(note.body, abstract, nl)
    if note.front is None:
        return frontmatter.render(values, "").replace("\n", nl) + body
    try:
        front = update_front_matter(note.front, values)
    except BadInput as e:
        raise BadInput(f"{note.path}: {e}") from None
    lines = note.text.splitlines(keepends=True)
    opening = lines[0]
    closing_at = len(opening) + len(note.front)
    closing = note.text[closing_at : len(note.text) - len(note.body)]
    return opening + front + closing + body
