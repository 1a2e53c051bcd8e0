"""TensorBoard event files (`*tfevents*`) read without TensorFlow or tensorboard: scalars only.

The file is a TFRecord stream: each record is `uint64 length, uint32 masked CRC32C of the length, data, uint32
masked CRC32C of the data` (little-endian). The data is an `Event` protobuf (`wall_time` = 1 double, `step` = 2
varint, `summary` = 5), whose `Summary` holds repeated `Value`s (`tag` = 1, `simple_value` = 2 float, `metadata` =
9, `tensor` = 8). A scalar is a `simple_value`, or a one-number `tensor` (`dtype` = 1; `tensor_content` = 4,
`float_val` = 5, `double_val` = 6, `int_val` = 7, `int64_val` = 10, `half_val` = 13) as newer writers store it.

A file being written may end inside a record: reading stops before it and the next read starts there (`offset`).
A record whose checksum is wrong is skipped (said once). The CRCs of the records that hold scalars are checked
together with NumPy (one table step per byte position for all records at once); a file written by a real writer
has small scalar records, so this is a few dozen array operations per file.
"""

from __future__ import annotations

import re
import struct

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_MASK_DELTA = 0xA282EAD8
# The common shape of a scalar record (torch's SummaryWriter, the Trainer's and Lightning's loggers): an Event of
# wall_time (1), step (2) and a Summary (5) of one Value of a tag (1) and a simple_value (2), lengths under 128.
_SIMPLE = re.compile(rb"\x09.{8}\x10([\x80-\xff]{0,9}[\x00-\x7f])\x2a([\x00-\x7f])\x0a([\x00-\x7f])\x0a([\x00-\x7f])", re.S)
_TABLE: list[int] | None = None


def _table() -> list[int]:
    global _TABLE
    if _TABLE is None:
        table = []
        for n in range(256):
            c = n
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        _TABLE = table
    return _TABLE


