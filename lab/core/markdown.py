"""Markdown escaping of text lab did not write (titles, authors, abstracts, feed items, hand-edited values): the
one escaper that paper notes, the runs table and the lab book all use.

`escape_markdown` makes text show as itself on one Markdown line under CommonMark and Python-Markdown (mkdocs,
ProperDocs, Zensical) alike: whitespace collapsed, `&`, `<` and `>` as entities (Python-Markdown has no `\\<`), and
every character that could start emphasis, code, a link, an image, an attribute list, a table cell, a heading, a
quote or a list backslash-escaped. `unescape_markdown` gives the text back (for readers of a note's abstract).
"""

from __future__ import annotations

import html
import re

# Punctuation a backslash escapes; before a letter (LaTeX `\alpha`) a backslash is already literal.
_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")
# Anywhere on the line; `_` only at a word's edge (inside a word, as in `alpha_1`, neither flavour reads it).
_SPECIAL = re.compile(r"([`*{}\[\]|#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
# Markup only at the start of a line, and only before a space: a list item (`- `, `+ `), an ordered one (`1. `).
_LINE_START = re.compile(r"^([+-])(?=\s|$)")
_ORDERED = re.compile(r"^(\d+)([.)])(?=\s|$)")
_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def escape_markdown(text) -> str:
    """`text` made inert inside a Markdown line (a paragraph, a table cell, link text, a heading)."""
    text = html.escape(" ".join(str(text).split()), quote=False)
    text = _BACKSLASH.sub(r"\\\\", text)
    text = _SPECIAL.sub(r"\\\1", text)
    text = _LINE_START.sub(r"\\\1", text)
    return _ORDERED.sub(r"\1\\\2", text)


def unescape_markdown(text: str) -> str:
    """Undo `escape_markdown` (whitespace stays collapsed)."""
    text = _UNESCAPE.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
