"""Compiled single-pass parsers and checks for the costly contract columns.

Parsing RFC 3339 timestamps with a general ``strptime`` costs more than reading
the whole CSV file, and even an anchored regex per row costs a sizeable part
of it; these kernels walk Polars' own string buffers once, byte by byte,
without a copy, and release the GIL, so validation stays close to the cost of
a raw read and batches validate in parallel threads. They implement the
contract's grammar exactly (see :mod:`tapshield.events.schema`); anything they
cannot parse is flagged, never guessed.

Polars keeps strings as Arrow *views*: 16 bytes per row holding the length
and, for strings of at most 12 bytes, the bytes themselves (``"CN-GD"``,
``"00"``, ``"nfc"`` never leave the view); longer strings point into data
buffers. :func:`_views` exposes those buffers to the kernels as NumPy arrays.

Status codes returned per row: ``0`` ok, ``1`` missing (null or empty),
``2`` bad format, ``3`` out of range.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

OK, MISSING, BAD, RANGE = 0, 1, 2, 3

_TS_MIN_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_TS_MAX_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
INLINE_BYTES = _INLINE = 12
"""Arrow string views keep strings of at most 12 bytes inside the view."""
_NO_DAY = -(1 << 62)
"""No date remembered yet (see ``_ts_one``)."""

Views = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_NEWEST = pl.CompatLevel.newest()
_STRING_VIEW = pa.string_view()
_NO_NULLS = np.zeros(0, dtype=np.bool_)
_NO_DATA = np.zeros(1, dtype=np.uint8)
_NO_STARTS = np.zeros(1, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def utf8_ok(buf: np.ndarray, a: int, b: int) -> bool:
    """Whether ``buf[a:b]`` is well-formed UTF-8 (no overlongs, no surrogates)."""
    i = a
    while i < b:
        c = buf[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
        elif 0xF0 <= c <= 0xF4:
            n = 3
        else:
            return False
        if i + n >= b:
            return False
        c1 = buf[i + 1]
        if c1 < 0x80 or c1 > 0xBF:
            return False
        if c == 0xE0 and c1 < 0xA0:
            return False
        if c == 0xED and c1 > 0x9F:
            return False
        if c == 0xF0 and c1 < 0x90:
            return False
        if c == 0xF4 and c1 > 0x8F:
            return False
        for k in range(2, n + 1):
            ck = buf[i + k]
            if ck < 0x80 or ck > 0xBF:
                return False
        i += n + 1
    return True


def _views(arr: pa.Array) -> Views:
    """Zero-copy access to one Arrow string-view array.

    Returns ``(views, view_bytes, data, starts, nulls)``: ``views`` is
    ``uint32[n, 4]`` (length, prefix or inline bytes, buffer index, offset),
    ``view_bytes`` the same memory as flat bytes (inline strings start at
    ``16 * row + 4``), ``data`` the data buffers one after the other (copied
    only when there are several) with ``starts[i]`` the position of buffer
    ``i`` in it, and ``nulls`` a null mask (empty when there are no nulls,
    the common case).
    """
    if arr.type != _STRING_VIEW:
        arr = arr.cast(_STRING_VIEW)
    n = len(arr)
    if n == 0:
        return np.zeros((0, 4), dtype=np.uint32), _NO_DATA, _NO_DATA, _NO_STARTS, _NO_NULLS
    buffers = arr.buffers()
    off = arr.offset
    nulls = _NO_NULLS
    if arr.null_count:
        bits = np.frombuffer(buffers[0], dtype=np.uint8)
        nulls = ~np.unpackbits(bits, bitorder="little")[off : off + n].astype(np.bool_)
    views = np.frombuffer(buffers[1], dtype=np.uint32, count=4 * (off + n)).reshape(-1, 4)[off:]
    flat = np.frombuffer(buffers[1], dtype=np.uint8, count=16 * (off + n))[16 * off :]
    if len(buffers) == 2:
        return views, flat, _NO_DATA, _NO_STARTS, nulls
    parts = [np.frombuffer(b, dtype=np.uint8) for b in buffers[2:] if b is not None]
    if not parts:
        return views, flat, _NO_DATA, _NO_STARTS, nulls
    if len(parts) == 1:
        return views, flat, parts[0], _NO_STARTS, nulls
    starts = np.zeros(len(parts), dtype=np.int64)
    np.cumsum([len(p) for p in parts[:-1]], out=starts[1:])
    return views, flat, np.concatenate(parts), starts, nulls


class Text:
    """A string column's buffers, chunk by chunk, looked up once for several kernels.

    A CSV batch arrives in dozens of chunks, and gluing them together would
    copy every column once more (it costs a third of the read), so kernels
    run chunk by chunk. Every kernel also records the shortest and longest
    non-null value it saw (``bounds``), which answers "is any value empty"
    and "is any too long" without another pass. The buffers are looked up
    only when a kernel needs them: whether every value sits inside its view
    (at most 12 bytes) is known from the buffer count alone.
    """

    __slots__ = ("_chunks", "arrays", "bounds", "n", "scanned")

    def __init__(self, column: pl.Series | pa.ChunkedArray | pa.Array) -> None:
        if isinstance(column, pl.Series):
            if column.dtype != pl.String:
                column = column.cast(pl.String)
            arrays = (
                [column.to_arrow(compat_level=_NEWEST)]
                if column.n_chunks() == 1
                else [c.to_arrow(compat_level=_NEWEST) for c in column.get_chunks()]
            )
        elif isinstance(column, pa.ChunkedArray):
            arrays = column.chunks
        else:
            arrays = [column]
        self.arrays: list[pa.Array] = [
            a if a.type == _STRING_VIEW else a.cast(_STRING_VIEW) for a in arrays
        ]
        self.n = sum(len(a) for a in self.arrays)
        self._chunks: list[tuple[int, Views]] | None = None
        self.bounds = np.array([1 << 40, -1], dtype=np.int64)
        self.scanned = False

    @property
    def chunks(self) -> list[tuple[int, Views]]:
        """``(first row, views)`` per chunk."""
        if self._chunks is None:
            chunks = []
            first = 0
            for arr in self.arrays:
                chunks.append((first, _views(arr)))
                first += len(arr)
            self._chunks = chunks
        return self._chunks

    @property
    def inline(self) -> bool:
        """No value is longer than 12 bytes (no data buffers at all)."""
        return all(
            all(b is None or b.size == 0 for b in a.buffers()[2:]) for a in self.arrays
        )


def _text(column: pl.Series | Text) -> Text:
    return column if isinstance(column, Text) else Text(column)


@njit(cache=True, nogil=True, inline="always")
def _digits(data: np.ndarray, i: int, n: int) -> int:
    """Value of ``n`` ASCII digits at ``data[i:]``, or -1 if any is not a digit."""
    v = 0
    for k in range(n):
        c = data[i + k]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True, nogil=True, inline="always")
def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True, inline="always")
def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    if m in (4, 6, 9, 11):
        return 30
    return 31


@njit(cache=True, nogil=True, inline="always")
def _ts_one(data: np.ndarray, a: int, b: int, last: np.ndarray) -> tuple[int, int]:
    """``(epoch microseconds, status)`` of the timestamp text ``data[a:b]`` (``b > a``).

    ``last`` remembers the previous valid date (its ten bytes and day number):
    most rows share their date with the row before, and then only the time
    of day is parsed.
    """
    ln = b - a
    # epoch milliseconds: 1-16 digits and nothing else
    if ln <= 16:
        all_digits = True
        for k in range(a, b):
            c = data[k]
            if c < 48 or c > 57:
                all_digits = False
                break
        if all_digits:
            us = _digits(data, a, ln) * 1000
            return us, (OK if _TS_MIN_US <= us < _TS_MAX_US else RANGE)
    # RFC 3339: YYYY-MM-DD(T|t| )HH:MM:SS[.f{1,9}](Z|z|(+|-)HH[:]MM)
    if ln < 20:
        return 0, BAD
    date_head = 0
    for k in range(8):
        date_head = (date_head << 8) | int(data[a + k])
    date_tail = (int(data[a + 8]) << 8) | int(data[a + 9])
    if date_head == last[0] and date_tail == last[1] and last[2] != _NO_DAY:
        days = last[2]
    else:
        y = _digits(data, a, 4)
        mo = _digits(data, a + 5, 2)
        d = _digits(data, a + 8, 2)
        if (
            y < 0 or mo < 1 or mo > 12 or d < 1
            or data[a + 4] != 45 or data[a + 7] != 45
            or d > _days_in_month(y, mo)
        ):
            return 0, BAD
        days = _days_from_civil(y, mo, d)
        last[0] = date_head
        last[1] = date_tail
        last[2] = days
    h = _digits(data, a + 11, 2)
    mi = _digits(data, a + 14, 2)
    s = _digits(data, a + 17, 2)
    sep = data[a + 10]
    if (
        h < 0 or h > 23 or mi < 0 or mi > 59 or s < 0 or s > 60
        or data[a + 13] != 58 or data[a + 16] != 58
        or not (sep == 84 or sep == 116 or sep == 32)
    ):
        return 0, BAD
    i = a + 19
    frac_us = 0
    if data[i] == 46:  # '.'
        i += 1
        nd = 0
        scale = 100000
        while i < b and 48 <= data[i] <= 57:
            if nd < 6:
                frac_us += (data[i] - 48) * scale
                scale //= 10
            nd += 1
            i += 1
        if nd == 0 or nd > 9:
            return 0, BAD
    if i >= b:
        return 0, BAD
    c = data[i]
    off_s = 0
    if c == 90 or c == 122:  # 'Z' / 'z'
        if i + 1 != b:
            return 0, BAD
    elif c == 43 or c == 45:  # '+' / '-'
        rest = b - i - 1
        if rest == 5 and data[i + 3] == 58:
            oh = _digits(data, i + 1, 2)
            om = _digits(data, i + 4, 2)
        elif rest == 4:
            oh = _digits(data, i + 1, 2)
            om = _digits(data, i + 3, 2)
        else:
            return 0, BAD
        if oh < 0 or om < 0 or oh > 23 or om > 59:
            return 0, BAD
        off_s = (oh * 3600 + om * 60) * (1 if c == 43 else -1)
    else:
        return 0, BAD
    if s == 60:  # leap second: the instant folds onto the next second
        s = 59
        frac_us = 999999
    secs = days * 86400 + h * 3600 + mi * 60 + s - off_s
    us = secs * 1000000 + frac_us
    return us, (OK if _TS_MIN_US <= us < _TS_MAX_US else RANGE)


@njit(cache=True, nogil=True, inline="always")
def _amount_one(data: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """``(integer fen, status)`` of the decimal yuan text ``data[a:b]`` (``b > a``)."""
    whole = 0
    nw = 0
    i = a
    while i < b and 48 <= data[i] <= 57:
        whole = whole * 10 + (data[i] - 48)
        nw += 1
        i += 1
    if nw == 0 or nw > 15:
        return 0, BAD
    frac = 0
    if i < b:
        if data[i] != 46:
            return 0, BAD
        i += 1
        nf = 0
        while i < b and 48 <= data[i] <= 57:
            frac = frac * 10 + (data[i] - 48)
            nf += 1
            i += 1
        if i != b or nf == 0 or nf > 2:
            return 0, BAD
        if nf == 1:
            frac *= 10
    return whole * 100 + frac, OK


@njit(cache=True, nogil=True)
def _parse_views(
    kind: int,
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    out: np.ndarray,
    status: np.ndarray,
    bounds: np.ndarray,
) -> None:
    """Kind 0: timestamps, kind 1: amounts; one pass over the views."""
    has_nulls = len(nulls) > 0
    last = np.full(3, _NO_DAY, dtype=np.int64)
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(out)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            status[r] = MISSING
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            status[r] = MISSING
            continue
        if ln <= _INLINE:
            a = 16 * r + 4
            if kind == 0:
                v, st = _ts_one(flat, a, a + ln, last)
            else:
                v, st = _amount_one(flat, a, a + ln)
        else:
            a = starts[views[r, 2]] + int(views[r, 3])
            if kind == 0:
                v, st = _ts_one(data, a, a + ln, last)
            else:
                v, st = _amount_one(data, a, a + ln)
        out[r] = v
        status[r] = st
    bounds[0] = lo
    bounds[1] = hi


def _parse(column: pl.Series | Text, kind: int) -> tuple[np.ndarray, np.ndarray]:
    text = _text(column)
    out = np.zeros(text.n, dtype=np.int64)
    status = np.zeros(text.n, dtype=np.uint8)
    for first, (views, flat, data, starts, nulls) in text.chunks:
        end = first + len(views)
        _parse_views(
            kind, views, flat, data, starts, nulls, out[first:end], status[first:end], text.bounds
        )
    text.scanned = True
    return out, status


def parse_timestamps(column: pl.Series | Text) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch microseconds, status)`` for a string column of contract timestamps."""
    return _parse(column, 0)


