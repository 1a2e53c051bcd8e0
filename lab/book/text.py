"""Small pieces of the book's Markdown and HTML: escaping fetched text (`md` in Markdown, `h` in raw HTML), links
only to http(s) URLs, front matter, tables, dates.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from lab.core.markdown import escape_markdown


def str_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [" ".join(str(v).split()) for v in value if v is not None and str(v).strip()]
    return [" ".join(str(value).split())]



def md(text) -> str:
    """Fetched text as inert Markdown on one line (lab.core.markdown owns the escaping)."""
    return escape_markdown(text)


def h(text) -> str:
    return html.escape(" ".join(str(text).split()), quote=True)


def safe_url(url) -> str | None:
    """`url` when it is a plain http(s) URL, else None (no javascript:, data:, or odd characters)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def ext_link(url: str, label: str) -> str:
    """An external link as inline HTML; `url` must have passed safe_url."""
    return f'<a href="{html.escape(url, quote=True)}">{h(label)}</a>'


def front(title: str) -> str:
    """Front matter for a generated page; the title is HTML-escaped (themes print it unescaped)."""
    import yaml

    title = html.escape(" ".join(title.split()), quote=True)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "---\n" + yaml.dump({"title": title}, Dumper=dumper, allow_unicode=True, width=10_000) + "---\n\n"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells that are already escaped Markdown."""
    if not rows:
        return ""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


# A list longer than this is kept out of the search index (every entry's own page is in it): Zensical refuses a
# page section over 16,384 words, and a search for a word would otherwise find the index beside the page.
SEARCH_MAX_ROWS = 200


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A raw HTML table of cells that are already safe HTML (one line: Markdown leaves it alone); a long one is
    marked `data-search-exclude` (Material, Zensical)."""
    if not rows:
        return ""
    # Spaces between cells: the search index takes the text of raw HTML as it is, and would run words together.
    head = " ".join(f"<th>{c}</th>" for c in header)
    body = " ".join("<tr> " + " ".join(f"<td>{c}</td>" for c in r) + " </tr>" for r in rows)
    table = f"<table><thead><tr> {head} </tr></thead><tbody> {body} </tbody></table>"
    return (f"<div data-search-exclude>{table}</div>" if len(rows) > SEARCH_MAX_ROWS else table) + "\n"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def date(iso) -> str:
    return str(iso or "")[:10]


def when(iso) -> str:
    text = str(iso or "")
    return text[:16].replace("T", " ") if text else ""
