"""Metrics scraped from what a program prints: the log lab already keeps, read as it grows.

What is taken, line by line (bytes: any encoding, binary output is skipped, never fatal):
- a printed Python dict of numbers, as the transformers Trainer prints per log step
  (`{'loss': 0.52, 'grad_norm': 1.3, 'learning_rate': 5e-05, 'epoch': 0.4}`; `nan`/`inf` values; also after a
  progress bar's `\\r` on the same line; `tensor(0.5)` read as 0.5; nested dicts and strings skipped);
- the `***** eval metrics *****` blocks of `key = value` lines that the Trainer's `log_metrics` prints
  (`*_runtime` as `h:mm:ss.ff` read as seconds);
- `key: value` and `key=value` pairs (several a line, indented or not, ANSI colours stripped), when the line is
  made of such pairs (an optional label first: `Validation: acc=0.9`); the step comes from `step N`, `(step N)`,
  `step=N` or `epoch N` on the same line, else each key counts its own steps (1, 2, ...) as Guild AI does;
- the user's own patterns (`Patterns`), with named groups.

Caps (each said once in `notes`): lines over `MAX_LINE` bytes are skipped, at most `MAX_KEYS` metric names, names
up to `MAX_NAME` characters, at most `MAX_POINTS` points a metric (beyond, every other point is dropped).
"""

from __future__ import annotations

import math
import re
from itertools import repeat

MAX_LINE = 1 << 20
MAX_KEYS = 1000
MAX_NAME = 200
MAX_POINTS = 100_000
DICT_BATCH = 256  # dict lines parsed together

_ANSI = re.compile(rb"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_DICT_ITEM = re.compile(rb"'((?:[^'\\]|\\.){1,1000})'\s*:\s*([^,{}]*)")
_DICT_ITEM_PLAIN = re.compile(rb"'([^'\\]{1,1000})'\s*:\s*([^,{}]*)")  # the same where no backslash is
_NESTED = re.compile(rb"\{[^{}]*\}")
_TENSOR = re.compile(rb"^tensor\(\s*([^,)\s]+)")
_NUMBER = rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|NaN|NAN|inf|Inf|INF|infinity|Infinity)"
_PAIR = re.compile(rb"(?<![\w./-])([A-Za-z_][\w./-]{0,1000})[ \t]*(?::|=)[ \t]*(" + _NUMBER + rb")(?![\w.:/-])")
_STEP = re.compile(rb"(?<![\w.])(?:(global_step|step|iteration|iter)|(epoch))[ \t]+(\d+)(?:[ \t]*/[ \t]*\d+)?(?![\w.])", re.I)
_BLOCK_HEAD = re.compile(rb"^\*{5} ?(.*?) ?metrics ?\*{5}$")
_BLOCK_LINE = re.compile(rb"^\s*([\w./-]{1,300})\s*=\s*(\S+)\s*$")
_DURATION = re.compile(rb"^(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)$")
_LEFTOVER = re.compile(rb"[A-Za-z]{2,}")
_STEP_KEYS = {"step", "global_step"}


def number(text: bytes) -> float | int | None:
    """A number written as a program prints it (ints stay ints; nan and inf kept), or None."""
    try:
        value = float(text)
    except ValueError:
        text = text.strip()
        m = _TENSOR.match(text)
        if m is None:
            return None
        return number(m.group(1))
    if text.isdigit() or (text[:1] in (b"-", b"+") and text[1:].isdigit()):
        return int(text)
    return value


def numbers(raws) -> list | None:
    """`number` of each raw dict value (stripped, its quotes taken off) when all are floats as Python prints them
    (none an int, none else), or None (then each is read alone). A raw value holds no `,` (`_DICT_ITEM`)."""
    stripped = list(map(bytes.strip, raws))
    joined = b",".join(stripped)
    if joined[:1] == b"'":  # all quoted (transformers 5): `'a','b'` holds n - 1 `','`
        if joined[-1:] != b"'" or len(joined) < 2 or joined.count(b"','") != len(stripped) - 1:
            return None
        stripped = joined[1:-1].split(b"','")
    if any(map(bytes.isdigit, map(bytes.lstrip, stripped, repeat(b"+-")))):
        return None  # ints stay ints (`number`)
    try:
        return list(map(float, stripped))
    except ValueError:
        return None


