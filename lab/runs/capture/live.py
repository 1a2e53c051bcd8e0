"""The live capture beside a job: `python -m lab.runs.capture.live SPEC-JSON` (started by `lab.runs.attempt`).

The program writes straight to its log, as without capture (the log stays byte for byte what it wrote, and no
pipe can ever slow or block it); this process, at the lowest priority (nice 19, SCHED_BATCH) in its own session and
using at most a quarter of a core while the job runs, reads the log as it grows and
the output directory's files, and writes the progress `lab status` shows (`logs/S.capture.json`). When its
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
    last_write = 0.0
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
        dirty = cap.poll() or dirty
        spent = time.monotonic() - started
        # At most a quarter of one core while the job runs (the rest is read when it ends): a program that prints
        # a lot is not slowed by the reading of its own output.
        wait = max(POLL_S, 3 * spent)
        # Writing the summary costs little, but merging a long history does not: write it rarely then.
        if dirty and time.monotonic() - last_write >= max(MIN_WRITE_S, 20 * spent):
            write_progress(spec["metrics"], cap.result())
            last_write = time.monotonic()
            dirty = False
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
                try:
                    os.nice(10)
                except OSError:
                    pass
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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        os.nice(19)  # the job comes first
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    return serve(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
