"""The user's own capture patterns and switches: `capture:` in the report's front matter (per experiment) or in
`lab.yaml` (per lab; the experiment's wins).

    capture:
      patterns:
        - 'val acc (?P<val_acc>[\\d.]+) at step (?P<step>\\d+)'   # named groups: metrics, and the step
        - '(?P<name>\\w+) is (?P<value>[\\d.]+)'                 # or a name and a value group
      output: false      # no scraping of printed lines (patterns and files still read)
      files: false       # no reading of trainer_state.json, event files, metrics.csv

`capture: false` turns capture off. A pattern is a Python regular expression matched against each line of
output (ANSI colours stripped). One that runs away (catastrophic backtracking) is stopped after `BUDGET_S` on
one line, reported once, and not used again; the job itself never waits for it (capture runs beside it).
"""

from __future__ import annotations

import re
import signal
import threading

from lab.errors import BadInput

BUDGET_S = 0.5
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class _Runaway(Exception):
    pass


class Options:
    """What capture does for one experiment."""

    def __init__(self, enabled=True, output=True, files=True, patterns=()):
        self.enabled, self.output, self.files, self.patterns = enabled, output, files, list(patterns)

    def to_json(self) -> dict:
        return {"enabled": self.enabled, "output": self.output, "files": self.files, "patterns": self.patterns}

    @classmethod
    def from_json(cls, data: dict | None) -> "Options":
        data = data or {}
        return cls(data.get("enabled", True), data.get("output", True), data.get("files", True), data.get("patterns") or ())


def options_from(value, where: str, base: Options | None = None) -> Options:
    """Options from a `capture:` value (None: `base` or the defaults); BadInput naming `where` when malformed."""
    if value is None:
        return base or Options()
    if isinstance(value, bool):
        return Options(enabled=value)
    if isinstance(value, str) and value.lower() in ("off", "on", "no", "yes"):
        return Options(enabled=value.lower() in ("on", "yes"))
    if not isinstance(value, dict):
        raise BadInput(f"{where}: 'capture' must be true, false or a mapping (patterns, output, files)")
    unknown = set(value) - {"patterns", "output", "files", "enabled"}
    if unknown:
        raise BadInput(f"{where}: capture: unknown key {sorted(unknown)[0]!r} (known: patterns, output, files, enabled)")
    from lab.core.keys import strings

    patterns = strings(value.get("patterns") or [], f"{where}: capture: patterns must be a list of regular expressions")
    for p in patterns:
        compile_pattern(p, where)
    out = Options(bool(value.get("enabled", True)), bool(value.get("output", True)), bool(value.get("files", True)),
                  patterns)
    return out


def compile_pattern(text: str, where: str) -> re.Pattern:
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise BadInput(f"{where}: capture pattern {text!r}: {e}") from None
    groups = set(pattern.groupindex)
    if not groups - {"step"}:
        raise BadInput(f"{where}: capture pattern {text!r} has no named group for a value "
                       "(write (?P<loss>[\\d.]+), or (?P<name>...) with (?P<value>...))")
    if ("name" in groups) != ("value" in groups):
        raise BadInput(f"{where}: capture pattern {text!r}: (?P<name>...) and (?P<value>...) go together")
    return pattern


def options_for(experiment) -> Options:
    """The capture options of an experiment: its report's `capture:`, else lab.yaml's, else the defaults."""
    ws = experiment.workspace
    base = options_from(ws.config.get("capture"), str(ws.root / "lab.yaml"))
    return options_from(experiment.meta().get("capture"), str(experiment.report_path), base)


class Patterns:
    """Compiled user patterns, scanned over output with a guard against runaway matching."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.compiled = [re.compile(t) for t in self.texts]
        self.dead: set[int] = set()
        self.notes: list[str] = []
        self._current = (-1, -1)

    def __bool__(self):
        return bool(self.compiled)

    def scan(self, chunk: bytes, series) -> None:
        text = chunk.decode("utf-8", "replace")
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        lines = text.split("\n")
        with _Watchdog(self) as dog:
            for i, pattern in enumerate(self.compiled):
                if i in self.dead:
                    continue
                try:
                    for n, line in enumerate(lines):
                        self._current = (i, n)
                        m = pattern.search(line)
                        if m is not None:
                            _take(m, series)
                except _Runaway:
                    self.dead.add(i)
                    self.notes.append(f"capture pattern {self.texts[i]!r} stopped: it ran over {BUDGET_S} s on one "
                                      "line (catastrophic backtracking?)")
                finally:
                    self._current = (-1, -1)
            dog.off()


def _take(m: re.Match, series) -> None:
    from lab.runs.capture.output import number

    groups = m.groupdict()
    step = groups.pop("step", None)
    try:
        step = int(step) if step is not None else None
    except ValueError:
        step = None
    if "name" in groups:
        value = number(groups["value"].encode()) if groups["value"] is not None else None
        if groups["name"] and value is not None:
            series.add(groups["name"], value, step)
        return
    for name, raw in groups.items():
        if raw is None:
            continue
        value = number(raw.encode())
        if value is not None:
            series.add(name, value, step)


class _Watchdog:
    """SIGALRM every BUDGET_S/2 while patterns run (main thread only): a match still on the same line two ticks
    later raises _Runaway inside the regular expression engine (which checks for signals as it works)."""

    def __init__(self, patterns: Patterns):
        self.patterns = patterns
        self.last = None
        self.previous = None
        self.armed = False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            self.previous = signal.signal(signal.SIGALRM, self._tick)
        except (ValueError, OSError):
            return self
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, BUDGET_S / 2, BUDGET_S / 2)
        return self

    def _tick(self, signum, frame):
        now = self.patterns._current
        if now[0] >= 0 and now == self.last:
            self.last = None
            raise _Runaway()
        self.last = now

    def off(self):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous or signal.SIG_DFL)
            self.armed = False

    def __exit__(self, *exc):
        self.off()
        return False
