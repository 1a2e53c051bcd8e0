"""`lab watch`: a per-lab process that keeps the search index fresh from the kernel's file events.

Without it, every reader of the index first stats each indexed file (`lab.search.index.sync`): always correct, but
on a lab of 17,000 files those stats alone take 50-100 ms here, most of a `lab search`. The watcher keeps an
inotify watch on every directory the index covers, re-reads exactly the files the kernel reports changed,
and answers readers over an abstract Unix socket named after the lab root: a reader sends `sync ROOT` and
the watcher replies `ok` once every change reported before the request is in the index (lab.search.watcher
is the watcher itself: `serve` there is the body of `lab watch`). A hybrid or semantic search also sends
`rank` (see `rank`): the watcher, which keeps the model and the lab's vectors loaded, embeds the query and
ranks by meaning, so the search process imports neither NumPy nor the tokenizer (this module stays light).
The kernel queues an event inside the writing call itself, so an edit that finished before the search started
is in the queue when the request is read: a watched lab is as fresh as a scanned one, without the scan.

Anything unusual (a directory created, removed or renamed, an event queue overflow, the index file deleted or
replaced) makes the watcher run the full `sync` again. A reader that finds no watcher, or gets no answer in
time, scans as always; the socket disappears with the process, so a killed watcher leaves nothing stale.
Linux only (inotify); elsewhere `lab watch` says so and searches scan.
"""

from __future__ import annotations

import os
import sys
import zlib

from lab.core.layout import WATCH_LOG
from lab.errors import LabError

TIMEOUT = 5.0  # how long a reader waits for the watcher before scanning itself
SETTLE = 0.2  # seconds without events before the watcher applies changes on its own

# inotify(7)
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
IN_ONLYDIR, IN_ISDIR = 0x01000000, 0x40000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
RESCAN = IN_Q_OVERFLOW | IN_UNMOUNT | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF


def address(root: str) -> bytes:
    """The abstract socket name of `root`'s watcher (no file, no path-length limit, gone with the process)."""
    data = os.fsencode(root)
    return b"\0lab-watch-%08x%08x" % (zlib.crc32(data), zlib.adler32(data))


_UNANSWERED: set[str] = set()  # roots whose watcher gave no answer in this process (a `rank` then does not ask)


def _ask(root: str, request: str, timeout: float) -> bytes | None:
    """Send one request line to the watcher of `root`; its one-line answer, or None when there is none."""
    if not sys.platform.startswith("linux"):
        return None
    reply = _exchange(root, request, timeout)
    if reply is None:
        _UNANSWERED.add(root)
    return reply


def _exchange(root: str, request: str, timeout: float) -> bytes | None:
    sock = _send(root, request, timeout)
    return None if sock is None else _receive(sock)


def _send(root: str, request: str, timeout: float):
    """A socket that carries `request` to the watcher of `root` (its answer not yet read), or None."""
    import _socket  # `socket` itself imports enum and selectors: several times the cost of this whole call

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address(root))
        # The name is not a file with permissions: accept an answer only from a process of this user.
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[4:8], sys.byteorder) != os.getuid():
            sock.close()
            return None
        sock.sendall(f"{request} {root}\n".encode("utf-8", "surrogateescape"))
        return sock
    except OSError:
        sock.close()
        return None


def _receive(sock) -> bytes | None:
    """The one-line answer on `sock` (then closed), or None."""
    try:
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            reply += chunk
        return reply[:-1]
    except OSError:
        return None
    finally:
        sock.close()


def synced(root: str, timeout: float = TIMEOUT) -> bool:
    """True when a watcher of `root` has put every change made so far into the index (no scan needed)."""
    return _ask(os.path.realpath(root), "sync", timeout) == b"ok"