def parse_amounts(column: pl.Series | Text) -> tuple[np.ndarray, np.ndarray]:
    """``(integer fen, status)`` for a string column of decimal yuan amounts."""
    return _parse(column, 1)


# ---------------------------------------------------------------------------
# formats of short text fields (what an anchored regex would say, per row)

CHANNEL, REGION, CODE = 0, 1, 2
"""Formats :func:`check_format` knows (the contract's rules ``channel_format``,
``region_format`` and ``response_code_format``)."""


_ALNUM, _CHANNEL_REST, _UPPER, _UPPER_DIGIT = 1, 2, 4, 8


def _char_classes() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for c in range(256):
        ch = chr(c)
        if ch.isascii() and ch.isalnum():
            table[c] |= _ALNUM | _CHANNEL_REST
        if ch in "_.:-":
            table[c] |= _CHANNEL_REST
        if "A" <= ch <= "Z":
            table[c] |= _UPPER | _UPPER_DIGIT
        if "0" <= ch <= "9":
            table[c] |= _UPPER_DIGIT
    return table


_CHARS = _char_classes()
"""Byte -> character-class bits (a lookup beats chained comparisons per byte)."""


@njit(cache=True, nogil=True, inline="always")
def _channel_one(data: np.ndarray, a: int, ln: int, table: np.ndarray) -> int:
    """``^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$``"""
    chars = _CHARS
    if ln > 64 or not chars[data[a]] & _ALNUM:
        return BAD
    for k in range(a + 1, a + ln):
        if not chars[data[k]] & _CHANNEL_REST:
            return BAD
    return OK


