"""A word when the queue needs you: a job failed, the queue drained, a run was interrupted.

In `lab.yaml`:

    notify:
      urls:                              # apprise URLs: ntfy, Slack, email, Matrix, desktop, JSON webhooks, ...
        - ntfys://ntfy.sh/my-lab-topic
        - json://127.0.0.1:8080/lab
      on_event: [notify-send, "{title}", "{message}"]   # a command of your own (no shell); the event as JSON on stdin
      events: [failed, drained, interrupted]            # which events (default: all three)
      timeout: 30                                       # seconds one delivery may take

`notify: [URL, ...]` (or one URL) is short for `urls`. `on_event` is an argument list (a string is split as a shell
would split it, and run without one) run from the lab root with `LAB_EVENT` and `LAB_ROOT` in its environment;
`{title}`, `{message}` and `{event}` (the event's name) in its arguments are replaced.

Why apprise: one maintained library speaks to some hundred services through one URL syntax, so lab writes no
transport of its own; it is imported only when a message is sent (~70 ms, in the background).

Why a process of its own: a notification must never fail or slow the queue. `send_detached` (and `Sender`, the
runner's) starts a short-lived detached `python -m lab.runs.notify` that delivers the event within `timeout` per
target and writes what failed to the runner's log (`.lab/runner.log`); the caller returns at once and never learns
whether it worked. (A thread in the runner would be cheaper, but the runner forks a supervisor for every job, and a
fork taken while another thread holds a lock can leave the child stuck.) The Slurm node, which ends with its job,
calls `deliver` itself, bounded by the same timeout.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab.core import layout
from lab.core.keys import strings
from lab.errors import BadInput
from lab.runs.state import State

TYPE_CHECKING = False  # typing's costs an import; this is only for the type checker
if TYPE_CHECKING:
    from lab.core.workspace import Workspace

EVENTS = ("failed", "drained", "interrupted")
KEYS = ("urls", "on_event", "events", "timeout")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 600.0
_TYPES = {"failed": "failure", "interrupted": "warning", "drained": "success", "test": "info"}


@dataclass(frozen=True)
class NotifyConfig:
    """Where notifications go: apprise URLs and/or a command, for which events, within what time."""

    urls: tuple[str, ...] = ()
    on_event: tuple[str, ...] | None = None
    events: frozenset = frozenset(EVENTS)
    timeout: float = DEFAULT_TIMEOUT_S

    def wants(self, event: dict) -> bool:
        return event.get("event") == "test" or event.get("event") in self.events


def parse_config(value, where: str) -> NotifyConfig | None:
    """The `notify:` value of lab.yaml, checked: one BadInput line naming `where` when it is wrong."""
    if value is None:
        return None
    if isinstance(value, (str, list)):
        value = {"urls": value}
    if not isinstance(value, dict):
        raise BadInput(f"{where}: notify must be a mapping such as {{urls: [ntfys://ntfy.sh/TOPIC]}}, or a list of URLs")
    for key in value:
        if key not in KEYS:
            raise BadInput(f"{where}: unknown notify option {key!r} (known: {', '.join(KEYS)})")
    urls = strings(value.get("urls") or [], f"{where}: notify.urls must be a list of apprise URLs such as ntfys://ntfy.sh/TOPIC")
    for i, url in enumerate(urls, start=1):
        scheme, sep, rest = url.strip().partition("://")
        if not sep or not scheme or not rest or not scheme.replace("+", "").replace("-", "").isalnum():
            # Not echoed: a URL often carries a token.
            raise BadInput(f"{where}: notify.urls: entry {i} is not a URL such as ntfys://ntfy.sh/TOPIC or json://host:port/path")
    hook = value.get("on_event")
    if hook is not None:
        if isinstance(hook, str):
            try:
                hook = shlex.split(hook)
            except ValueError as e:
                raise BadInput(f"{where}: notify.on_event: {e}") from None
        if not isinstance(hook, list) or not hook or not all(isinstance(a, str) for a in hook) or not hook[0].strip():
            raise BadInput(f"{where}: notify.on_event must be a command as a list of arguments, such as [notify-send, '{{title}}']")
        if any("\0" in a for a in hook):
            raise BadInput(f"{where}: notify.on_event must not hold a NUL byte")
        hook = tuple(hook)
    events = strings(value.get("events", list(EVENTS)), f"{where}: notify.events must be a list of: {', '.join(EVENTS)}")
    for e in events:
        if e not in EVENTS:
            raise BadInput(f"{where}: notify.events: unknown event {e!r} (known: {', '.join(EVENTS)})")
    timeout = value.get("timeout", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout <= MAX_TIMEOUT_S):
        raise BadInput(f"{where}: notify.timeout must be a number of seconds between 0 and {MAX_TIMEOUT_S:g}, not {timeout!r}")
    if not urls and hook is None:
        raise BadInput(f"{where}: notify needs urls or on_event (or both)")
    return NotifyConfig(urls=tuple(u.strip() for u in urls), on_event=hook, events=frozenset(events), timeout=float(timeout))


def config_for(workspace: Workspace) -> NotifyConfig | None:
    """The lab's notification settings (None when lab.yaml has no `notify:`)."""
    return parse_config(workspace.config.get("notify"), str(Path(workspace.root) / "lab.yaml"))


