"""The live capture beside a job: `python -m lab.runs.capture.live SPEC-JSON` (started by `lab.runs.attempt`).

The program writes straight to its log, as without capture (the log stays byte for byte what it wrote, and no
pipe can ever slow or block it); this process, at a low priority (SCHED_BATCH; nice 10 as a fork of the supervisor,
else 19) in its own session and using at most a tenth of a core while the job runs (`SHARE`), reads the log as it
grows and the output directory's files, and writes the progress `lab status` shows (`logs/S.capture.json`). When its
standard input closes (the job ended and its supervisor closed the pipe, or the supervisor died) it reads the
rest, writes the full capture (`logs/S.captured.jsonl` and the summary, `done`) and exits.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import time

POLL_S = 1.0  # how often the log and the files are read while the job runs
MIN_WRITE_S = 2.0  # the progress summary is written at most this often
SHARE = 0.1  # at most this share of one core while the job runs (the rest of a big output is read when it ends)


def spec(log_path, offset: int, output_dirs, options, since: float, metrics_path) -> dict:
    return {"log": str(log_path), "offset": offset, "output_dirs": [str(d) for d in output_dirs],
            "options": options.to_json(), "since": since, "metrics": str(metrics_path)}


def capture_from(spec: dict):
    from lab.runs.capture.merge import Capture
    from lab.runs.capture.patterns import Options

    return Capture(spec["log"], spec["offset"], spec["output_dirs"], Options.from_json(spec["options"]),
                   since=spec["since"], metrics_path=spec["metrics"])


def serve(spec: dict, stdin_fd: int = 0) -> int:
    from lab.runs.capture import write_progress, write_result

    cap = capture_from(spec)
    next_write = 0.0
    dirty = False
    wait = POLL_S
    while True:
        try:
            ready, _, _ = select.select([stdin_fd], [], [], wait)
        except InterruptedError:
            ready = []
        if ready:
            try:
                data = os.read(stdin_fd, 4096)
            except OSError:
                data = b""
            if not data:
                break  # the job ended (or its supervisor died)
        started = time.monotonic()
        # A slice of the new output at a time (a program that prints a lot is read bit by bit, the rest when it
        # ends): no burst of reading beside it.
        dirty = cap.poll(budget_s=POLL_S * SHARE) or dirty
        if dirty and time.monotonic() >= next_write:
            # The summary holds the latest values only (no rows); still, merging a long history costs: rarely then.
            begun = time.monotonic()
            write_progress(spec["metrics"], cap.result(rows=False))
            next_write = time.monotonic() + max(MIN_WRITE_S, 20 * (time.monotonic() - begun))
            dirty = False
        # At most a tenth of one core while the job runs: a program that prints a lot is not slowed by the reading
        # of its own output, even where every core is busy.
        wait = max(POLL_S, (time.monotonic() - started) * (1 - SHARE) / SHARE)
    cap.poll(final=True)
    write_result(spec["metrics"], cap.result())
    return 0


class Forked:
    """The live capture in a fork of its supervisor, which has every module the capture needs loaded already: no
    interpreter to start per job (`python -m` costs tens of milliseconds a job, and the job's end waits for it).
    Answers as much of `subprocess.Popen` as `lab.runs.attempt` uses: `pid`, `stdin.close()`, `wait(timeout)`."""

    def __init__(self, spec: dict, close=()):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the capture: its own session, low priority, default signals; never returns
            code = 1
            try:
                os.close(write)
                for fd in close:  # the job's GPU lease is the job's, not the capture's
                    os.close(fd)
                os.setsid()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                gc.enable()
                # Nice 10, not 19: the job's end (and the next job of the queue) waits for its last reading.
                low_priority(10)
                code = serve(spec, read)
            finally:
                os._exit(code)
        os.close(read)
        self.pid = pid
        self.stdin = os.fdopen(write, "wb", buffering=0)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status once it ended (`subprocess.TimeoutExpired` after `timeout` seconds); woken by its end,
        not by a poll."""
        import subprocess

        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = None
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    done, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    return 0  # reaped already (its supervisor reaps what ends among its children)
                if done:
                    return os.waitstatus_to_exitcode(status)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired("lab.runs.capture.live", timeout)
                step = 0.05 if left is None else min(0.05, left)
                if pidfd is not None:
                    select.select([pidfd], [], [], step if left is not None else None)
                else:
                    time.sleep(min(step, 0.005))
        finally:
            if pidfd is not None:
                os.close(pidfd)


def low_priority(nice: int) -> None:
    """Niceness `nice` (a process cannot take it back) and SCHED_BATCH (never preempts the job on waking)."""
    try:
        os.nice(max(0, nice - os.nice(0)))
    except OSError:
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    low_priority(19)  # the job comes first
    return serve(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
