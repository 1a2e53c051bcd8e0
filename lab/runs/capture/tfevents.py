"""TensorBoard event files (`*tfevents*`) read without TensorFlow or tensorboard: scalars only.

The file is a TFRecord stream: each record is `uint64 length, uint32 masked CRC32C of the length, data, uint32
masked CRC32C of the data` (little-endian). The data is an `Event` protobuf (`wall_time` = 1 double, `step` = 2
varint, `summary` = 5), whose `Summary` holds repeated `Value`s (`tag` = 1, `simple_value` = 2 float, `metadata` =
9, `tensor` = 8). A scalar is a `simple_value`, or a one-number `tensor` (`dtype` = 1; `tensor_content` = 4,
`float_val` = 5, `double_val` = 6, `int_val` = 7, `int64_val` = 10, `half_val` = 13) as newer writers store it.

A file being written may end inside a record: reading stops before it and the next read starts there (`offset`).
A record whose checksum is wrong is skipped (said once). A big read is done with NumPy over all records at once
(a file written by a real writer has many small scalar records of one shape): the records found (`_frame_bulk`),
the common scalar records read field by field (`_simple_records`, `_tags`), their CRCs checked 4 bytes a step
(`_masked_many`) and their values put in shortest decimal (`_short_many`); the rest are walked one by one.
"""

from __future__ import annotations

import struct

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_MASK_DELTA = 0xA282EAD8
# `_SIMPLE`, the common shape of a scalar record (torch's SummaryWriter, the Trainer's and Lightning's loggers):
# 09 wall_time(8) 10 step(varint) 2a len 0a len 0a tag_len tag 15 simple_value(4), every length under 128.
_TABLE: list[int] | None = None
_WORDS = None
_SHORT = 512  # records up to this long have their CRCs computed together
_BULK = 32768  # reads of at least this many bytes find their records with NumPy
_CHUNK = 1 << 24  # ... looking at 16 MB at a time: a big file's temporary arrays stay small


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


def _word_tables(np):
    """Two 65,536-entry tables that step the CRC over 4 bytes at once (slicing-by-4, two bytes per lookup), and
    for each length L what the initial 0xFFFFFFFF and the final xor add to the CRC of L bytes (the step is linear,
    so a record left-padded with zeros and started from 0 gives its CRC with that term xor-ed in)."""
    global _WORDS
    if _WORDS is None:
        t = [np.array(_table(), dtype=np.uint32)]
        for _ in range(3):
            t.append((t[-1] >> 8) ^ t[0][t[-1] & 0xFF])
        lo = np.arange(65536, dtype=np.uint32)
        table, init, c = _table(), [], 0xFFFFFFFF
        for _ in range(_SHORT + 1):
            init.append(c ^ 0xFFFFFFFF)
            c = table[c & 0xFF] ^ (c >> 8)
        _WORDS = (t[3][lo & 0xFF] ^ t[2][lo >> 8], t[1][lo & 0xFF] ^ t[0][lo >> 8], np.array(init, dtype=np.uint32))
    return _WORDS


def _masked_many(np, data: bytes, a, starts, lengths):
    """masked(crc32c(data[s:s + l])) for each s, l (int64 arrays), as a uint32 array: NumPy, one word step for
    all the ranges of one length in words together (a writer's scalar records come in a few lengths); long ones
    one by one."""
    low, high, init = _word_tables(np)
    out = np.empty(len(starts), dtype=np.uint32)
    words = (lengths + 3) // 4
    for width in np.unique(words).tolist():
        sel = np.flatnonzero(words == width)
        begin, size = starts[sel], lengths[sel]
        if 4 * width > _SHORT:
            for i, b, length in zip(sel.tolist(), begin.tolist(), size.tolist()):
                out[i] = masked(crc32c(data[b:b + length]))
            continue
        index = (begin + size - 4 * width)[:, None] + np.arange(4 * width)
        buf = a[np.maximum(index, 0)]
        buf[index < begin[:, None]] = 0
        crc = np.zeros(len(sel), dtype=np.uint32)
        for word in np.ascontiguousarray(buf.view("<u4").T):
            x = crc ^ word
            crc = low[x & 0xFFFF] ^ high[x >> 16]
        crc ^= init[size]
        out[sel] = ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)
    return out


def masked_crcs(data: bytes, starts, lengths) -> list[int]:
    """masked(crc32c(data[s:s + l])) for each s, l: one by one when few, else with NumPy."""
    if len(starts) <= 8:
        return [masked(crc32c(data[s:s + length])) for s, length in zip(starts, lengths)]
    import numpy as np

    return _masked_many(np, data, np.frombuffer(data, dtype=np.uint8), np.asarray(starts, dtype=np.int64),
                        np.asarray(lengths, dtype=np.int64)).tolist()


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


_POW10 = [float(10 ** i) for i in range(23)]  # exact doubles