# -- events ---------------------------------------------------------------------------------------------------


def _base(kind: str, root) -> dict:
    return {"event": kind, "lab": str(root), "host": socket.gethostname(), "time": _now()}


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _lab_name(root) -> str:
    return Path(str(root)).name or str(root)


def job_event(kind: str, record: dict, root) -> dict:
    """The event for a job that `failed` or was `interrupted`, from its run record."""
    exp, setting = record.get("experiment"), record.get("setting")
    event = _base(kind, root)
    event.update({
        "experiment": exp, "setting": setting, "state": record.get("state"), "attempt": record.get("attempt"),
        "exit_code": record.get("exit_code"), "signal": record.get("signal"), "reason": record.get("reason"),
        "duration_s": record.get("duration_s"), "gpus": record.get("gpus"),
        "log": f"experiments/{exp}/logs/{setting}.log",
        "metrics": {k: v for k, v in (record.get("metrics") or {}).items() if _is_number(v)},
    })
    what = f"{exp}/{setting}"
    if kind == "failed":
        how = f"exit {record['exit_code']}" if record.get("exit_code") is not None else (
            f"signal {record['signal']}" if record.get("signal") else (record.get("reason") or "failed"))
        message = f"{what} failed ({how})"
        if record.get("duration_s") is not None:
            message += f" after {_duration(record['duration_s'])}"
        if record.get("reason") and record.get("exit_code") is not None:
            message += f": {record['reason']}"
        message += f"; log: {event['log']}"
    else:
        message = f"{what} was interrupted: {record.get('reason') or 'its runner stopped'}"
    event["title"] = f"lab {_lab_name(root)}: {what} {kind}"
    event["message"] = message
    return event


class Summary:
    """What a runner finished since the queue was last empty: the counts and the best run, for `drained`."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.runs: list[dict] = []

    def add(self, record: dict) -> None:
        state = record.get("state") or "unknown"
        self.counts[state] = self.counts.get(state, 0) + 1
        if state == State.SUCCEEDED:
            self.runs.append({"experiment": record.get("experiment"), "setting": record.get("setting"),
                              "metrics": record.get("metrics") or {}})

    def __bool__(self) -> bool:
        return bool(self.counts)

    def best(self) -> dict | None:
        """The best succeeded run by the metric `lab compare` would choose (eval_accuracy, eval_loss, ...)."""
        from lab.core.metrics import best_metric, direction

        keys: dict[str, None] = {}
        for run in self.runs:
            keys.update((k, None) for k, v in run["metrics"].items() if _is_number(v))
        metric = best_metric(list(keys))
        if metric is None:
            return None
        candidates = [r for r in self.runs if _is_number(r["metrics"].get(metric))]
        if not candidates:
            return None
        pick = max if (direction(metric) or "max") == "max" else min
        best = pick(candidates, key=lambda r: r["metrics"][metric])
        return {"experiment": best["experiment"], "setting": best["setting"], "metric": metric,
                "value": best["metrics"][metric]}

    def event(self, root) -> dict:
        """The `drained` event: `12 succeeded, 1 failed; best eval_accuracy 0.912 (exp3/lr-high)`."""
        event = _base("drained", root)
        counts = {state: self.counts.get(state, 0) for state in (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.INTERRUPTED)}
        event.update(counts)
        best = self.best()
        event["best"] = best
        parts = [f"{counts['succeeded']} succeeded", f"{counts['failed']} failed"]
        parts += [f"{counts[s]} {s}" for s in (State.CANCELLED, State.INTERRUPTED) if counts[s]]
        message = ", ".join(parts)
        if best is not None:
            message += f"; best {best['metric']} {_format(best['value'])} ({best['experiment']}/{best['setting']})"
        event["title"] = f"lab {_lab_name(root)}: queue done" + (" with failures" if counts["failed"] else "")
        event["message"] = message
        return event


def probe_event(root) -> dict:
    """A test message (`lab notify --test`), sent whatever `events` says."""
    event = _base("test", root)
    event["title"] = f"lab {_lab_name(root)}: test"
    event["message"] = "This is a test of lab's notifications; they work."
    return event


def _is_number(value) -> bool:
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- delivery -------------------------------------------------------------------------------------------------


def deliver(config: NotifyConfig, event: dict, log: Callable[[str], None], cwd=None) -> list[tuple[str, bool, str]]:
    """Send one event to every URL and the command, now; return (target, ok, why) each. Never raises."""
    results = []
    if not config.wants(event):
        return results

    def note(target: str, ok: bool, why: str) -> None:
        results.append((target, ok, why))
        if not ok:  # at once: a later target may take its whole timeout
            log(f"notify: {event.get('event')} to {target} failed: {why}")

    for url in config.urls:
        try:
            ok, why = _send_url(url, event, config.timeout)
        except Exception as e:  # a bug in a transport must not reach the runner
            ok, why = False, f"{type(e).__name__}: {e}"
        note(redact(url), ok, why)
    if config.on_event:
        note(f"on_event {config.on_event[0]}", *_run_hook(config.on_event, event, config.timeout, cwd))
    return results


def _send_url(url: str, event: dict, timeout: float) -> tuple[bool, str]:
    import logging

    import apprise

    obj = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
    if not obj.add(_with_timeouts(url, timeout)):
        return False, "apprise does not understand this URL (see https://github.com/caronc/apprise/wiki)"
    kind = getattr(apprise.NotifyType, _TYPES.get(event.get("event"), "info").upper())
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = obj.notify(title=event.get("title", ""), body=event.get("message", ""), notify_type=kind)
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    return bool(ok), ("" if ok else (lines[-1] if lines else "not delivered"))


def _with_timeouts(url: str, timeout: float) -> str:
    # apprise's connect (cto) and read (rto) timeouts, unless the URL sets its own.
    if "cto=" in url or "rto=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}cto={min(timeout, 10):g}&rto={timeout:g}"


def redact(url: str) -> str:
    """A URL fit for a log: the scheme and host only (URLs often carry tokens and passwords)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1].split("?", 1)[0]
    return f"{scheme}://{host}/..."


