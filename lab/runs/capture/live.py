"""The live capture beside a job: `python -m lab.runs.capture.live SPEC-JSON` (started by `lab.runs.attempt`).

The program writes straight to its log, as without capture (the log stays byte for byte what it wrote, and no
pipe can ever slow or block it); this process, at low priority in its own session, reads the log as it grows and
the output directory's files, and writes the progress `lab status` shows (`logs/S.capture.json`). When its
standard input closes (the job ended and its supervisor closed the pipe, or the supervisor died) it reads the
rest, writes the full capture (`logs/S.captured.jsonl` and the summary, `done`) and exits.
"""

from __future__ import annotations

import json
import os
import select
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
    while True:
        try:
            ready, _, _ = select.select([stdin_fd], [], [], POLL_S)
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
        # Writing the summary costs little, but merging a long history does not: write it rarely then.
        if dirty and time.monotonic() - last_write >= max(MIN_WRITE_S, 20 * spent):
            write_progress(spec["metrics"], cap.result())
            last_write = time.monotonic()
            dirty = False
    cap.poll(final=True)
    write_result(spec["metrics"], cap.result())
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        os.nice(10)
    except OSError:
        pass
    return serve(json.loads(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
