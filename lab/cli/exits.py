"""How every `lab` command ends: its exit status, or one line on stderr and a non-zero status.

The one error mapping of the CLI, shared by the click CLI (lab/cli/app.py, which first turns click's own usage
errors into lines) and the click-free fast path (lab/cli/fast.py). Imports nothing beyond lab.errors: the fast
path uses it.
"""

from __future__ import annotations

import os
import sys

from lab.errors import LabError, missing_extra, os_error_message
from lab.runs.state import State


def describe(error: BaseException) -> tuple[str, int]:
    """The line and exit status for an error: LabError its message (1, BadInput 2), Ctrl-C 130, a missing
    optional extra the install line (1), an OSError where and what (1), anything else an internal error (1)."""
    if isinstance(error, LabError):
        return str(error), error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return State.INTERRUPTED, 130
    if isinstance(error, OSError):  # the system around lab: a full disk, a permission, a file name too long
        return os_error_message(error), 1
    return missing_extra(error) or f"internal error: {type(error).__name__}: {error} (run with --debug for the traceback)", 1


def fail(message: str, code: int) -> None:
    """Print `lab: error: MESSAGE` (its first line) on stderr and exit with `code`."""
    sys.stderr.write(f"lab: error: {message.splitlines()[0] if message else 'failed'}\n")
    sys.stderr.flush()
    sys.exit(code)


def run(call, debug: bool = False, translate=None) -> None:
    """Call `call()` and exit with the status it returns (None is 0). Errors become one line (`describe`); with
    `debug`, lab's own errors and bugs raise instead (a traceback). `translate(error)` may claim an error first
    and return its (line, status): the click CLI's usage errors."""
    try:
        code = call()
    except BrokenPipeError:
        # `lab search ... | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt as e:
        fail(*describe(e))
    except Exception as e:
        claimed = translate(e) if translate is not None else None
        if claimed is None:
            if debug:
                raise
            claimed = describe(e)
            for line in getattr(e, "lines", [])[:-1]:  # several problems (BadInputs): one line each
                sys.stderr.write(f"lab: error: {line}\n")
            if getattr(e, "lines", None):
                claimed = e.lines[-1], claimed[1]
        fail(*claimed)
    sys.exit(code if isinstance(code, int) else 0)