def _run_hook(argv: tuple[str, ...], event: dict, timeout: float, cwd) -> tuple[bool, str]:
    fill = {"{title}": str(event.get("title", "")), "{message}": str(event.get("message", "")),
            "{event}": str(event.get("event", ""))}
    args = []
    for arg in argv:
        for key, value in fill.items():
            arg = arg.replace(key, value)
        args.append(arg)
    env = dict(os.environ, LAB_EVENT=str(event.get("event", "")), LAB_ROOT=str(event.get("lab", "")))
    try:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    except OSError as e:
        return False, f"cannot start {argv[0]}: {e.strerror or e}"
    try:
        out, _ = proc.communicate(json.dumps(event, ensure_ascii=False).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.communicate()
        return False, f"timed out after {timeout:g} s (killed)"
    except OSError as e:  # the command closed its stdin early: it still decides by its exit status
        proc.wait()
        out = b""
        if proc.returncode == 0:
            return True, ""
        return False, f"exit {proc.returncode} ({e.strerror or e})"
    if proc.returncode != 0:
        tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] if out else []
        return False, f"exit {proc.returncode}" + (f": {tail[0][:300]}" if tail else "")
    return True, ""


class Sender:
    """Sends events from a long-lived process (the runner): each from its own short-lived detached process.

    Not a thread: the runner forks a supervisor for every job, and a fork taken while a thread holds a lock (an
    import, the log's buffer) can leave the child stuck; a separate process per message has no such moment and
    outlives the runner, so the last word goes out even when the runner exits at once.
    """

    def __init__(self, workspace: Workspace, log: Callable[[str], None]):
        self.workspace = workspace
        self.log = log
        self._procs: list = []
        try:
            self.config = config_for(workspace)
        except BadInput as e:  # lab.yaml changed since lab run checked it
            log(f"{e}; no notifications")
            self.config = None

    def send(self, event: dict) -> None:
        if self.config is None or not self.config.wants(event):
            return
        self._procs = [p for p in self._procs if p.poll() is None]  # reap the ones that are done
        try:
            self._procs.append(send_detached(self.workspace, event, config=self.config))
        except OSError as e:  # no process could be started (out of memory, no pids): only the message is lost
            self.log(f"notify: could not start the sender: {e}")


def send_detached(workspace: Workspace, event: dict, config: NotifyConfig | None = None, log_path=None):
    """Deliver `event` from a short-lived detached process (`python -m lab.runs.notify`) that writes what failed to
    the runner's log; return its Popen (None when nothing is to be sent). The caller never waits for it."""
    from lab.core import process

    config = config if config is not None else config_for(workspace)
    if config is None or not config.wants(event):
        return None
    log_path = log_path or (workspace.state_dir / layout.RUNNER_LOG)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    return process.spawn_detached([sys.executable, "-m", "lab.runs.notify", "--root", str(workspace.root),
                                   "--event", json.dumps(event, ensure_ascii=False)], log_path, cwd=workspace.root)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from lab.core.workspace import Workspace

    parser = argparse.ArgumentParser(prog="python -m lab.runs.notify", description="Deliver one lab event (used by lab).")
    parser.add_argument("--root", required=True)
    parser.add_argument("--event", required=True, help="the event as JSON")
    args = parser.parse_args(argv)
    ws = Workspace(args.root)

    def log(message: str) -> None:
        print(f"{_now()} {message}", flush=True)

    try:
        config = config_for(ws)
        event = json.loads(args.event)
    except (BadInput, ValueError) as e:
        log(f"notify: {e}")
        return 2
    if config is None:
        return 0
    results = deliver(config, event, log, cwd=ws.root)
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
