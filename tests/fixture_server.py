"""A loopback HTTP server for the recorded arXiv API answers and feeds in tests/fixtures/.

- `/api/query?...id_list=A,B...`: the recorded answer (body and status) whose manifest URL asked for the same
  id_list; for an id_list nobody recorded, an answer is put together from the recorded entries of each id (the
  header of a recorded empty answer around them), so that e.g. two recorded papers can come in one request and
  an id nobody recorded gets arXiv's real "no entry" answer.
- `/rss/CATEGORY`: arXiv's RSS for cs.AI, cs.CL, cs.LG; `/feeds/FILE`: any recorded feed. Both carry an ETag
  and Last-Modified and answer 304 to a matching conditional request (unless `honour_conditional` is off).
- `files` (set by a test): path -> (body, headers), answered as they are.
- `/pdf/ID`: the PDF arXiv's answer links to, where tests/fixtures/pdf/ holds it as `ID.pdf` (else 404), as
  `application/pdf`.
- `/status/CODE`: an empty answer with that status; `/page.html`: an HTML page, not a feed.
Scripted trouble for the API: `api_script` (a list of statuses answered, in order, before the real answer) and
`delay` (seconds to wait before answering), `trickle` (seconds between the bytes of an answer, headers included).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from helpers import FIXTURES

API_DIR = FIXTURES / "arxiv-api"
PDF_DIR = FIXTURES / "pdf"
FEED_DIR = FIXTURES / "feeds"
LAST_MODIFIED = "Mon, 27 Apr 2026 04:00:02 GMT"
RSS = {"cs.AI": "arxiv_cs_ai.xml", "cs.CL": "arxiv_cs_cl.xml", "cs.LG": "arxiv_cs_lg.xml"}


def _id_list(url: str) -> str:
    return parse_qs(urlsplit(url).query, keep_blank_values=True).get("id_list", [""])[0]


def _load_api():
    manifest = json.loads((API_DIR / "manifest.json").read_text())
    recorded = {}
    for row in manifest:
        recorded[_id_list(row["url"])] = ((API_DIR / row["file"]).read_bytes(), row["status"])
    recorded["1111.2011v2"] = ((API_DIR / "legacy-2016_id_list_1111.2011v2.xml").read_bytes(), 200)
    entries = {}  # "1605.08386v1" -> entry XML text
    for body, status in recorded.values():
        if status != 200:
            continue
        for entry in re.findall(rb"<entry>.*?</entry>", body, re.S):
            m = re.search(rb"<id>https?://arxiv\.org/abs/(.+?)</id>", entry)
            if m:
                entries[m.group(1).decode()] = entry
    empty = (API_DIR / "id_0000.0000_s0_m100_8b51d9633a68.xml").read_bytes()
    return recorded, entries, empty


class FixtureServer:
    def __init__(self):
        self.recorded, self.entries, self.empty = _load_api()
        self.requests: list[dict] = []
        self.api_script: list[int] = []
        self.delay = 0.0
        self.pdf_delay = 0.0  # seconds to wait before answering for a PDF
        self.files: dict[str, tuple[bytes, dict]] = {}  # extra answers by path: (body, headers)
        self.trickle = 0.0  # when set: API answers are sent one byte every `trickle` seconds
        self._stopping = threading.Event()
        self.honour_conditional = True
        self.aliases: dict[str, str] = {}  # requested id -> recorded id whose entry answers it
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with server._lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers)})
                try:
                    status, body, headers = server.answer(self.path, self.headers)
                    if server.delay and self.path.startswith("/api/"):
                        time.sleep(server.delay)
                    if server.pdf_delay and self.path.startswith("/pdf/"):
                        server._stopping.wait(server.pdf_delay)
                    if server.trickle and self.path.startswith("/api/"):
                        # The whole answer, status line and headers included, one byte at a time.
                        head = f"HTTP/1.0 {status} OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                        raw = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
                        for i in range(len(raw)):
                            if server._stopping.wait(server.trickle):
                                break
                            self.wfile.write(raw[i : i + 1])
                            self.wfile.flush()
                        return
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def api_requests(self) -> list[str]:
        return [_id_list(r["path"]) for r in self.requests if r["path"].startswith("/api/")]

    def _compose(self, id_list: str) -> bytes:
        found = []
        for asked in filter(None, id_list.split(",")):
            target = self.aliases.get(asked, asked)
            for key, entry in self.entries.items():
                if key == target or re.sub(r"v\d+$", "", key) == target:
                    if asked in self.aliases:  # the borrowed entry speaks of the id that was asked for
                        entry = entry.replace(re.sub(r"v\d+$", "", key).encode(), re.sub(r"v\d+$", "", asked).encode())
                    found.append(entry)
                    break
        body = self.empty
        if found:
            body = body.replace(b"<opensearch:totalResults>0<", f"<opensearch:totalResults>{len(found)}<".encode())
            body = body.replace(b"</feed>", b"".join(b"  " + e + b"\n" for e in found) + b"</feed>")
        return body

    def answer(self, path: str, headers) -> tuple[int, bytes, dict]:
        url = urlsplit(path)
        xml = {"Content-Type": "application/atom+xml; charset=utf-8"}
        if url.path == "/api/query":
            if self.api_script:
                status = self.api_script.pop(0)
                if status != 200:
                    return status, b"<html><body>try later</body></html>", {"Content-Type": "text/html"}
            id_list = _id_list(path)
            if id_list in self.recorded:
                body, status = self.recorded[id_list]
                return status, body, xml
            return 200, self._compose(id_list), xml
        if url.path.startswith("/pdf/") and url.path not in self.files:
            pdf = PDF_DIR / (url.path[len("/pdf/"):].replace("/", "_") + ".pdf")
            if pdf.is_file():
                return 200, pdf.read_bytes(), {"Content-Type": "application/pdf"}
            return 404, b"<html><body>not found</body></html>", {"Content-Type": "text/html"}
        if url.path.startswith("/status/"):
            return int(url.path.rsplit("/", 1)[1]), b"", {}
        if url.path == "/page.html":
            return 200, b"<!doctype html><html><body><p>Not a feed</p></body></html>", {"Content-Type": "text/html"}
        if url.path in self.files:
            body, headers = self.files[url.path]
            return 200, body, dict(headers)
        name = None
        if url.path.startswith("/rss/"):
            name = RSS.get(url.path[len("/rss/"):])
        elif url.path.startswith("/feeds/"):
            name = url.path[len("/feeds/"):]
        if name and (FEED_DIR / name).is_file() and "/" not in name:
            body = (FEED_DIR / name).read_bytes()
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            out = {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag, "Last-Modified": LAST_MODIFIED}
            if self.honour_conditional and (
                headers.get("If-None-Match") == etag or headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                return 304, b"", {"ETag": etag, "Last-Modified": LAST_MODIFIED}
            return 200, body, out
        return 404, b"not here", {}

    def stop(self):
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