@njit(cache=True, nogil=True, inline="always")
def _region_one(data: np.ndarray, a: int, ln: int, table: np.ndarray) -> int:
    """``^[A-Z]{2}-[A-Z0-9]{1,3}$``"""
    chars = _CHARS
    if ln < 4 or ln > 6 or data[a + 2] != 45:
        return BAD
    if not (chars[data[a]] & chars[data[a + 1]] & _UPPER):
        return BAD
    for k in range(a + 3, a + ln):
        if not chars[data[k]] & _UPPER_DIGIT:
            return BAD
    return OK


@njit(cache=True, nogil=True, inline="always")
def _code_one(data: np.ndarray, a: int, ln: int, table: np.ndarray) -> int:
    """``^[0-9A-Z]{2}$``, then the class the caller's table gives the code."""
    chars = _CHARS
    if ln != 2 or not (chars[data[a]] & chars[data[a + 1]] & _UPPER_DIGIT):
        return BAD
    return int(table[data[a] * 256 + data[a + 1]])


# Short text repeats: a column of channels, regions or codes holds a handful of
# distinct values. A value of at most 12 bytes is its view (length and bytes),
# so the kernels below remember the verdict for the last view seen in each of
# 4096 slots and check a repeat with two integer compares instead of walking
# its bytes (a loop whose length changes from row to row costs a mispredicted
# branch per row, more than the check itself).