def _short_many(np, v32):
    """_short of each float32 of an array, as float64s, in bulk: 7 significant digits are the integer nearest to
    v * 10^k (k = 6 - the decimal exponent), and that integer / 10^k (both exact) is the nearest double to the
    decimal, as float() reads it. The few values whose product lies too near a half (or whose exponent is out of
    the exact powers' range) are formatted one by one."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinities are kept as they are
        v = v32.astype(np.float64)
        out = v.copy()
        size = np.abs(v)
        live = np.isfinite(v) & (size > 0)
        k = (6 - np.floor(np.log10(np.where(live, size, 1.0)))).astype(np.int64)
        power = np.asarray(_POW10)[np.minimum(np.abs(k), 22)]
        y = np.where(k >= 0, size * power, size / power)
        digits = np.rint(y)
        good = live & (np.abs(k) <= 22) & (y >= 1e6) & (y < 1e7) & (np.abs(y - np.floor(y) - 0.5) > 1e-8)
        out[good] = np.copysign(np.where(k >= 0, digits / power, digits * power), v)[good]
    for i in np.flatnonzero(live & ~good).tolist():
        out[i] = _short(float(v[i]))
    return out


def _first_bad_length(data: bytes, starts: list) -> int | None:
    """The index of the first record whose length field fails its checksum, or None."""
    unpack_i = _U32.unpack_from
    for k, (at, good) in enumerate(zip(starts, masked_crcs(data, starts, [8] * len(starts)))):
        if unpack_i(data, at + 8)[0] != good:
            return k
    return None


def _damaged(data: bytes, pos: int) -> bool:
    """Whether the length of the record at `pos` fails its checksum."""
    return _U32.unpack_from(data, pos + 8)[0] != masked(crc32c(data[pos:pos + 8]))


def _frame(data: bytes, starts: list, lengths: list) -> tuple[int, bool]:
    """Finds the whole records one after the other (their starts and data lengths appended); returns where the
    first record not whole starts, and whether its length is damaged (no length at all: the rest is lost)."""
    pos = 0
    n = len(data)
    unpack_q = _U64.unpack_from
    while pos + 12 <= n:
        length = unpack_q(data, pos)[0]
        end = pos + 16 + length
        if end > n:
            return pos, _damaged(data, pos)
        starts.append(pos)
        lengths.append(length)
        pos = end
    return pos, False


def _frame_bulk(np, data: bytes, a):
    """_frame with NumPy: every place where a record could start (its data opening with an Event's `wall_time`
    key, 0x09, as every writer's do) gives where the next one would; from the first record on, a run of such
    places each leading to the next is taken whole, and a place leading past other candidates (bytes inside a
    record that look like a start) jumps over them. Records that open otherwise are stepped over one by one.
    Returns (starts, lengths) as int64 arrays, where reading stopped, and whether a damaged length stopped it."""
    n = len(data)
    found, reach = [], []
    for lo in range(0, n - 15, _CHUNK):
        cand = np.flatnonzero(a[lo + 12:min(lo + _CHUNK, n - 15) + 12] == 0x09) + lo
        length = a[cand[:, None] + np.arange(8)].view("<u8").ravel()
        fits = length <= (n - 16 - cand).astype(np.uint64)
        found.append(cand[fits])
        reach.append(cand[fits] + 16 + length[fits].astype(np.int64))
    cand, nxt = np.concatenate(found), np.concatenate(reach)
    m = len(cand)
    succ = np.searchsorted(cand, nxt)
    linked = succ < m
    linked[linked] = cand[succ[linked]] == nxt[linked]
    breaks = np.flatnonzero(~linked | (succ != np.arange(1, m + 1)))  # the last candidate is one
    starts, ends = [], []
    pos = 0
    damaged = False
    while pos + 12 <= n:
        k = int(np.searchsorted(cand, pos))
        if k < m and cand[k] == pos:
            while True:  # the runs of candidates each leading to the next
                b = int(breaks[np.searchsorted(breaks, k)])
                starts.append(cand[k:b + 1])
                ends.append(nxt[k:b + 1])
                if not linked[b]:
                    pos = int(nxt[b])
                    break
                k = int(succ[b])
        else:
            end = pos + 16 + _U64.unpack_from(data, pos)[0]
            if end > n:
                damaged = _damaged(data, pos)
                break
            starts.append(np.array([pos], dtype=np.int64))
            ends.append(np.array([end], dtype=np.int64))
            pos = end
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), pos, damaged
    begin = np.concatenate(starts)
    return begin, np.concatenate(ends) - begin - 16, pos, damaged


def _simple_records(np, data: bytes, a, starts, lengths):
    """The records of the common scalar shape (`_SIMPLE`), read for all records at once with NumPy (the byte at
    each field's place, for every record together): (their indices, steps, tags as an object array, float32
    values); the others are left to the general walk."""
    n = len(a)
    body = starts + 12
    end = body + lengths

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
    values = a[(tag_end[idx] + 1)[:, None] + np.arange(4)].view("<f4").ravel()
    return idx, step[idx], _tags(np, data, a, q[idx] + 6, tag_len[idx]), values


def _tags(np, data: bytes, a, begin, size):
    """The tags at data[begin:begin + size] as an object array of str, each distinct one decoded once: the tags'
    bytes (zero-padded to 8-byte words) hashed, and each tag checked byte for byte against its hash's first."""
    if not len(begin):
        return np.zeros(0, dtype=object)
    width = (int(size.max()) + 7) // 8 * 8
    index = begin[:, None] + np.arange(width)
    buf = a[np.minimum(index, len(a) - 1)]
    buf[index >= (begin + size)[:, None]] = 0
    key = size.astype(np.uint64)
    for word in buf.view("<u8").T:
        key = (key * np.uint64(0x100000001B3)) ^ word
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    names = [data[s:s + length].decode("utf-8", "replace") for s, length in zip(begin[first].tolist(),
                                                                                size[first].tolist())]
    if not ((buf == buf[first][inverse]).all() and (size == size[first][inverse]).all()):  # hashes collide
        names = [data[s:s + length].decode("utf-8", "replace") for s, length in zip(begin.tolist(), size.tolist())]
        inverse = np.arange(len(begin))
    return np.array(names, dtype=object)[inverse]


class EventReader:
    """Reads one event file incrementally: `read()` returns the scalars of the records written since the last
    call, as [(tag, step, value)]; a record still being written is left for the next call."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.notes: list[str] = []

    def read(self) -> list[tuple[str, int, float]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        # The framing first (lengths read, their checksums checked only where a record fails its own), then the
        # records.
        n = len(data)
        if n >= _BULK:
            import numpy as np

            a = np.frombuffer(data, dtype=np.uint8)
            starts, lengths, pos, damaged = _frame_bulk(np, data, a)
        else:
            starts, lengths = [], []
            pos, damaged = _frame(data, starts, lengths)
        if damaged:  # a length that is no length at all (a damaged file): the records after it cannot be found
            self._say("a record length with a bad checksum: the rest of the file skipped")
            pos = n
        self.offset += pos
        out, records, failed = self._scalars(data, starts, lengths)
        if failed is not None:  # a record failed its checksum: was its length damaged (the framing lost)?
            bad = _first_bad_length(data, [int(at) for at in starts[failed:]])
            if bad is not None:
                self._say("a record length with a bad checksum: the rest of the file skipped")
                out = [x for x, k in zip(out, records) if k < failed + bad]
                self.offset = self.offset - pos + n
        return out

    def _scalars(self, data: bytes, starts, lengths):
        """([(tag, step, value)] in the order of the records, the index of the record of each (only when a
        record failed its checksum), the index of the first record with a bad checksum or None)."""
        general: dict[int, tuple[int, list]] = {}  # {record index: (step, [(tag, value)])}
        rest: list[int] | range = range(len(starts))
        simple = None
        if len(starts) >= 64:
            import numpy as np

            a = np.frombuffer(data, dtype=np.uint8)
            starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
            simple = _simple_records(np, data, a, starts, lengths)
            others = np.ones(len(starts), dtype=bool)
            others[simple[0]] = False
            rest = np.flatnonzero(others).tolist()
        for k in rest:
            at, length = int(starts[k]), int(lengths[k])
            try:
                got = _event_scalars(data[at + 12:at + 12 + length])
            except (ValueError, IndexError, struct.error):
                self._say("a record that is no Event skipped")
                continue
            if got is not None:
                general[k] = got
        failed = None
        unpack_i = _U32.unpack_from
        order = sorted(general)
        sums = masked_crcs(data, [starts[k] + 12 for k in order], [lengths[k] for k in order])
        for k, good in zip(order, sums):
            if unpack_i(data, int(starts[k] + 12 + lengths[k]))[0] != good:
                self._say("a record with a bad checksum skipped")
                failed = k if failed is None else min(failed, k)
                del general[k]
        if simple is None or not len(simple[0]):
            keys = sorted(general)
            out = [(tag, general[k][0], value) for k in keys for tag, value in general[k][1]]
            return out, [k for k in keys for _ in general[k][1]], failed
        idx, steps, tags, values = simple
        body = starts[idx] + 12
        stored = a[(body + lengths[idx])[:, None] + np.arange(4)].view("<u4").ravel()
        good = stored == _masked_many(np, data, a, body, lengths[idx])
        if not good.all():
            self._say("a record with a bad checksum skipped")
            first = int(idx[np.argmin(good)])
            failed = first if failed is None else min(failed, first)
            idx, steps, tags, values = idx[good], steps[good], tags[good], values[good]
        out = list(zip(tags.tolist(), steps.tolist(), _short_many(np, values).tolist()))
        records = idx.tolist() if failed is not None else []
        if general:  # the other records' scalars, each put in its place among the simple ones
            order = sorted(general)
            merged, kept, prev = [], [], 0
            for k, cut in zip(order, np.searchsorted(idx, order).tolist()):
                merged += out[prev:cut]
                kept += records[prev:cut]
                step, found = general[k]
                merged += [(tag, step, value) for tag, value in found]
                kept += [k] * len(found)
                prev = cut
            out, records = merged + out[prev:], kept + records[prev:]
        return out, records, failed

    def _say(self, text: str) -> None:
        note = f"{self.path}: {text}"
        if note not in self.notes:
            self.notes.append(note)


def read_scalars(path) -> list[tuple[str, int, float]]:
    """Every scalar of an event file: [(tag, step, value)]."""
    return EventReader(path).read()
