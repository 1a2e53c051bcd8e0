"""The watcher process behind `lab watch` (lab.search.watch holds the protocol and the client side).

One thread: `select` over the inotify descriptor and the listening socket. File events add the file to a
pending set; a reader's `sync` request, or a quiet moment after events, applies the set (each file re-read:
an event means its content may have changed even when its size and mtime did not). Directory events, queue
overflows and a replaced index file make the next apply a full `lab.search.index.sync` with every watch renewed.
A `rank` request applies the same way first, then ranks by meaning (lab.search.embed.ranker): the model loads at
the first one and stays, and the vectors stay mapped until the index's `vectors_version` changes.

Why inotify itself, not watchfiles (which was weighed for this): watchfiles passes on only events that name a path, so
an event-queue overflow (notify's path-less Rescan event) would go unseen and the watcher would answer `ok` over
lost changes; and its events arrive only from a loop that polls every `step` ms (interrupting that loop discards
what it holds), so each `sync` would wait for a batch (about 6 ms at a 5 ms step, with the thread waking 200 times
a second while idle) where reading the descriptor answers at once and an idle watcher sleeps in `select`.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import sqlite3
import struct
import sys
import time
from pathlib import Path

from lab.core.clock import now_iso
from lab.core import layout
from lab.core.layout import index_dirs, kind_of, leads_to_index
from lab.errors import LabError
from lab.search import index
from lab.search.watch import IN_DELETE_SELF, IN_ISDIR, IN_MOVE_SELF, MASK, RESCAN, SETTLE, address, format_ranking

MAX_REQUEST = 1 << 26  # bytes: a `rank` request lists the doc ids a search may return
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


class Inotify:
    """A non-blocking inotify descriptor (ctypes over libc: the standard library has no binding)."""

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise LabError(f"cannot watch files: inotify_init1: {os.strerror(err)}")

    def add(self, path: str) -> int | None:
        """Watch directory `path`; its watch descriptor, or None when it is gone or not a directory."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd >= 0:
            return wd
        err = ctypes.get_errno()
        if err in (2, 20):  # ENOENT, ENOTDIR: removed meanwhile; the rescan that follows sees it
            return None
        hint = " (raise fs.inotify.max_user_watches)" if err == 28 else ""  # ENOSPC
        raise LabError(f"cannot watch {path}: {os.strerror(err)}{hint}")

    def read(self) -> list[tuple[int, int, str]]:
        """Every queued event as (wd, mask, name); [] when none."""
        events = []
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return events
            pos = 0
            while pos < len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, pos)
                pos += _EVENT.size
                name = data[pos : pos + size].rstrip(b"\0")
                pos += size
                events.append((wd, mask, os.fsdecode(name)))

    def close(self) -> None:
        os.close(self.fd)


def serve(root: str, on_ready=None) -> None:
    """Watch `root` until asked to stop or the lab is deleted: the body of `lab watch` (foreground)."""
    Watcher(os.path.realpath(root)).serve(on_ready)