class Series:
    """Metric name -> its points [(step, value)], with the caps of this module (said once each in `notes`)."""

    def __init__(self):
        self.points: dict[str, list] = {}
        self.counts: dict[str, int] = {}
        self.notes: list[str] = []
        self._said: set[str] = set()

    def note(self, kind: str, text: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.notes.append(text)

    def add(self, name: str, value, step: int | None = None) -> None:
        points = self.points.get(name)
        if points is None:
            if len(name) > MAX_NAME:
                self.note("name", f"metric names over {MAX_NAME} characters skipped (first: {name[:40]}...)")
                return
            if not name.strip():
                return
            if len(self.points) >= MAX_KEYS:
                self.note("keys", f"more than {MAX_KEYS} metric names: the rest skipped (first skipped: {name[:80]})")
                return
            points = self.points[name] = []
        if step is None:
            step = self.counts.get(name, 0) + 1
            self.counts[name] = step
        points.append((step, value))
        if len(points) > MAX_POINTS:
            del points[1::2]
            self.note("points:" + name, f"{name}: more than {MAX_POINTS} points; every other one kept")

    def extendable(self, name: str, count: int) -> bool:
        """Whether `extend` may add `count` points to `name` at once: a name already kept, far from the caps."""
        points = self.points.get(name)
        return points is not None and len(points) + count <= MAX_POINTS

    def extend(self, name: str, values: list) -> None:
        """`add(name, value)` (counted steps) of each value, for a name that is `extendable`."""
        first = self.counts.get(name, 0) + 1
        self.counts[name] = first + len(values) - 1
        self.points[name].extend(zip(range(first, first + len(values)), values))

    def __bool__(self):
        return bool(self.points)


class OutputScraper:
    """Reads a program's output in pieces (`feed`), whole lines at a time; `end()` takes the last unended line."""

    def __init__(self, patterns=None, series: Series | None = None, builtin: bool = True):
        self.series = series if series is not None else Series()
        self.patterns = patterns  # a Patterns, or None
        self.builtin = builtin  # False: the user's patterns only (`capture: {output: false}`)
        self._pending = b""
        self._skipping = False  # inside a line over MAX_LINE, until its newline
        self._block = False
        self._names: dict[bytes, tuple[str, bool]] = {}  # a key of a pair -> its name, and whether it is the step

    @property
    def notes(self) -> list[str]:
        return self.series.notes + (self.patterns.notes if self.patterns else [])

    def feed(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        end = data.rfind(b"\n")
        if end < 0:
            self._hold(data)
            return
        if end + 1 < len(data):
            self._hold(data[end + 1:])
        self.lines(data, end + 1)

    def _hold(self, rest: bytes) -> None:
        if self._skipping:
            return
        if len(rest) > MAX_LINE:
            self.series.note("line", f"a line over {MAX_LINE >> 20} MB was skipped")
            self._skipping = True
            return
        self._pending = rest

    def end(self) -> None:
        rest, self._pending = self._pending, b""
        if rest and not self._skipping:
            self.lines(rest + b"\n")
        self._skipping = False

    def whole_lines(self, buf, start: int, stop: int) -> int:
        """Scrape the whole lines of buf[start:stop] in place (a memory map of a big log: nothing is copied but
        the candidate lines); return where the unended last line begins (to be fed next)."""
        if self._pending or self._skipping:
            return start
        last = buf.rfind(b"\n", start, stop)
        if last < 0:
            return start
        self.lines(buf, last + 1, start)
        return last + 1

    def lines(self, chunk: bytes, stop: int | None = None, pos: int = 0) -> None:
        """Scrape the whole lines of chunk[:stop] (each ended by a newline).

        Only lines that hold a candidate (`=`, `: `, `{`, `*****`) are looked at (`candidate_lines`): most of a
        log (progress bars, warnings) is passed over at the speed of memchr, not line by line in Python. Runs of
        plain dict lines (the Trainer's) are parsed together (`_dicts`).
        """
        stop = len(chunk) if stop is None else stop
        if self._skipping:
            pos = chunk.find(b"\n", pos, stop) + 1
            self._skipping = False
        if self.patterns:
            self.patterns.scan(chunk[pos:stop], self.series)
        if not self.builtin:
            return
        line_of = self.line
        last_end = pos - 1
        bodies: list[bytes] = []
        for start, end in candidate_lines(chunk, pos, stop):
            if start > last_end + 1:
                self._block = False  # lines without a candidate ended any block
            last_end = end
            if end - start > MAX_LINE:
                if bodies:
                    self._dicts(bodies)
                    bodies = []
                self.series.note("line", f"a line over {MAX_LINE >> 20} MB was skipped")
                continue
            text = chunk[start:end]
            # A plain dict line (no colour, no `\r`, no nested dict) ends any block and is only a dict: kept for
            # `_dicts`, which parses many at once.
            if text[:2] == b"{'" and text[-1:] == b"}" and text.count(b"{") == 1 and b"\r" not in text \
                    and b"\x1b" not in text:
                self._block = False
                bodies.append(text[1:-1])
                if len(bodies) >= DICT_BATCH:
                    self._dicts(bodies)
                    bodies = []
                continue
            if bodies:
                self._dicts(bodies)
                bodies = []
            line_of(text)
        if bodies:
            self._dicts(bodies)
        if last_end + 1 < stop:
            self._block = False

    def line(self, line: bytes) -> None:
        if b"\x1b" in line:
            line = _ANSI.sub(b"", line)
        if self._block:
            m = _BLOCK_LINE.match(line)
            if m:
                self._block_value(m.group(1), m.group(2))
                return
            self._block = False
        if b"\r" in line:
            segments = line.split(b"\r")
            for seg in segments[:-1]:
                if b"{'" in seg:
                    self._dict(seg.strip())
            line = segments[-1]
        stripped = line.strip()
        if stripped.startswith(b"{'"):
            self._dict(stripped)
            return
        if stripped.startswith(b"*****") and _BLOCK_HEAD.match(stripped):
            self._block = True
            return
        if b"%|" in line:  # a progress bar (its postfix is no metric line)
            return
        self._pairs(line)

    def _dict(self, text: bytes) -> None:
        if not text.endswith(b"}"):
            return
        body = text[1:-1]
        if b"{" in body:
            for _ in range(20):
                body, n = _NESTED.subn(b"", body)
                if not n:
                    break
        self._items(_DICT_ITEM.findall(body))

    def _items(self, items) -> None:
        add = self.series.add
        for key, raw in items:
            raw = raw.strip()
            if raw[:1] in (b"'", b'"') and raw[-1:] == raw[:1]:  # transformers 5 prints numbers as strings
                raw = raw[1:-1]
            value = number(raw)
            if value is not None and not isinstance(value, bool):
                add(key.decode("utf-8", "replace"), value)

    def _dicts(self, bodies: list[bytes]) -> None:
        """The bodies of plain dict lines, in order: the same as `_dict` on each, with one regular-expression pass
        over them all and the values of a metric converted together (`Series.extend`)."""
        # `}{` between bodies that hold no `{`: a value stops at it, and a match that runs across it would hold a
        # `{` in its key (then each line is parsed alone).
        joined = b"}{".join(bodies)
        items = (_DICT_ITEM if b"\\" in joined else _DICT_ITEM_PLAIN).findall(joined)
        if len(bodies) > 1 and b"{" in b"".join([key for key, _ in items]):
            for body in bodies:
                self._items(_DICT_ITEM.findall(body))
            return
        if not items:
            return
        keys, raws = zip(*items)
        # The Trainer prints the same keys on each line: each key's values are then a slice of all of them.
        width = len(_DICT_ITEM.findall(bodies[0])) if len(bodies) > 1 else len(items)
        if width and len(keys) % width == 0 and len(set(keys[:width])) == width and \
                keys == keys[:width] * (len(keys) // width):
            groups = [(key, raws[j::width]) for j, key in enumerate(keys[:width])]
        else:
            by_key: dict[bytes, list[bytes]] = {}
            for key, raw in items:
                group = by_key.get(key)
                if group is None:
                    group = by_key[key] = []
                group.append(raw)
            groups = list(by_key.items())  # type: ignore[arg-type]
        series = self.series
        names = [key.decode("utf-8", "replace") for key, _ in groups]
        if len(set(names)) < len(names):  # two byte strings read as one name: their points interleave
            self._items(items)
            return
        for name, (_, raws_of) in zip(names, groups):
            if not series.extendable(name, len(raws_of)):  # a new name or a cap: point by point, as `_items` does
                self._items(items)
                return
        converted = [numbers(raws_of) for _, raws_of in groups]
        if None in converted:
            self._items(items)
            return
        for name, values in zip(names, converted):
            series.extend(name, values)  # type: ignore[arg-type]

    def _block_value(self, key: bytes, raw: bytes) -> None:
        name = key.decode("utf-8", "replace")
        value = number(raw)
        if value is None:
            m = _DURATION.match(raw)
            if not m:
                return
            days, h, mi, s = m.groups()
            value = round(int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s), 4)
        self.series.add(name, value)

    def _pairs(self, line: bytes) -> None:
        # One pass: the text before the first pair, then (key, value, text after it) for each pair.
        parts = _PAIR.split(line)
        if len(parts) == 1:
            return
        # `adam_beta1=0.9,`: one field of a printed object, one a line (the repr of TrainingArguments that every
        # transformers example script logs when it starts): settings, not metrics.
        if line.rstrip().endswith(b","):
            return
        # The line must be made of pairs: words after the first pair (other than a step) mean prose.
        label = parts[0].rstrip()
        if label[-1:].isalpha():  # `Num examples = 8`: the key ends a phrase
            return
        rest = b" " + b" ".join(parts[3::3])  # the pairs taken out
        # (a step taken out leaves no new word: it is fenced by characters that are not part of one)
        if _LEFTOVER.search(rest) and _LEFTOVER.search(_STEP.sub(b" ", rest)):
            return
        step = None
        m = _STEP.search(line)
        if m is not None:
            step = int(m.group(3))
        values = []
        names = self._names
        for key, raw in zip(parts[1::3], parts[2::3]):
            value = number(raw)
            if value is None:
                continue
            known = names.get(key)
            if known is None:
                name = key.decode("utf-8", "replace")
                known = (name, name.lower() in _STEP_KEYS)
                if len(names) < MAX_KEYS:
                    names[key] = known
            if known[1] and isinstance(value, int):
                step = value
                continue
            values.append((known[0], value))
        series = self.series
        for name, value in values:
            points = series.points.get(name)
            if step is not None and points is not None and len(points) < MAX_POINTS:
                points.append((step, value))  # `Series.add`, where it could only append
            else:
                series.add(name, value, step)


_COLON = re.compile(rb": ")  # a literal pattern: found faster than by `bytes.find` of two bytes
STARS_BY_BYTE = 64  # `*` that start no `*****` before the search for `*****` goes on with the whole needle


def candidate_lines(chunk, pos: int, stop: int) -> list[tuple[int, int]]:
    """(start, end) of the lines of chunk[pos:stop] that may hold a metric (`=`, `{`, `*****` or `: `), in order.

    Each needle is looked for in one pass over the chunk (a bytes or a memory map, never copied): `=`, `{` and
    the `*` of `*****` by `find` of one byte (memchr), `: ` by a regular expression (CPython finds a literal
    pattern several times faster than `find` of two bytes); each search goes on after its line's end."""
    found: dict[int, int] = {}
    find, rfind = chunk.find, chunk.rfind

    def line_at(i: int) -> int:
        start = rfind(b"\n", pos, i) + 1 or pos
        end = find(b"\n", i, stop)
        if end < 0:
            end = stop
        found[start] = end
        return end + 1

    for needle in (b"=", b"{"):
        i = find(needle, pos, stop)
        while i >= 0:
            i = find(needle, line_at(i), stop)
    i, misses = find(b"*", pos, stop), 0
    while i >= 0:
        if i + 5 <= stop and chunk[i:i + 5] == b"*****":
            i = line_at(i)
        else:
            i += 1
            misses += 1
            if misses > STARS_BY_BYTE:
                i = find(b"*****", i, stop)
                while i >= 0:
                    i = find(b"*****", line_at(i), stop)
                break
        i = find(b"*", i, stop)
    # `: ` only between the lines found already (each gap is whole lines)
    search = _COLON.search
    gap = pos
    for start, end in [*sorted(found.items()), (stop, stop)]:
        if start > gap:
            m = search(chunk, gap, start)
            while m is not None:
                after = line_at(m.start())
                m = search(chunk, after, start) if after < start else None
        gap = end + 1
    return sorted(found.items())


def scrape(data: bytes, patterns=None) -> OutputScraper:
    """Scrape a whole output at once (tests, the pattern tester)."""
    scraper = OutputScraper(patterns)
    scraper.feed(data)
    scraper.end()
    return scraper


def is_finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)