def rank(root: str, text: str, allowed, depth: int, inline: bool = False,
         timeout: float = TIMEOUT) -> list[tuple[int, float]] | None:
    """The watcher's semantic ranking of `text` (lab.search.embed.ranker, with its model and vectors kept warm):
    [(doc id, cosine)] best first among `allowed` doc ids (None: all), at most `depth`; None when no watcher
    answers in time or it cannot rank (the caller then ranks itself). `inline`: the watcher first embeds the
    few documents that lack a vector (lab.search.embed.INLINE), as a search would. The watcher syncs first.

    Request: `rank DEPTH INLINE ALLOWED QUERY-HEX ROOT` (ALLOWED: comma-separated ids or `*`);
    answer: `ok ID:SCORE ...` (scores as Python writes floats: read back exactly) or `none`."""
    return rank_begin(root, text, allowed, depth, inline, timeout)()


def rank_begin(root: str, text: str, allowed, depth: int, inline: bool = False, timeout: float = TIMEOUT):
    """`rank`, in two halves: this sends the request; the function it returns waits for the answer (meanwhile
    the caller can do its keyword ranking while the watcher embeds the query)."""
    root = os.path.realpath(root)
    if root in _UNANSWERED or not sys.platform.startswith("linux"):  # no watcher, or it did not answer a `sync`
        return lambda: None
    ids = "*" if allowed is None else ",".join(map(str, allowed))
    if not ids:
        return lambda: []
    hexed = text.encode("utf-8", "surrogateescape").hex() or "-"
    sock = _send(root, f"rank {int(depth)} {int(inline)} {ids} {hexed}", timeout)

    def finish() -> list[tuple[int, float]] | None:
        reply = None if sock is None else _receive(sock)
        if reply is None:
            _UNANSWERED.add(root)
        return None if reply is None else parse_ranking(reply)

    return finish


def format_ranking(ranked: list[tuple[int, float]]) -> bytes:
    """A ranking as an answer line (without its newline): `ok ID:SCORE ...`, scores as Python writes floats."""
    return b" ".join([b"ok"] + [f"{doc}:{score!r}".encode() for doc, score in ranked])


def parse_ranking(reply: bytes) -> list[tuple[int, float]] | None:
    """The ranking in an answer line (`format_ranking`), read back exactly; None for `none` or a garbled line."""
    if not (reply == b"ok" or reply.startswith(b"ok ")):
        return None
    try:
        return [(int(doc), float(score)) for doc, _, score in (pair.partition(b":") for pair in reply.split()[1:])]
    except ValueError:
        return None


def status(root: str) -> dict | None:
    """The running watcher's state ({pid, root, directories, since, applied, rescans, ranked}), or None."""
    import json

    reply = _ask(os.path.realpath(root), "status", TIMEOUT)
    try:
        return json.loads(reply) if reply else None
    except ValueError:
        return None


def stop(root: str, timeout: float = 10.0) -> int | None:
    """Ask the watcher of `root` to exit and wait for it; its pid, or None when none was running."""
    import time

    info = status(root)
    if info is None:
        return None
    _ask(os.path.realpath(root), "stop", TIMEOUT)
    deadline = time.monotonic() + timeout
    while status(root) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return info["pid"]


def start(root: str, timeout: float = 120.0) -> dict:
    """Start a detached watcher of `root` (new session, output to .lab/watch.log) and wait until it answers."""
    import time

    from lab.core.process import spawn_detached

    root = os.path.realpath(root)
    info = status(root)
    if info is not None:
        return info
    if not sys.platform.startswith("linux"):
        raise LabError("lab watch needs Linux (inotify); on this system every search scans the files instead")
    log = os.path.join(root, WATCH_LOG)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start_at = os.path.getsize(log) if os.path.exists(log) else 0
    # Not in the lab: it may be deleted while the watcher runs (and the watcher then exits).
    proc = spawn_detached([sys.executable, "-m", "lab", "--root", root, "watch"], log, cwd="/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = status(root)
        if info is not None:
            return info
        if proc.poll() is not None:
            with open(log, "rb") as f:
                f.seek(start_at)
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            info = status(root)  # another `lab watch` won the race: that one watches
            if info is not None:
                return info
            raise LabError(lines[-1].removeprefix("lab: error: ") if lines else f"the watcher exited ({proc.returncode}); see {log}")
        time.sleep(0.05)
    raise LabError(f"the watcher did not answer within {timeout:.0f} s; see {log}")