_MEMO_BITS = 12
_NOT_A_KEY = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def _memo_keys() -> tuple[np.ndarray, np.ndarray]:
    return (
        np.zeros(1 << _MEMO_BITS, dtype=np.uint64),
        np.full(1 << _MEMO_BITS, _NOT_A_KEY, dtype=np.uint64),
    )


@njit(cache=True, nogil=True, inline="always")
def _inline_key(views: np.ndarray, r: int, ln: int) -> tuple[np.uint64, np.uint64, int]:
    """``(bytes 0-7, bytes 8-11 and length, slot)`` of an inline string (``ln <= 12``)."""
    low = np.uint64(views[r, 1]) | (np.uint64(views[r, 2]) << np.uint64(32))
    high = np.uint64(views[r, 3])
    if ln < 8:
        low &= (np.uint64(1) << np.uint64(8 * ln)) - np.uint64(1)
        high = np.uint64(0)
    elif ln < 12:
        high &= (np.uint64(1) << np.uint64(8 * (ln - 8))) - np.uint64(1)
    high |= np.uint64(ln) << np.uint64(32)
    mixed = (low * np.uint64(0x9E3779B97F4A7C15)) ^ (high * np.uint64(0xC2B2AE3D27D4EB4F))
    return low, high, int(mixed >> np.uint64(64 - _MEMO_BITS))


