"""A ranking process forked before the freshness scan: a search without `lab watch` embeds its query meanwhile.

Without a watcher, a hybrid search does two long things that do not depend on each other: the freshness scan
(`lab.search.index.sync`: a stat of every indexed file, ~40 ms on a 10,000-note lab) and loading NumPy, the
tokenizer and the model to embed the query (~75 ms). Done one after the other they cost their sum. So when the
search finds no watcher, it forks one child before it scans (`start`); the child loads the model and embeds the
query on the other core while the parent scans and ranks by keyword, then waits for one request, ranks the
synced index by meaning exactly as the watcher would (lab.search.embed.ranker), answers, and exits. The parent
never imports NumPy for it. The request and the answer are the watcher's (`lab.search.watch`):
`DEPTH INLINE ALLOWED`, then `ok ID:SCORE ...` or `none`, after which the parent ranks itself.

The fork comes before this process opens the index (a SQLite connection must not cross a fork), on Linux,
and only from a process with one thread. The child never writes to stdout (it is /dev/null there) or stderr,
and cannot outlive its parent's search: the parent reaps it (`close`), killing it if no answer was taken, and
a child whose parent died sees the socket close and exits.
"""

from __future__ import annotations

import os
import sys

TIMEOUT = 60.0  # seconds the parent waits for an answer (a cold page cache can make the model's load slow)

# False in a long-lived process that calls lab's search itself and must never be forked (a test suite running the
# CLI in its own process): the search then ranks by meaning in its own process, as it does where no fork can run.
enabled = True


class Ranker:
    """The parent's handle on the forked child: `begin(allowed, depth, inline)` sends the request and returns
    the function that waits for the ranking (None when the child cannot give one); `close()` reaps the child."""

    def __init__(self, pid: int, sock):
        self.pid = pid
        self.sock = sock
        self.answered = False

    def begin(self, allowed, depth: int, inline: bool = False):
        from lab.search import watch

        if self.sock is None:
            return lambda: None
        ids = "*" if allowed is None else ",".join(map(str, allowed))
        try:
            self.sock.sendall(f"{int(depth)} {int(inline)} {ids}\n".encode())
        except OSError:
            return lambda: None

        def finish():
            reply = _read_line(self.sock)
            self.answered = reply is not None
            return None if reply is None else watch.parse_ranking(reply)

        return finish

    def close(self) -> None:
        """End the child: it exits on its own once it has answered; otherwise it is killed. Then reaped."""
        import signal

        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.pid:
            if not self.answered:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def start(root, text: str) -> Ranker | None:
    """Fork the child that embeds `text` and will rank the lab at `root` by meaning; None where it cannot run or
    would not help (not Linux, one usable core, more than one thread in this process, or semantic search
    unavailable here), and never where `enabled` is False."""
    threading = sys.modules.get("threading")
    if not enabled or not sys.platform.startswith("linux") or (threading is not None and threading.active_count() > 1):
        return None
    if len(os.sched_getaffinity(0)) < 2:  # nothing would run side by side
        return None
    from lab.search import model

    if model.available() is not None:
        return None
    import _socket  # `socket` itself imports enum and selectors

    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except OSError:
        parent.close()
        child.close()
        return None
    if pid == 0:  # the child
        code = 1
        try:
            parent.close()
            code = _serve(child, os.fspath(root), text)
        except BaseException:  # an interrupt, a bug: the parent then ranks itself, and nothing is printed here
            pass
        finally:
            os._exit(code)
    child.close()
    parent.settimeout(TIMEOUT)
    return Ranker(pid, parent)


def _serve(sock, root: str, text: str) -> int:
    """The child: embed the query, wait for the request, answer it."""
    import warnings

    warnings.simplefilter("ignore")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # stderr is kept, so that `python -X importtime` still shows what the child imports
    os.close(null)
    query = None
    try:
        from lab.search import model

        model.single_thread()  # as a search does: one query's small matrices
        query = model.load(aligned=False).embed([text], model.QUERY_TOKENS)[0]
    except Exception:
        pass
    line = _read_line(sock)
    if line is None:
        return 0  # the parent needs no ranking after all (or is gone)
    answer = b"none"
    if query is not None:
        try:
            answer = _rank(root, query, line)
        except Exception:
            pass
    sock.sendall(answer + b"\n")
    return 0


def _rank(root: str, query, line: bytes) -> bytes:
    from lab.search import embed, index, watch

    depth, inline, allowed = line.decode().split(" ")
    ids = None if allowed == "*" else [int(i) for i in allowed.split(",")]
    conn = index.connect(root, create=False)
    if conn is None:
        return b"none"
    try:
        if inline == "1":  # the few documents the search embeds itself (an edited note): before ranking
            embed.embed_missing(conn)
        return watch.format_ranking(embed.ranker(conn, vector=query)(ids, int(depth)))
    finally:
        conn.close()


def _read_line(sock) -> bytes | None:
    """One line from `sock` without its newline; None at end of file, on a timeout or an error."""
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                return None
            data += chunk
    except OSError:
        return None
    return data[:-1]
