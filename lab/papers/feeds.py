"""RSS/Atom feeds that bring new papers in: `feeds/feeds.json` and `feeds/items/NAME.jsonl` in the lab root.

`feeds/feeds.json` is a JSON list of feeds, each an object with `name`, `url`, `category` (for arXiv category
feeds, else null), `etag`, `modified`, `added_at`, `last_pull`, `last_error` and `items` (the number of lines in
its items file). `feeds/items/NAME.jsonl` holds one JSON object per line with the keys in ITEM_KEYS; pulls only
append to it, and an entry already there (same `id`) is never added again. Item `id`s are `arXiv:ID` (unversioned)
for arXiv papers, else the entry's own id, else its link, else its title, else (an RSS 2.0 item with only a
description) `sha256:` and a hash of the description.

Pulls send conditional requests (If-None-Match / If-Modified-Since from the last answer's ETag and
Last-Modified); a 304 adds nothing. The HTTP request is lab's own (urllib, with a timeout, which feedparser's
fetcher lacks); feedparser parses the bytes, decoding them by the HTTP charset, the XML declaration, or, for
feeds that declare neither, the `chardet` detector, and resolving relative links against the feed's URL.

Titles, summaries and authors are stored as plain text: what the feed marks as HTML has its tags stripped
(style and script contents dropped) and entities decoded; what it marks as plain text is kept as it is
(`History of the <blink> tag`). Only http(s) links are stored (`link` is null otherwise).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

from lab.papers.ids import category_of, from_entry_id
from lab.errors import BadInput, LabError
from lab.core import layout
from lab.core.fsutil import atomic_write_json, atomic_write_text, read_jsonl, read_text
from lab.core.workspace import check_name

ARXIV_RSS_URL = "https://rss.arxiv.org/rss/"
ITEM_KEYS = ("id", "title", "authors", "summary", "link", "published", "arxiv_id", "feed", "added_at")
FEED_KEYS = ("name", "url", "category", "etag", "modified", "added_at", "last_pull", "last_error", "items")
MAX_SUMMARY = 20000


# ---- plain text from HTML ----------------------------------------------------------------------------------


class _TextOnly(HTMLParser):
    _SKIP = {"script", "style", "head", "title", "noscript", "template", "svg"}
    _BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "section", "article"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def plain_text(html: str | None) -> str:
    """Text of an HTML fragment, without tags, comments, styles or scripts; whitespace normalised."""
    if not html:
        return ""
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    return re.sub(r"\s+", " ", "".join(parser.parts)).strip()


# ---- the feed list -----------------------------------------------------------------------------------------


@dataclass
class PullResult:
    name: str
    added: int = 0
    total: int = 0
    not_modified: bool = False
    error: str | None = None
    new_items: list[dict] = field(default_factory=list)


class Feeds:
    """The feeds of one lab."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.dir = workspace.root / layout.FEEDS
        self.list_path = self.dir / "feeds.json"
        self.items_dir = workspace.root / layout.FEED_ITEMS

    def _lock(self):
        from lab.core.flock import locked

        return locked(self.workspace.state_dir / "feeds.lock")

    def load(self) -> list[dict]:
        if not self.list_path.exists():
            return []
        try:
            data = json.loads(read_text(self.list_path))
        except json.JSONDecodeError as e:
            raise BadInput(f"{self.list_path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
        if not isinstance(data, list) or not all(isinstance(f, dict) and f.get("name") for f in data):
            raise BadInput(f"{self.list_path}: must be a JSON list of feeds, each with a name")
        for feed in data:  # a name is a file name under feeds/items/: never '../x'
            try:
                check_name(feed["name"] if isinstance(feed["name"], str) else repr(feed["name"]), "feed")
            except BadInput as e:
                raise BadInput(f"{self.list_path}: {e}") from None
        return data

    def _save(self, feeds: list[dict]) -> None:
        atomic_write_json(self.list_path, feeds)

    def items_path(self, name: str) -> Path:
        return self.items_dir / f"{name}.jsonl"

    def items(self, name: str) -> list[dict]:
        """The items of feed `name` (lines that are not JSON objects are skipped)."""
        return read_jsonl(self.items_path(name))

    def get(self, name: str) -> dict:
        for feed in self.load():
            if feed["name"] == name:
                return feed
        raise BadInput(f"no feed named {name!r} (see lab feed list)")

    def add(self, source: str, name: str | None = None) -> dict:
        """Add a feed: a URL, or an arXiv category (`cs.CL`) for its RSS feed. Without `name`, one is derived
        from the category or the URL and made unique."""
        source = source.strip()
        category = None
        if re.match(r"https?://", source, re.I):
            url = source
            _check_url(url)
        elif category_of(source):
            category = category_of(source)
            url = (os.environ.get("LAB_ARXIV_RSS_URL") or ARXIV_RSS_URL).rstrip("/") + "/" + category
        else:
            raise BadInput(f"{source!r} is neither an http(s) URL nor an arXiv category such as cs.CL")
        if name is not None:
            check_name(name, "feed")
        from lab.core.clock import now_iso

        with self._lock():
            feeds = self.load()
            for feed in feeds:
                if feed["url"] == url:
                    raise BadInput(f"{url} is already a feed, named {feed['name']!r}")
            names = {f["name"] for f in feeds}
            if name is not None and name in names:
                raise BadInput(f"a feed named {name!r} exists already; choose another --name")
            if name is None:
                base = _derive_name(url, category)
                name, n = base, 2
                while name in names:
                    name, n = f"{base}-{n}", n + 1
            feed = {"name": name, "url": url, "category": category, "etag": None, "modified": None,
                    "added_at": now_iso(), "last_pull": None, "last_error": None, "items": 0}
            feeds.append(feed)
            self.dir.mkdir(parents=True, exist_ok=True)
            self._save(feeds)
        return feed

    def remove(self, name: str) -> dict:
        """Remove feed `name` and its items file."""
        with self._lock():
            feeds = self.load()
            kept = [f for f in feeds if f["name"] != name]
            if len(kept) == len(feeds):
                raise BadInput(f"no feed named {name!r} (see lab feed list)")
            self._save(kept)
            self.items_path(name).unlink(missing_ok=True)
        return next(f for f in feeds if f["name"] == name)

    def listing(self) -> list[dict]:
        """Each feed's name, url, items count, last pull and last error (for `lab feed list`)."""
        return [
            {"name": f["name"], "url": f["url"], "items": len(self.items(f["name"])),
             "last_pull": f.get("last_pull"), "last_error": f.get("last_error"), "category": f.get("category")}
            for f in self.load()
        ]

    def pull(self, name: str | None = None, progress: Callable[[str], None] | None = None) -> list[PullResult]:
        """Pull one feed or all; a feed that fails is recorded (`last_error`) and the others go on."""
        from lab.core.clock import now_iso

        progress = progress or (lambda message: None)
        with self._lock():
            feeds = self.load()
            chosen = [f for f in feeds if name is None or f["name"] == name]
            if name is not None and not chosen:
                raise BadInput(f"no feed named {name!r} (see lab feed list)")
            results = []
            for feed in chosen:
                result = self._pull_one(feed, now_iso())
                results.append(result)
                if result.error:
                    progress(f"{feed['name']}: failed: {result.error}")
                elif result.not_modified:
                    progress(f"{feed['name']}: not modified ({result.total} items)")
                else:
                    progress(f"{feed['name']}: {result.added} new ({result.total} items)")
                self._save(feeds)  # after each feed, so an interrupted pull keeps what it did
        return results

    def _pull_one(self, feed: dict, now: str) -> PullResult:
        result = PullResult(feed["name"])
        known = self.items(feed["name"])
        seen = {item.get("id") for item in known}
        result.total = len(known)
        try:
            status, body, headers = _http_get(feed["url"], feed.get("etag"), feed.get("modified"))
            feed["last_pull"] = now
            if status == 304:
                result.not_modified = True
                feed["last_error"] = None
                feed["items"] = len(known)
                return result
            entries = _parse(body, headers)
        except LabError as e:
            feed["last_error"] = str(e)
            feed["last_pull"] = now
            result.error = str(e)
            return result
        new = []
        for entry in entries:
            item = _item(entry, feed, now)
            if item is None or item["id"] in seen:
                continue
            seen.add(item["id"])
            new.append(item)
        if new:
            path = self.items_path(feed["name"])
            path.parent.mkdir(parents=True, exist_ok=True)
            old = read_text(path) if path.exists() else ""
            if old and not old.endswith("\n"):
                old += "\n"
            # Rewriting the whole file atomically keeps it whole even if lab is killed mid-pull.
            atomic_write_text(path, old + "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in new))
        feed["etag"] = headers.get("etag") or feed.get("etag")
        feed["modified"] = headers.get("last-modified") or feed.get("modified")
        feed["last_error"] = None
        feed["items"] = len(known) + len(new)
        result.added, result.total, result.new_items = len(new), len(known) + len(new), new
        return result


def _check_url(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as e:  # a bracket left open, a port that is no number
        raise BadInput(f"{url!r} is not a valid URL: {e}") from None
    if not host or not url.isprintable() or " " in url:
        raise BadInput(f"{url!r} is not a valid URL: it needs a host, and no spaces or control characters")


def _derive_name(url: str, category: str | None) -> str:
    if category:
        return f"arxiv-{category}"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    generic = {"www", "rss", "feeds", "feed", "blog", "export", "com", "org", "net", "io", "ai", "co", "edu", "google", "berkeley"}
    labels = [] if re.fullmatch(r"[\d.]+|localhost|\[.*\]", host) else [x for x in host.split(".") if x not in generic]
    words = labels[:1]
    for seg in parts.path.split("/"):
        seg = re.sub(r"\.(xml|rss|atom|json|php|html?)$", "", seg, flags=re.I)
        if seg and seg.lower() not in {"feed", "rss", "atom", "index", "feeds", "rss2", "news"}:
            words.append(seg)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(words)).strip("-.")[:60]
    return slug or "feed"


def _http_get(url: str, etag: str | None, modified: str | None) -> tuple[int, bytes, dict]:
    """GET with conditional headers and a timeout ($LAB_FEED_TIMEOUT, default 30 s); errors become LabError."""
    import socket
    import urllib.error
    import urllib.request
    from urllib.parse import urljoin

    headers = {"User-Agent": "lab feed reader", "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if modified:
        headers["If-Modified-Since"] = modified
    try:
        timeout = float(os.environ.get("LAB_FEED_TIMEOUT") or 30)
    except ValueError:
        raise BadInput(f"$LAB_FEED_TIMEOUT={os.environ['LAB_FEED_TIMEOUT']!r} is not a number") from None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            got = {k.lower(): v for k, v in resp.headers.items()}
            # Where the feed came from (after redirects): relative links in it resolve against this.
            got["content-location"] = urljoin(resp.geturl() or url, got.get("content-location", ""))
            return resp.status, resp.read(), got
    except urllib.error.HTTPError as e:
        if e.code == 304:
            return 304, b"", {k.lower(): v for k, v in e.headers.items()}
        raise LabError(f"HTTP {e.code} from {url}") from None
    except (TimeoutError, socket.timeout):
        raise LabError(f"no answer within {timeout:g} s from {url}") from None
    except urllib.error.URLError as e:
        reason = e.reason if not isinstance(e.reason, OSError) else (e.reason.strerror or str(e.reason))
        raise LabError(f"cannot reach {url}: {reason}") from None
    except (OSError, ValueError) as e:
        raise LabError(f"cannot read {url}: {e}") from None


def _parse(body: bytes, headers: dict) -> list:
    """The entries of a feed's bytes. feedparser decodes them (the HTTP charset, the XML declaration, else the
    `chardet` detector for feeds that declare nothing) and resolves relative links against `content-location`
    (the feed's own URL). The bytes go in as a stream: feedparser reads a string as a URL or a file name."""
    import io

    import feedparser

    parsed = feedparser.parse(io.BytesIO(body), response_headers={k: v for k, v in headers.items() if k != "content-encoding"})
    if parsed.bozo and not parsed.entries and not parsed.feed.get("title"):
        problem = str(getattr(parsed, "bozo_exception", "") or "not a feed").splitlines()[0]
        raise LabError(f"not an RSS or Atom feed: {problem[:200]}")
    return list(parsed.entries)


def _iso_from_struct(st) -> str | None:
    if not st:
        return None
    from datetime import datetime, timezone

    try:
        return datetime(*st[:6], tzinfo=timezone.utc).isoformat()
    except (TypeError, ValueError):
        return None


def _text(entry, key: str) -> str:
    """An entry's title or summary as plain text: HTML is stripped only when the feed marks it as HTML
    (feedparser's `*_detail.type`), so a plain-text `History of the <blink> tag` or `$k<n$` stays whole."""
    value = entry.get(key) or ""
    kind = (entry.get(f"{key}_detail") or {}).get("type") or "text/html"
    if "html" in kind or "xml" in kind:
        return plain_text(value)
    return re.sub(r"\s+", " ", value).strip()


def _http_link(entry) -> str | None:
    """The entry's first http(s) link (feedparser has resolved relative ones); `javascript:` and the like are
    never stored."""
    candidates = [entry.get("link")] + [
        link.get("href") for link in entry.get("links", []) if link.get("rel", "alternate") == "alternate"
    ]
    for candidate in candidates:
        if candidate and re.match(r"https?://[^\s/]", candidate.strip(), re.I):
            return candidate.strip()
    return None


def _author(name: str) -> str:
    """An author as plain text (a name carrying markup has it stripped)."""
    return plain_text(name) if re.search(r"<[A-Za-z/!]", name) else re.sub(r"\s+", " ", name).strip()


def _item(entry, feed: dict, now: str) -> dict | None:
    title = _text(entry, "title")
    link = _http_link(entry)
    summary = _text(entry, "summary") if entry.get("summary") else plain_text(entry.get("description") or "")
    aid = None
    for candidate in (entry.get("id"), link):
        if candidate and ("arxiv" in candidate.lower()):
            aid = from_entry_id(candidate.rsplit("/abs/", 1)[-1]) if "/abs/" in candidate else from_entry_id(candidate)
            if aid:
                break
    authors = [_author(a.get("name", "")) for a in entry.get("authors", []) if a.get("name")]
    authors = [a for a in authors if a]
    if aid is not None:
        # arXiv's RSS puts all authors in one dc:creator and prefixes the abstract with its announcement.
        authors = [a.strip() for one in authors for a in re.split(r",|\band\b", one) if a.strip()]
        summary = re.sub(r"^arXiv:\S+\s+Announce Type:\s*\S+\s*(Abstract:\s*)?", "", summary)
    key = f"arXiv:{aid.id}" if aid else (entry.get("id") or link or title)
    if not key:
        if not summary:
            return None
        # RSS 2.0 allows an item with only a description: it is known by a hash of its content.
        import hashlib

        key = "sha256:" + hashlib.sha256(summary.encode("utf-8")).hexdigest()[:32]
    return {
        "id": key,
        "title": title,
        "authors": authors,
        "summary": summary[:MAX_SUMMARY],
        "link": link,
        "published": _iso_from_struct(entry.get("published_parsed") or entry.get("updated_parsed")),
        "arxiv_id": aid.id if aid else None,
        "feed": feed["name"],
        "added_at": now,
    }