# One loop per format, not one loop switching on the format per row: each loop
# is then compiled for its own check, which is what makes them cheap.


@njit(cache=True, nogil=True)
def _channel_views(
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    table: np.ndarray,
    status: np.ndarray,
    bounds: np.ndarray,
    memo_low: np.ndarray,
    memo_high: np.ndarray,
    memo: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(status)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            status[r] = MISSING
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            status[r] = MISSING
        elif ln <= _INLINE:
            low, high, slot = _inline_key(views, r, ln)
            if memo_high[slot] == high and memo_low[slot] == low:
                status[r] = memo[slot]
            else:
                verdict = _channel_one(flat, 16 * r + 4, ln, table)
                memo_low[slot] = low
                memo_high[slot] = high
                memo[slot] = verdict
                status[r] = verdict
        else:
            status[r] = _channel_one(data, starts[views[r, 2]] + int(views[r, 3]), ln, table)
    bounds[0] = lo
    bounds[1] = hi


@njit(cache=True, nogil=True)
def _region_views(
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    table: np.ndarray,
    status: np.ndarray,
    bounds: np.ndarray,
    memo_low: np.ndarray,
    memo_high: np.ndarray,
    memo: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(status)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            status[r] = MISSING
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            status[r] = MISSING
        elif ln <= _INLINE:
            low, high, slot = _inline_key(views, r, ln)
            if memo_high[slot] == high and memo_low[slot] == low:
                status[r] = memo[slot]
            else:
                verdict = _region_one(flat, 16 * r + 4, ln, table)
                memo_low[slot] = low
                memo_high[slot] = high
                memo[slot] = verdict
                status[r] = verdict
        else:
            status[r] = _region_one(data, starts[views[r, 2]] + int(views[r, 3]), ln, table)
    bounds[0] = lo
    bounds[1] = hi


@njit(cache=True, nogil=True)
def _code_views(
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    table: np.ndarray,
    status: np.ndarray,
    bounds: np.ndarray,
    memo_low: np.ndarray,
    memo_high: np.ndarray,
    memo: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(status)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            status[r] = MISSING
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            status[r] = MISSING
        elif ln <= _INLINE:
            low, high, slot = _inline_key(views, r, ln)
            if memo_high[slot] == high and memo_low[slot] == low:
                status[r] = memo[slot]
            else:
                verdict = _code_one(flat, 16 * r + 4, ln, table)
                memo_low[slot] = low
                memo_high[slot] = high
                memo[slot] = verdict
                status[r] = verdict
        else:
            status[r] = _code_one(data, starts[views[r, 2]] + int(views[r, 3]), ln, table)
    bounds[0] = lo
    bounds[1] = hi


_FORMAT_KERNELS = {CHANNEL: _channel_views, REGION: _region_views, CODE: _code_views}


_NO_CLASSES = np.zeros(65536, dtype=np.uint8)


def check_format(
    column: pl.Series | Text, kind: int, classes: np.ndarray | None = None
) -> np.ndarray:
    """Per row: ``MISSING`` (null or empty), ``BAD`` (breaks the format) or a class.

    The class is ``OK`` for channels and regions; for response codes it is
    ``classes[256 * first_byte + second_byte]`` (``OK`` by default), so one
    pass also tells which well-formed codes are approval codes.
    """
    table = _NO_CLASSES if classes is None else classes
    kernel = _FORMAT_KERNELS[kind]
    text = _text(column)
    status = np.zeros(text.n, dtype=np.uint8)
    memo_low, memo_high = _memo_keys()
    memo = np.zeros(len(memo_low), dtype=np.uint8)
    for first, (views, flat, data, starts, nulls) in text.chunks:
        part = status[first : first + len(views)]
        kernel(
            views, flat, data, starts, nulls, table, part, text.bounds, memo_low, memo_high, memo
        )
    text.scanned = True
    return status


def code_classes(codes: dict[str, int]) -> np.ndarray:
    """A ``classes`` table for :func:`check_format` from two-character codes."""
    table = np.zeros(65536, dtype=np.uint8)
    for code, value in codes.items():
        raw = code.encode("ascii")
        if len(raw) != 2 or value in (MISSING, BAD):
            raise ValueError(f"bad code class {code!r}: {value}")
        table[raw[0] * 256 + raw[1]] = value
    return table


# ---------------------------------------------------------------------------
# numbers, enumerations and lengths


@njit(cache=True, nogil=True, inline="always")
def _number_one(data: np.ndarray, a: int, b: int) -> tuple[float, int]:
    """``d{1,15}[.d+]`` with at most 15 digits in all, else ``BAD`` (ask Polars).

    Such a number is an integer below 2**53 divided by a power of ten below
    10**22, both exact doubles, so one IEEE division gives the correctly
    rounded value: the same double Polars' own (correctly rounding) parser
    returns.
    """
    mantissa = 0
    digits = 0
    i = a
    while i < b and 48 <= data[i] <= 57:
        mantissa = mantissa * 10 + (data[i] - 48)
        digits += 1
        i += 1
    if digits == 0:
        return 0.0, BAD
    scale = 0
    if i < b:
        if data[i] != 46:
            return 0.0, BAD
        i += 1
        while i < b and 48 <= data[i] <= 57:
            mantissa = mantissa * 10 + (data[i] - 48)
            scale += 1
            i += 1
        if i != b or scale == 0:
            return 0.0, BAD
    if digits + scale > 15:
        return 0.0, BAD
    return mantissa / 10.0**scale, OK


@njit(cache=True, nogil=True)
def _number_views(
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    out: np.ndarray,
    status: np.ndarray,
    bounds: np.ndarray,
    memo_low: np.ndarray,
    memo_high: np.ndarray,
    memo: np.ndarray,
    memo_status: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(out)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            status[r] = MISSING
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            status[r] = MISSING
            continue
        if ln <= _INLINE:
            low, high, slot = _inline_key(views, r, ln)
            if memo_high[slot] == high and memo_low[slot] == low:
                v = memo[slot]
                st = memo_status[slot]
            else:
                a = 16 * r + 4
                v, st = _number_one(flat, a, a + ln)
                memo_low[slot] = low
                memo_high[slot] = high
                memo[slot] = v
                memo_status[slot] = st
        else:
            a = starts[views[r, 2]] + int(views[r, 3])
            v, st = _number_one(data, a, a + ln)
        out[r] = v
        status[r] = st
    bounds[0] = lo
    bounds[1] = hi


def parse_plain_numbers(column: pl.Series | Text) -> tuple[np.ndarray, np.ndarray]:
    """``(float64, status)``: plain decimals parsed, anything else ``BAD``.

    ``BAD`` here means "not the plain form", not "invalid": ``1e3``, ``.5`` or
    ``inf`` are left for the caller to hand to a general parser (rare).
    """
    text = _text(column)
    out = np.zeros(text.n, dtype=np.float64)
    status = np.zeros(text.n, dtype=np.uint8)
    memo_low, memo_high = _memo_keys()
    memo = np.zeros(len(memo_low), dtype=np.float64)
    memo_status = np.zeros(len(memo_low), dtype=np.uint8)
    for first, (views, flat, data, starts, nulls) in text.chunks:
        end = first + len(views)
        _number_views(
            views, flat, data, starts, nulls, out[first:end], status[first:end], text.bounds,
            memo_low, memo_high, memo, memo_status,
        )
    text.scanned = True
    return out, status


NO_VALUE, NO_MATCH = 255, 254
"""Codes of :func:`match_choices` for a missing value and for a value not listed."""


@njit(cache=True, nogil=True, inline="always")
def _choice_one(data: np.ndarray, a: int, ln: int, choices: np.ndarray, lengths: np.ndarray) -> int:
    for j in range(len(lengths)):
        if lengths[j] != ln:
            continue
        same = True
        for k in range(ln):
            if data[a + k] != choices[j, k]:
                same = False
                break
        if same:
            return j
    return NO_MATCH


@njit(cache=True, nogil=True)
def _choice_views(
    views: np.ndarray,
    flat: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    nulls: np.ndarray,
    choices: np.ndarray,
    lengths: np.ndarray,
    out: np.ndarray,
    bounds: np.ndarray,
    memo_low: np.ndarray,
    memo_high: np.ndarray,
    memo: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(len(out)):
        ln = int(views[r, 0])
        if has_nulls and nulls[r]:
            out[r] = NO_VALUE
            continue
        lo = min(lo, ln)
        hi = max(hi, ln)
        if ln == 0:
            out[r] = NO_VALUE
        elif ln <= _INLINE:
            low, high, slot = _inline_key(views, r, ln)
            if memo_high[slot] == high and memo_low[slot] == low:
                out[r] = memo[slot]
            else:
                code = _choice_one(flat, 16 * r + 4, ln, choices, lengths)
                memo_low[slot] = low
                memo_high[slot] = high
                memo[slot] = code
                out[r] = code
        else:
            a = starts[views[r, 2]] + int(views[r, 3])
            out[r] = _choice_one(data, a, ln, choices, lengths)
    bounds[0] = lo
    bounds[1] = hi


def match_choices(column: pl.Series | Text, choices: tuple[str, ...]) -> np.ndarray:
    """Per row: the index of the value in ``choices`` (exact bytes), ``NO_MATCH`` or ``NO_VALUE``.

    What a cast to ``pl.Enum(choices)`` decides, without hashing every row.
    """
    if len(choices) >= NO_MATCH:
        raise ValueError("too many choices")
    encoded = [c.encode("utf-8") for c in choices]
    width = max((len(e) for e in encoded), default=1)
    table = np.zeros((max(1, len(encoded)), max(1, width)), dtype=np.uint8)
    for j, e in enumerate(encoded):
        table[j, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    text = _text(column)
    out = np.zeros(text.n, dtype=np.uint8)
    memo_low, memo_high = _memo_keys()
    memo = np.zeros(len(memo_low), dtype=np.uint8)
    for first, (views, flat, data, starts, nulls) in text.chunks:
        end = first + len(views)
        _choice_views(
            views, flat, data, starts, nulls, table, lengths, out[first:end], text.bounds,
            memo_low, memo_high, memo,
        )
    text.scanned = True
    return out


@njit(cache=True, nogil=True)
def _length_range(views: np.ndarray, nulls: np.ndarray, bounds: np.ndarray) -> None:
    has_nulls = len(nulls) > 0
    lo = bounds[0]
    hi = bounds[1]
    for r in range(views.shape[0]):
        if not (has_nulls and nulls[r]):
            lo = min(lo, int(views[r, 0]))
            hi = max(hi, int(views[r, 0]))
    bounds[0] = lo
    bounds[1] = hi


def byte_length_range(column: pl.Series | Text) -> tuple[int, int]:
    """``(shortest, longest)`` byte length of the non-null strings (``(-1, -1)`` if none).

    Read from the views alone (no pass over the text), or from what a kernel
    already saw.
    """
    text = _text(column)
    if not text.scanned:
        for _, (views, _, _, _, nulls) in text.chunks:
            _length_range(views, nulls, text.bounds)
        text.scanned = True
    lo, hi = int(text.bounds[0]), int(text.bounds[1])
    return (-1, -1) if hi < 0 else (lo, hi)


# ---------------------------------------------------------------------------
# UTF-8


@njit(cache=True, nogil=True)
def _utf8_views(
    views: np.ndarray, flat: np.ndarray, data: np.ndarray, starts: np.ndarray,
    nulls: np.ndarray, out: np.ndarray,
) -> None:
    has_nulls = len(nulls) > 0
    for r in range(len(out)):
        if has_nulls and nulls[r]:
            out[r] = True
            continue
        ln = int(views[r, 0])
        if ln <= _INLINE:
            a = 16 * r + 4
            out[r] = utf8_ok(flat, a, a + ln)
        else:
            a = starts[views[r, 2]] + int(views[r, 3])
            out[r] = utf8_ok(data, a, a + ln)


def utf8_valid(column: pl.Series) -> np.ndarray:
    """Per row of a binary column: are its bytes UTF-8 (nulls count as valid)."""
    out = np.ones(len(column), dtype=np.bool_)
    first = 0
    for chunk in column.get_chunks():
        arr = chunk.to_arrow(compat_level=_NEWEST)
        if arr.type != pa.binary_view():
            arr = arr.cast(pa.binary_view())
        views, flat, data, starts, nulls = _binary_views(arr)
        _utf8_views(views, flat, data, starts, nulls, out[first : first + len(arr)])
        first += len(arr)
    return out


def _binary_views(arr: pa.Array) -> Views:
    return _views(arr.view(_STRING_VIEW))