class Watcher:
    """Keeps one lab's index fresh; answers `sync`, `status` and `stop` requests on the lab's socket."""

    def __init__(self, root: str):
        self.root = root
        self.dirs: dict[int, str] = {}  # watch descriptor -> directory relative to the root ("" for the root)
        self.pending: set[str] = set()
        self.rescan = True
        self.gone = False
        self.applied = 0
        self.rescans = 0
        self.ranked = 0
        self.since = now_iso("seconds")
        self.conn = None
        self.db_id = None
        self.inotify = None

    # -- the loop -------------------------------------------------------------------------------------------

    def serve(self, on_ready=None) -> None:
        if not os.path.isdir(os.path.join(self.root, layout.EXPERIMENTS)):
            raise LabError(f"{self.root} is not a lab (no experiments/ directory)")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            server.bind(address(self.root))
        except OSError:
            server.close()
            raise LabError(f"a watcher already runs for {self.root}; 'lab watch --stop' ends it") from None
        self.inotify = Inotify()
        try:
            server.listen(64)
            self.apply()  # watches first, then the full sync: a change in between is in both, never in neither
            if on_ready is not None:
                on_ready(self.status())
            quiet_since = time.monotonic()
            while not self.gone:
                wait = None
                if self.pending or self.rescan:
                    wait = max(0.0, quiet_since + SETTLE - time.monotonic())
                ready, _, _ = select.select([self.inotify.fd, server], [], [], wait)
                if self.inotify.fd in ready:
                    self.take(self.inotify.read())
                    quiet_since = time.monotonic()
                elif (self.pending or self.rescan) and time.monotonic() - quiet_since >= SETTLE:
                    try:
                        self.apply()  # a quiet moment after changes: apply them before anyone asks
                    except (sqlite3.Error, OSError) as e:  # the index busy or damaged: start over next time
                        self.rescan = True
                        quiet_since = time.monotonic()
                        self.log(f"sync failed: {type(e).__name__}: {e}")
                if server in ready and not self.answer(server):
                    break
        finally:
            server.close()
            self.inotify.close()
            if self.conn is not None:
                self.conn.close()

    def answer(self, server) -> bool:
        """Serve one request; False when it asked the watcher to stop."""
        client, _ = server.accept()
        with client:
            client.settimeout(2.0)
            try:
                pid, uid, _gid = struct.unpack("3i", client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                if uid != os.getuid():
                    return True
                line = b""
                while not line.endswith(b"\n") and len(line) < MAX_REQUEST:
                    chunk = client.recv(65536)
                    if not chunk:
                        return True
                    line += chunk
                request, _, root = line[:-1].decode("utf-8", "surrogateescape").partition(" ")
                if request == "rank":  # rank DEPTH INLINE ALLOWED QUERY-HEX ROOT (lab.search.watch.rank)
                    root = root.split(" ", 4)
                    root, args = root[-1], root[:-1]
                if root != self.root:
                    client.sendall(b"wrong lab\n")  # two roots whose names hash alike: the reader scans
                    return True
                if request == "sync":
                    self.take(self.inotify.read())  # what the kernel reported before the request came
                    try:
                        self.apply()
                    except Exception as e:  # the reader then scans itself; the next apply starts over
                        self.rescan = True
                        self.log(f"sync failed: {type(e).__name__}: {e}")
                        client.sendall(b"failed\n")
                        return True
                    client.sendall(b"ok\n")
                elif request == "rank":
                    client.settimeout(None)  # the reader decides how long it waits
                    client.sendall(self.rank(args) + b"\n")
                elif request == "status":
                    client.sendall(json.dumps(self.status()).encode() + b"\n")
                elif request == "stop":
                    self.log(f"stopped by pid {pid}")
                    client.sendall(b"ok\n")
                    return False
            except OSError:
                pass
        return True

    # -- semantic ranking -------------------------------------------------------------------------------------

    def rank(self, args: list[str]) -> bytes:
        """Answer a `rank` request: `ok ID:SCORE ...`, or `none` when this watcher cannot (the reader then ranks
        itself). The model loads at the first request and stays; the vectors stay mapped until they change."""
        try:
            depth, inline, allowed, hexed = int(args[0]), args[1] == "1", args[2], args[3]
            text = bytes.fromhex("" if hexed == "-" else hexed).decode("utf-8", "surrogateescape")
            ids = None if allowed == "*" else [int(i) for i in allowed.split(",")]
        except (ValueError, IndexError):
            return b"none"
        try:
            self.take(self.inotify.read())  # rank the index as of now, like `sync`
            self.apply()
            if self.gone or self.conn is None:
                return b"none"
            from lab.search import embed, model

            if model.available() is not None:
                return b"none"
            model.single_thread()  # as a search does (before NumPy loads): the same sums, the same scores
            if inline:  # the few documents a search embeds itself (an edited note): before ranking
                covered, total = embed.coverage(self.conn)
                if 0 < total - covered <= embed.INLINE and not embed.running(self.root):
                    embed.embed_missing(self.conn)
            ranked = embed.ranker(self.conn, text)(ids, depth)
            self.ranked += 1
        except Exception as e:  # the model or the index failed here: the reader ranks itself
            self.rescan = self.rescan or isinstance(e, sqlite3.Error)
            self.log(f"rank failed: {type(e).__name__}: {e}")
            return b"none"
        return format_ranking(ranked)

    # -- events ---------------------------------------------------------------------------------------------

    def take(self, events) -> None:
        """Note what `events` changed: indexed files into `pending`, anything structural as a rescan."""
        for wd, mask, name in events:
            rel = self.dirs.get(wd)
            if mask & RESCAN:
                if rel == "" and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    self.gone = True  # the lab itself was deleted or moved away
                self.rescan = True
            elif rel is None or not name or name[0] == ".":
                continue
            elif mask & IN_ISDIR:
                if leads_to_index(f"{rel}/{name}" if rel else name):
                    self.rescan = True
            else:
                path = f"{rel}/{name}" if rel else name
                if kind_of(path):
                    self.pending.add(path)

    def apply(self) -> None:
        """Bring the index up to date with what the events reported (a full sync when they asked for one)."""
        if not os.path.isdir(os.path.join(self.root, layout.EXPERIMENTS)):
            self.gone = True  # the lab was deleted (and its index must not be made again)
            return
        self._check_index()
        paths, self.pending = sorted(self.pending), set()
        if self.rescan:
            self.rescan = False
            self._watch_all()
            self._warn(index.sync(self.conn, self.root))
            self.rescans += 1
        if paths:  # after a rescan too: it trusts sizes and mtimes, and an edit may have kept both
            self._warn(index.refresh(self.conn, Path(self.root), paths, force=True))
            self.applied += len(paths)

    def _warn(self, stats) -> None:
        for message in stats.warnings:  # a malformed file: searches no longer read it, so say it here
            self.log(f"warning: {message}")

    def _check_index(self) -> None:
        """(Re)open the index when it is new, deleted or replaced (by `lab reindex`, say): then a full sync."""
        path = index.index_path(self.root)
        if self.conn is not None and _identity(path) == self.db_id:
            return
        if self.conn is not None:
            self.conn.close()
        self.conn = index.connect(self.root)
        self.db_id = _identity(path)
        self.rescan = True

    def _watch_all(self) -> None:
        """Watch every directory the index covers (`lab.core.layout.index_dirs`; known ones keep their wd)."""
        wanted = index_dirs(self.root)
        dirs = {}
        for rel in wanted:
            wd = self.inotify.add(os.path.join(self.root, rel) if rel else self.root)
            if wd is not None:
                dirs[wd] = rel
        self.dirs = dirs

    def status(self) -> dict:
        return {"pid": os.getpid(), "root": self.root, "directories": len(self.dirs), "since": self.since,
                "applied": self.applied, "rescans": self.rescans, "ranked": self.ranked}

    def log(self, message: str) -> None:
        stamp = now_iso("seconds")
        sys.stderr.write(f"{stamp} lab watch: {message}\n")
        sys.stderr.flush()


def _identity(path) -> tuple[int, int] | None:
    """Which file `path` is (device, inode), or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