def crc32c(data: bytes) -> int:
    table = _table()
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _masked_many(blobs: list[bytes]) -> list[int]:
    """masked(crc32c(b)) for many short byte strings at once: NumPy, one table step per byte position for all the
    strings of one length together (a writer's scalar records come in a few lengths)."""
    import numpy as np

    table = np.array(_table(), dtype=np.uint32)
    by_length: dict[int, list[int]] = {}
    for i, b in enumerate(blobs):
        by_length.setdefault(len(b), []).append(i)
    out = [0] * len(blobs)
    for width, members in by_length.items():
        buf = np.frombuffer(b"".join(blobs[i] for i in members), dtype=np.uint8).reshape(len(members), width)
        crc = np.full(len(members), 0xFFFFFFFF, dtype=np.uint32)
        for col in range(width):
            crc = table[(crc ^ buf[:, col]) & 0xFF] ^ (crc >> 8)
        crc = (crc ^ np.uint32(0xFFFFFFFF)).astype(np.uint64)
        sums = ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).tolist()
        for i, value in zip(members, sums):
            out[i] = value
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of a protobuf message; value: int, or (start, end) of a length-delimited
    field, or the raw bytes of a fixed-width one."""
    pos = start
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = (pos, pos + size)
            pos += size
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError("unsupported wire type")
        if pos > end:
            raise ValueError("field runs past its message")
        yield field, wire, value


_DTYPES = {1: ("f", 4), 2: ("d", 8), 3: ("i", 4), 9: ("q", 8), 19: ("e", 2)}


def _tensor_scalar(buf: bytes, start: int, end: int):
    dtype = None
    content = None
    value = None
    for field, wire, v in _fields(buf, start, end):
        if field == 1 and wire == 0:
            dtype = v
        elif field == 4 and wire == 2:
            content = buf[v[0]:v[1]]
        elif field in (5, 6, 7, 10, 13):
            if wire == 2:  # packed
                raw = buf[v[0]:v[1]]
                if field == 5 and len(raw) == 4:
                    value = _F32.unpack(raw)[0]
                elif field == 6 and len(raw) == 8:
                    value = _F64.unpack(raw)[0]
                elif field in (7, 10, 13) and raw:
                    n, _ = _varint(raw, 0)
                    value = n - (1 << 64) if n >= 1 << 63 else n
                    if field == 13:
                        value = struct.unpack("<e", struct.pack("<H", n & 0xFFFF))[0]
            elif wire == 5:
                value = _F32.unpack(v)[0]
            elif wire == 1:
                value = _F64.unpack(v)[0]
            elif wire == 0:
                value = v - (1 << 64) if v >= 1 << 63 else v
                if field == 13:
                    value = struct.unpack("<e", struct.pack("<H", v & 0xFFFF))[0]
    if value is None and content is not None and dtype in _DTYPES:
        code, size = _DTYPES[dtype]
        if len(content) == size:
            value = struct.unpack("<" + code, content)[0]
    if value is None or dtype not in _DTYPES:
        return None
    if dtype in (1, 19):
        return _short(value)
    return float(value) if dtype == 2 else int(value)


def _short(value: float) -> float:
    """A float32 as its shortest decimal (0.01, not 0.009999999776): what the program logged."""
    return float(f"{value:.7g}")


def _event_scalars(buf: bytes):
    """(step, [(tag, value)]) of one Event record, or None when it holds no scalar."""
    step = 0
    found = None
    for field, wire, v in _fields(buf):
        if field == 2 and wire == 0:
            step = v - (1 << 64) if v >= 1 << 63 else v
        elif field == 5 and wire == 2:
            for f2, w2, value_msg in _fields(buf, *v):
                if f2 != 1 or w2 != 2:
                    continue
                tag = None
                number = None
                for f3, w3, x in _fields(buf, *value_msg):
                    if f3 == 1 and w3 == 2:
                        tag = buf[x[0]:x[1]].decode("utf-8", "replace")
                    elif f3 == 2 and w3 == 5:
                        number = _short(_F32.unpack(x)[0])
                    elif f3 == 8 and w3 == 2:
                        number = _tensor_scalar(buf, *x)
                if tag is not None and number is not None:
                    if found is None:
                        found = []
                    found.append((tag, number))
    return None if found is None else (step, found)


def masked_crcs(blobs: list[bytes]) -> list[int]:
    """masked(crc32c(b)) of each blob: short ones together with NumPy, long or few ones one by one."""
    sums = [0] * len(blobs)
    short = [i for i, b in enumerate(blobs) if len(b) <= 512]
    if len(short) > 8:
        for i, value in zip(short, _masked_many([blobs[i] for i in short])):
            sums[i] = value
    else:
        short = []
    done = set(short)
    for i, b in enumerate(blobs):
        if i not in done:
            sums[i] = masked(crc32c(b))
    return sums


def _first_bad_length(data: bytes, starts: list) -> int | None:
    """The index of the first record whose length field fails its checksum, or None."""
    if not starts:
        return None
    unpack_i = _U32.unpack_from
    sums = masked_crcs([data[at:at + 8] for at in starts])
    for k, (at, good) in enumerate(zip(starts, sums)):
        if unpack_i(data, at + 8)[0] != good:
            return k
    return None


def _simple_records(data: bytes, starts: list, lengths: list) -> dict:
    """{record index: (step, [(tag, value)])} of the records of the common scalar shape (`_SIMPLE`), read for all
    records at once with NumPy (the byte at each field's place, for every record together); the others are left
    to the general walk."""
    if len(starts) < 64:
        return {}
    import numpy as np

    a = np.frombuffer(data, dtype=np.uint8)
    n = len(a)
    body = np.asarray(starts, dtype=np.int64) + 12
    end = body + np.asarray(lengths, dtype=np.int64)

    def at(index):
        return a[np.minimum(index, n - 1)]

    ok = (end - body >= 20) & (at(body) == 0x09) & (at(body + 9) == 0x10)
    p = body + 10
    step = np.zeros(len(body), dtype=np.int64)
    size = np.zeros(len(body), dtype=np.int64)
    going = ok.copy()
    for i in range(9):  # the step's varint, up to 9 bytes
        byte = at(p + i).astype(np.int64)
        step = np.where(going, step | ((byte & 0x7F) << (7 * i)), step)
        size = np.where(going, i + 1, size)
        going = going & (byte >= 0x80)
    ok &= ~going
    q = p + size
    summary = at(q + 1).astype(np.int64)
    value = at(q + 3).astype(np.int64)
    tag_len = at(q + 5).astype(np.int64)
    tag_end = q + 6 + tag_len
    ok &= ((at(q) == 0x2A) & (summary < 0x80) & (q + 2 + summary == end) & (at(q + 2) == 0x0A)
           & (value == summary - 2) & (at(q + 4) == 0x0A) & (tag_len < 0x80) & (tag_end + 5 <= end)
           & (at(tag_end) == 0x15))
    idx = np.nonzero(ok)[0]
    if not len(idx):
        return {}
    where = tag_end[idx] + 1
    raw = a[where[:, None] + np.arange(4)].copy().view("<f4").ravel().astype(np.float64).tolist()
    tags: dict = {}
    names = []
    for s, e in zip((q[idx] + 6).tolist(), tag_end[idx].tolist()):
        t = data[s:e]
        tag = tags.get(t)
        if tag is None:
            tag = tags[t] = t.decode("utf-8", "replace")
        names.append(tag)
    values = [float(f"{v:.7g}") for v in raw]
    return {k: (st, [(tag, v)]) for k, st, tag, v in zip(idx.tolist(), step[idx].tolist(), names, values)}


class EventReader:
    """Reads one event file incrementally: `read()` returns the scalars of the records written since the last
    call, as [(tag, step, value)]; a record still being written is left for the next call."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.notes: list[str] = []
        self._bad = False

    def read(self) -> list[tuple[str, int, float]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        # The framing first (lengths read, their checksums checked together below), then the records.
        starts, lengths = [], []
        pos = 0
        n = len(data)
        unpack_q, unpack_i = _U64.unpack_from, _U32.unpack_from
        while pos + 12 <= n:
            length = unpack_q(data, pos)[0]
            end = pos + 16 + length
            if end > n:
                # Cut mid-record (still being written): read again from here next time; unless its length is
                # no length at all (a damaged file), whose records after it cannot be found.
                if unpack_i(data, pos + 8)[0] != masked(crc32c(data[pos:pos + 8])):
                    self._say("a record length with a bad checksum: the rest of the file skipped")
                    pos = n
                break
            starts.append(pos)
            lengths.append(length)
            pos = end
        self.offset += pos
        out, failed = self._scalars(data, starts, lengths)
        if failed is not None:  # a record failed its checksum: was its length damaged (the framing lost)?
            bad = _first_bad_length(data, starts[failed:])
            if bad is not None:
                self._say("a record length with a bad checksum: the rest of the file skipped")
                keep = starts[failed + bad]
                out = [x for x, at in out if at < keep]
                self.offset = self.offset - pos + n
                return out
        return [x for x, _ in out]

    def _scalars(self, data: bytes, starts: list, lengths: list):
        """([((tag, step, value), record start)], index of the first record with a bad checksum or None)."""
        unpack_i = _U32.unpack_from
        found = _simple_records(data, starts, lengths)  # {record index: (step, [(tag, value)])}
        for k, (at, length) in enumerate(zip(starts, lengths)):
            if k in found:
                continue
            try:
                got = _event_scalars(data[at + 12:at + 12 + length])
            except (ValueError, IndexError, struct.error):
                self._say("a record that is no Event skipped")
                continue
            if got is not None:
                found[k] = got
        if not found:
            return [], None
        order = sorted(found)
        sums = masked_crcs([data[starts[k] + 12:starts[k] + 12 + lengths[k]] for k in order])
        out = []
        failed = None
        for k, good in zip(order, sums):
            if unpack_i(data, starts[k] + 12 + lengths[k])[0] != good:
                self._say("a record with a bad checksum skipped")
                if failed is None:
                    failed = k
                continue
            step, values = found[k]
            for tag, value in values:
                out.append(((tag, step, value), starts[k]))
        return out, failed

    def _say(self, text: str) -> None:
        note = f"{self.path}: {text}"
        if note not in self.notes:
            self.notes.append(note)


def read_scalars(path) -> list[tuple[str, int, float]]:
    """Every scalar of an event file: [(tag, step, value)]."""
    return EventReader(path).read()
