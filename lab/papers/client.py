"""Fetching paper metadata from the arXiv API, politely.

arXiv's terms of use ask for at most one request every three seconds. `arxiv.Client` (package `arxiv`) builds
the query URL, pages through results and parses the Atom answer well (old and new response formats alike), but
it keeps its pacing per process, sends requests without a timeout, and retries every failure (a 400 too) at
once, without backoff. So lab keeps the package's client, URL building and parser, and gives the client a
`requests.Session` of its own (`_PolicySession`) that adds what lab needs on every request:

- a deadline (`LAB_ARXIV_TIMEOUT`, default 30 s) for each whole request, answer included: a server that
  trickles bytes cannot keep lab waiting longer (a socket timeout alone bounds only each read);
- pacing that holds across separate `lab` processes: a timestamp file under the user's cache directory, held
  under a file lock while a request is in flight (`LAB_ARXIV_MIN_INTERVAL`, default 3 s);
- retries with exponential backoff (or the server's `Retry-After`) on 429 and 5xx only
  (`LAB_ARXIV_RETRIES`, default 3; `LAB_ARXIV_BACKOFF`, default 3 s, doubling).

The client's own delay and retries are switched off so that the two layers do not multiply. `LAB_ARXIV_API_URL`
points the client at another endpoint (tests use a loopback server).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lab.papers.ids import ArxivId, from_entry_id
from lab.errors import BadInput, LabError

DEFAULT_API_URL = "https://export.arxiv.org/api/query"
USER_AGENT = "lab (https://github.com/; arXiv metadata for research notes)"


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"${name}={value!r} is not a number") from None
    if number < 0:
        raise BadInput(f"${name}={value!r} must not be negative")
    return number


def cache_dir() -> Path:
    """lab's per-user cache: `$LAB_CACHE_DIR`, else `$XDG_CACHE_HOME/lab`, else `~/.cache/lab`."""
    if os.environ.get("LAB_CACHE_DIR"):
        return Path(os.environ["LAB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lab"


class Pacer:
    """At most one request per `interval` seconds for every process that shares `path`.

    The file holds the wall-clock time of the last request; it is locked while a request is in flight, so
    concurrent `lab` processes queue up behind each other instead of all firing at once.
    """

    def __init__(self, path: Path, interval: float, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep, progress: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.progress = progress
        self.interval = interval
        self.clock = clock
        self.sleep = sleep

    def run(self, request: Callable[[], object]):
        """Wait for our turn, call `request()`, record when it was sent, and return what it returned."""
        from lab.core.flock import locked

        with locked(self.path) as f:
            f.seek(0)
            try:
                last = float(f.read().strip() or "0")
            except ValueError:
                last = 0.0
            # A clock that went backwards must not make us wait for longer than one interval.
            wait = min(self.interval, last + self.interval - self.clock())
            if wait > 0:
                if wait >= 1 and self.progress:
                    self.progress(f"waiting {wait:.1f} s between requests to arXiv (its terms of use)")
                self.sleep(wait)
            try:
                return request()
            finally:
                f.seek(0)
                f.truncate()
                f.write(f"{self.clock():.3f}\n")


@dataclass
class Paper:
    """The metadata of one paper, as arXiv gave it (plain text, whitespace normalised)."""

    arxiv_id: str
    version: int | None
    title: str
    authors: list[str]
    published: str | None
    updated: str | None
    primary_category: str
    categories: list[str]
    doi: str | None
    journal_ref: str | None
    comment: str | None
    url: str
    pdf_url: str
    abstract: str = ""
    extra: dict = field(default_factory=dict)


def normalise(text: str | None) -> str | None:
    """Collapse runs of whitespace (arXiv wraps titles and abstracts at ~80 columns) into single spaces."""
    if text is None:
        return None
    return re.sub(r"\s+", " ", text).strip()


def _iso(dt) -> str | None:
    return dt.isoformat() if dt is not None and dt.year > 1 else None


def paper_from_result(result) -> Paper | None:
    """Turn an `arxiv.Result` into a Paper (None for an entry that is not a paper, such as an error entry)."""
    aid = from_entry_id(result.entry_id.rsplit("/abs/", 1)[-1])
    if aid is None:
        return None
    return Paper(
        arxiv_id=aid.id,
        version=aid.version,
        title=normalise(result.title) or "",
        authors=[normalise(a.name) or "" for a in result.authors],
        published=_iso(result.published),
        updated=_iso(result.updated),
        primary_category=result.primary_category or (result.categories[0] if result.categories else ""),
        categories=list(result.categories),
        doi=normalise(result.doi) or None,
        journal_ref=normalise(result.journal_ref) or None,
        comment=normalise(result.comment) or None,
        url=f"https://arxiv.org/abs/{aid.id}",
        pdf_url=f"https://arxiv.org/pdf/{aid.versioned}",
        abstract=normalise(result.summary) or "",
    )


class _Policy:
    """Timeout, pacing and retries, read from the environment once per client."""

    def __init__(self, progress: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep):
        self.timeout = _env_float("LAB_ARXIV_TIMEOUT", 30.0)
        self.retries = int(_env_float("LAB_ARXIV_RETRIES", 3))
        self.backoff = _env_float("LAB_ARXIV_BACKOFF", 3.0)
        self.pacer = Pacer(cache_dir() / "arxiv-last-request", _env_float("LAB_ARXIV_MIN_INTERVAL", 3.0), sleep=sleep, progress=progress)
        self.progress = progress or (lambda message: None)
        self.sleep = sleep


def _retry_after(resp) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return min(float(value), 120.0) if value is not None else None
    except ValueError:
        return None


def _within(seconds: float, work: Callable[[], object]):
    """`work()`'s result, or requests' Timeout when it has not returned within `seconds`.

    The request runs in a daemon thread; the caller stops waiting at the deadline. The abandoned thread ends
    when the server closes the connection or a read times out (the socket timeout still applies), or with
    the process (`lab note` reports and exits right away)."""
    import threading

    import requests

    if not seconds:
        return work()
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    worker = threading.Thread(target=run, name="lab-arxiv-request", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise requests.exceptions.Timeout(f"no whole answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _session(policy: _Policy):
    import requests

    class _PolicySession(requests.Session):
        """A session whose every request has a timeout, is paced across processes and is retried on 429/5xx."""

        last_response = None

        def request(self, method, url, **kwargs):
            kwargs.setdefault("timeout", policy.timeout or None)  # 0: no deadline
            attempt = 0
            send = super(_PolicySession, self).request
            while True:
                resp = policy.pacer.run(lambda: _within(policy.timeout, lambda: send(method, url, **kwargs)))
                self.last_response = resp
                transient = resp.status_code == 429 or resp.status_code >= 500
                if not transient or attempt >= policy.retries:
                    return resp
                delay = _retry_after(resp) or policy.backoff * (2**attempt)
                policy.progress(f"arXiv answered HTTP {resp.status_code}; retrying in {delay:g} s")
                policy.sleep(delay)
                attempt += 1

    return _PolicySession()


def _error_summary(content: bytes | None) -> str:
    """The message of arXiv's error entry (`incorrect id format for abc`), or ''."""
    if not content:
        return ""
    m = re.search(rb"<summary>(.*?)</summary>", content, re.S)
    return normalise(m.group(1).decode("utf-8", "replace")) if m else ""


def connection_cause(error: Exception, limit: int = 200) -> str:
    """The cause of a failed connection, in its own words (`Failed to resolve 'export.arxiv.org' ([Errno -3] ...)`),
    not the retry wrapper around it that names the whole URL first."""
    import re

    inner = error.args[0] if getattr(error, "args", None) else error
    cause = getattr(inner, "reason", None) or inner
    text = normalise(re.sub(r"^<[^>]*>:\s*", "", str(cause))) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def api_url() -> str:
    return os.environ.get("LAB_ARXIV_API_URL") or DEFAULT_API_URL


def fetch(ids: list[ArxivId] | list[str], progress: Callable[[str], None] | None = None) -> tuple[dict[str, Paper], list[str]]:
    """Fetch the papers `ids` in one request (pages of 100); return ({canonical id: Paper}, ids arXiv does not know).

    `ids` should have been checked with `arxiv_ids.parse_ids`; plain strings are sent as they are (so a test can
    send what a careless client would). HTTP errors, timeouts and unreachable servers raise LabError (one line).
    """
    import logging

    import arxiv
    import requests

    # The package warns through logging; without a handler Python would print that on stderr, and lab reports
    # problems itself, in one line.
    arxiv_log = logging.getLogger("arxiv")
    if not arxiv_log.handlers:
        arxiv_log.addHandler(logging.NullHandler())
    wanted = [str(i) for i in ids]
    if not wanted:
        return {}, []
    policy = _Policy(progress)
    client = arxiv.Client(page_size=100, delay_seconds=0, num_retries=0)
    client.query_url_format = api_url() + "?{}"
    # arxiv.Client has no public way to pass a session; `_session` is where it keeps the one it uses.
    session = client._session = _session(policy)
    search = arxiv.Search(id_list=wanted, max_results=len(wanted))
    where = api_url()
    try:
        results = list(client.results(search))
    except arxiv.HTTPError as e:
        resp = session.last_response
        detail = _error_summary(resp.content if resp is not None else None)
        raise LabError(f"arXiv answered HTTP {e.status} for {', '.join(wanted)}" + (f": {detail}" if detail else "")) from None
    except requests.exceptions.Timeout:
        raise LabError(f"arXiv did not answer within {policy.timeout:g} s ({where}); try again later") from None
    except requests.exceptions.RequestException as e:
        raise LabError(f"cannot reach arXiv at {where}: {connection_cause(e)}") from None
    resp = session.last_response
    if not results and resp is not None and b"<feed" not in resp.content[:2000]:
        raise LabError(f"the answer from {where} is not an arXiv Atom feed ({resp.headers.get('Content-Type') or 'no type'})")
    found: dict[str, Paper] = {}
    for result in results:
        if "/api/errors" in result.entry_id:
            raise LabError(f"arXiv refused the request for {', '.join(wanted)}: {normalise(result.summary)}")
        paper = paper_from_result(result)
        if paper is not None:
            found[paper.arxiv_id] = paper
    missing = []
    for text in wanted:
        aid = from_entry_id(text)
        if aid is None or aid.id not in found:
            missing.append(text)
    return found, missing


# ---- PDFs ----------------------------------------------------------------------------------------------------

MAX_PDF_BYTES = 50 * 1024 * 1024  # `LAB_PDF_MAX_MB` changes it


def pdf_url(paper: Paper) -> str:
    """Where the paper's PDF is: the link arXiv's answer gives, on `LAB_ARXIV_PDF_URL` when that is set."""
    base = os.environ.get("LAB_ARXIV_PDF_URL")
    if base:
        return f"{base.rstrip('/')}/{paper.pdf_url.rsplit('/pdf/', 1)[-1]}"
    return paper.pdf_url


def download_pdf(url: str, progress: Callable[[str], None] | None = None) -> bytes:
    """The PDF at `url`, with the same pacing, deadline and retries as the metadata (see `_Policy`), at most
    `LAB_PDF_MAX_MB` (default 50) megabytes. LabError (one line) when it cannot be had; whether the bytes are a
    PDF is for the extractor to say."""
    import requests

    policy = _Policy(progress)
    megabytes = _env_float("LAB_PDF_MAX_MB", MAX_PDF_BYTES / 2**20)
    limit = int(megabytes * 2**20)
    session = _session(policy)

    def get():
        with session.get(url, stream=True, headers={"User-Agent": USER_AGENT}) as resp:
            if resp.status_code != 200:
                return resp.status_code, b""
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                return "big", b""
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    return "big", b""
                chunks.append(chunk)
            return 200, b"".join(chunks)

    try:
        status, body = _within(policy.timeout, get)
    except requests.exceptions.Timeout:
        raise LabError(f"the PDF did not arrive within {policy.timeout:g} s ({url})") from None
    except requests.exceptions.RequestException as e:
        raise LabError(f"cannot download the PDF {url}: {type(e).__name__}") from None
    if status == "big":
        raise LabError(f"the PDF {url} is larger than {megabytes:g} MB (LAB_PDF_MAX_MB); not kept")
    if status != 200:
        raise LabError(f"the PDF {url} answered HTTP {status}")
    return body
