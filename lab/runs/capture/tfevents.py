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

import struct

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_MASK_DELTA = 0xA282EAD8
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
    """masked(crc32c(b)) for many short byte strings at once (NumPy, vectorised over the strings)."""
    import numpy as np

    n = len(blobs)
    lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=n)
    width = int(lengths.max()) if n else 0
    buf = np.zeros((n, width), dtype=np.uint8)
    joined = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    rows = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(joined)) - np.repeat(starts, lengths)
    buf[rows, cols] = joined
    table = np.array(_table(), dtype=np.uint32)
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    for i in range(width):
        step = table[(crc ^ buf[:, i]) & 0xFF] ^ (crc >> 8)
        crc = np.where(lengths > i, step, crc)
    crc ^= np.uint32(0xFFFFFFFF)
    crc = crc.astype(np.uint64)
    out = (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF
    return out.tolist()


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
        records = []
        pos = 0
        n = len(data)
        unpack_q, unpack_i = _U64.unpack_from, _U32.unpack_from
        while pos + 12 <= n:
            length = unpack_q(data, pos)[0]
            header = data[pos:pos + 8]
            if unpack_i(data, pos + 8)[0] != masked(crc32c(header)):
                self._say("a record length with a bad checksum: the rest of the file skipped")
                pos = n
                self.offset += n
                data = b""
                break
            end = pos + 12 + length + 4
            if end > n:
                break  # cut mid-record (still being written): read again from here next time
            records.append((data[pos + 12:pos + 12 + length], unpack_i(data, pos + 12 + length)[0]))
            pos = end
        self.offset += pos
        return self._scalars(records)

    def _scalars(self, records) -> list[tuple[str, int, float]]:
        parsed = []
        for body, crc in records:
            try:
                got = _event_scalars(body)
            except (ValueError, IndexError, struct.error):
                self._say("a record that is no Event skipped")
                continue
            if got is not None:
                parsed.append((body, crc, got))
        if not parsed:
            return []
        small = [i for i, p in enumerate(parsed) if len(p[0]) <= 512]
        sums = [0] * len(parsed)
        if len(small) > 8:
            for i, s in zip(small, _masked_many([parsed[i][0] for i in small])):
                sums[i] = s
        else:
            small = []
        done = set(small)
        for i, p in enumerate(parsed):
            if i not in done:
                sums[i] = masked(crc32c(p[0]))
        out = []
        for (_body, crc, (step, values)), good in zip(parsed, sums):
            if crc != good:
                self._say("a record with a bad checksum skipped")
                continue
            for tag, value in values:
                out.append((tag, step, value))
        return out

    def _say(self, text: str) -> None:
        note = f"{self.path}: {text}"
        if note not in self.notes:
            self.notes.append(note)


def read_scalars(path) -> list[tuple[str, int, float]]:
    """Every scalar of an event file: [(tag, step, value)]."""
    return EventReader(path).read()
