"""The state of a run: one of `State`, in its record (`lab.runs.record`), its queue row (`lab.runs.local.queue`),
`lab status` and every executor.

`State` is a `StrEnum`: each member is the string written in records and shown to users (`State.QUEUED ==
"queued"`), so records stay plain JSON and old records read as before.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"  # waiting for its executor
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the program exited 0
    FAILED = "failed"  # it exited non-zero, was killed, or could not start
    CANCELLED = "cancelled"  # lab stop --now, lab cancel, scancel
    INTERRUPTED = "interrupted"  # it was stopped from outside (the runner got SIGTERM, a node failed): queued again
    STALE = "stale"  # shown by `lab status` only, never recorded: it succeeded, but its inputs changed since


STATES: tuple[State, ...] = (State.QUEUED, State.RUNNING, State.SUCCEEDED, State.FAILED, State.CANCELLED,
                             State.INTERRUPTED)  # the states a record can hold
FINISHED: tuple[State, ...] = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
ACTIVE: tuple[State, ...] = (State.QUEUED, State.RUNNING)
ENDED: tuple[State, ...] = (*FINISHED, State.INTERRUPTED)  # what an attempt's end may record
