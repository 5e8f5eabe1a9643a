"""The CSV grammar of the event contract: one tokenizer, bounded work per byte.

Every CSV read (plain or gzipped, the header and every record) goes through
:func:`tokenize`, a compiled single pass over the raw bytes of a run of
records. It finds the fields of each record and describes the values of the
contract's columns as Arrow string *views* pointing straight into those bytes
(no copy of the text; values of at most 12 bytes live in the view itself), so
the validation kernels (:mod:`tapshield.parsing`) read the file's own bytes:
the text is walked once to split it and once to parse it, never copied into
intermediate strings first.

The grammar (RFC 4180, with the leniencies exports need, documented in
docs/contracts.md):

* fields are separated by ``,``; a record ends at ``\\n``, ``\\r\\n`` or a lone
  ``\\r`` (old Mac exports), outside quotes;
* an empty line (nothing between two line ends) is not a record: it is
  skipped and not numbered, so the usual trailing newline after the last
  record, or a blank line in the middle, never becomes a phantom row;
* a field that *starts* with ``"`` is quoted: it runs to the next ``"`` not
  followed by another ``"``, ``""`` inside it stands for one ``"``, and it may
  hold separators and line ends. A ``"`` anywhere else is an ordinary
  character (``5" screen``);
* a quoted field followed by anything but a separator or a line end, or a
  quoted field still open at the end of the file, is a broken record
  (rule ``csv_quote``, rejected with its column). A quote still open at the end
  of the file is read as an ordinary character and the record ends at its own
  line end, so one stray quote never swallows the rest of the file;
* an empty field (``,,`` or ``,"",``) is "no value";
* a record with more fields than the header is rejected (``field_count``);
  missing trailing fields are empty;
* text is UTF-8; a field of a contract column that is not is rejected
  (``encoding``).

Work is bounded: the tokenizer looks at each byte a fixed number of times,
and a quoted field is scanned once. How files are cut into runs of whole
records for parallel parsing is in :mod:`tapshield.events.read`: cuts are
guessed at line ends and checked (a run parsed from a real record start ends
outside quotes exactly when the next run's start is a real record start).
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from tapshield.parsing import utf8_ok

PIECE_BYTES = 1 << 24
"""Bytes per piece read at once (16 MiB: buffers the allocator recycles)."""
PROBE_BYTES = 1 << 16
SAMPLE_BYTES = 1 << 18

# Record status codes (per record, from the tokenizer).
REC_OK, REC_FIELD_COUNT, REC_ENCODING, REC_QUOTE = 0, 1, 2, 3

_COMMA, _LF, _CR, _QUOTE = 44, 10, 13, 34
_INLINE = 12


@njit(cache=True, nogil=True, inline="always")
def _put_view(
    views: np.ndarray, col: int, r: int, src: np.ndarray, a: int, ln: int, buffer: int
) -> None:
    """Write the string view of ``src[a:a+ln]`` (data buffer ``buffer``) for row ``r``."""
    v = views[col, r]
    v[0] = ln
    v[1] = 0
    v[2] = 0
    v[3] = 0
    if ln <= _INLINE:
        # the bytes themselves, little-endian into words 1-3
        for k in range(ln):
            w = 1 + k // 4
            v[w] |= np.uint32(src[a + k]) << np.uint32(8 * (k % 4))
    else:
        for k in range(4):
            v[1] |= np.uint32(src[a + k]) << np.uint32(8 * k)
        v[2] = buffer
        v[3] = a


@njit(cache=True, nogil=True)
def tokenize(
    buf: np.ndarray,
    lo: int,
    hi: int,
    final: bool,
    colmap: np.ndarray,
    views: np.ndarray,
    nulls: np.ndarray,
    rec_start: np.ndarray,
    rec_end: np.ndarray,
    rec_status: np.ndarray,
    rec_col: np.ndarray,
    side: np.ndarray,
) -> tuple[int, int, int]:
    """Split the records of ``buf[lo:hi]``; ``(rows, resume, side bytes used)``.

    ``colmap[i]`` is the output column of the header's ``i``-th field (``-1``:
    not kept); ``len(colmap)`` is the header's width. Per record ``r``:
    ``views[c, r]`` the value of output column ``c`` (an Arrow string view into
    ``buf``, buffer 0, or into ``side``, buffer 1, where a quoted value with
    ``""`` is stored unescaped), ``nulls[c, r]`` 1 for no value,
    ``rec_start/rec_end`` the record's bytes without its line end, and
    ``rec_status/rec_col`` the first structural problem (``REC_*``) and the
    header position it was found at (``-1``: the record as a whole).

    ``resume`` is where parsing stopped: ``hi`` when every record ended, else
    the start of a record that the bytes do not finish (inside a quoted field,
    or without a line end when ``final`` is false): the caller reads on from
    there. With ``final`` the end of the buffer is the end of the file. The
    output arrays must have room for one row per line end plus one.
    """
    width = len(colmap)
    r = 0
    p = lo
    s = 0
    while p < hi:
        c0 = buf[p]
        if c0 == _LF or c0 == _CR:
            p += 1  # an empty line is not a record
            continue
        rs = p
        field = 0
        status = REC_OK
        bad_col = -1
        ended = False
        while True:
            fs = p
            out = colmap[field] if field < width else -1
            quoted_ok = False
            va = 0
            vln = 0
            vbuf = 0
            high = 0
            if buf[p] == _QUOTE if p < hi else False:
                q = p + 1
                escaped = False
                closed = -1
                while q < hi:
                    c = buf[q]
                    if c == _QUOTE:
                        if q + 1 < hi and buf[q + 1] == _QUOTE:
                            escaped = True
                            q += 2
                            continue
                        if q + 1 >= hi and not final:
                            break  # the next byte decides: read on
                        closed = q
                        break
                    high |= c
                    q += 1
                if closed < 0 and not final:
                    return r, rs, s
                if closed >= 0:
                    quoted_ok = True
                    if escaped:
                        # unescape into the side buffer
                        start = s
                        k = p + 1
                        while k < closed:
                            side[s] = buf[k]
                            s += 1
                            k += 2 if buf[k] == _QUOTE else 1
                        va, vln, vbuf = start, s - start, 1
                    else:
                        va, vln, vbuf = p + 1, closed - p - 1, 0
                    p = closed + 1
                    if p < hi:
                        c = buf[p]
                        if c != _COMMA and c != _LF and c != _CR:
                            # text after the closing quote: a broken record
                            if status == REC_OK:
                                status = REC_QUOTE
                                bad_col = field
                            while p < hi:
                                c = buf[p]
                                if c == _COMMA or c == _LF or c == _CR:
                                    break
                                p += 1
                            if p >= hi and not final:
                                return r, rs, s
                else:
                    # a quote still open at the end of the file: an ordinary
                    # character; the record ends at its own line end
                    if status == REC_OK:
                        status = REC_QUOTE
                        bad_col = field
            if not quoted_ok:
                p = fs
                high = 0
                while p < hi:
                    c = buf[p]
                    if c == _COMMA or c == _LF or c == _CR:
                        break
                    high |= c
                    p += 1
                if p >= hi and not final:
                    return r, rs, s
                va, vln, vbuf = fs, p - fs, 0
            if field >= width:
                if status == REC_OK:
                    status = REC_FIELD_COUNT
                    bad_col = -1
            elif out >= 0:
                if vln == 0:
                    nulls[out, r] = 1
                elif high >= 0x80 and not utf8_ok(side if vbuf else buf, va, va + vln):
                    nulls[out, r] = 1
                    if status == REC_OK:
                        status = REC_ENCODING
                        bad_col = field
                else:
                    nulls[out, r] = 0
                    _put_view(views, out, r, side if vbuf else buf, va, vln, vbuf)
            field += 1
            if p >= hi:
                ended = True
                re = p
                break
            c = buf[p]
            if c == _COMMA:
                p += 1
                if p >= hi:
                    if not final:
                        return r, rs, s
                    # a trailing separator at the end of the file: one more empty field
                    if field < width:
                        o = colmap[field]
                        if o >= 0:
                            nulls[o, r] = 1
                    elif status == REC_OK:
                        status = REC_FIELD_COUNT
                    field += 1
                    ended = True
                    re = p
                    break
                continue
            re = p
            p += 1
            if c == _CR and p < hi and buf[p] == _LF:
                p += 1
            ended = True
            break
        if not ended:  # pragma: no cover - every path above ends or returns
            return r, rs, s
        for f in range(field, width):
            o = colmap[f]
            if o >= 0:
                nulls[o, r] = 1
        rec_start[r] = rs
        rec_end[r] = re
        rec_status[r] = status
        rec_col[r] = bad_col
        r += 1
    return r, hi, s


@njit(cache=True, nogil=True)
def scan_records(buf: np.ndarray, lo: int, hi: int, state: np.ndarray, first: bool) -> int:
    """Resumable search for record ends in ``buf[lo:hi]``: bounded memory for any length.

    ``state`` is ``[mode, open quote]`` carried from one call to the next
    (mode 0 field start, 1 unquoted, 2 in quotes, 3 a quote seen in quotes;
    the position, within the caller's ``buf``, where the last quoted field
    opened). Returns the position after the first (``first``) or the last
    line end outside quotes, or ``-1`` when there is none yet.
    """
    mode = state[0]
    last = -1
    p = lo
    while p < hi:
        c = buf[p]
        if mode == 2:
            if c == _QUOTE:
                mode = 3
        elif mode == 3:
            if c == _QUOTE:
                mode = 2
            elif c == _COMMA:
                mode = 0
            elif c == _LF or c == _CR:
                mode = 0
                last = p + 1
                if first:
                    break
            else:
                mode = 1
        elif c == _COMMA:
            mode = 0
        elif c == _LF or c == _CR:
            mode = 0
            last = p + 1
            if first:
                break
        elif mode == 0 and c == _QUOTE:
            mode = 2
            state[1] = p
        else:
            mode = 1
        p += 1
    state[0] = mode
    return last


def record_extent(fd: int, offset: int, size: int) -> int:
    """End of the record starting at ``offset`` (after its line end), read in windows.

    For a record longer than a piece: memory stays bounded by the window,
    whatever the record's length. A quoted field still open at the end of the
    file makes the record end at the first line end after its opening quote
    (the tokenizer reads that quote as an ordinary character).
    """
    state = np.zeros(2, dtype=np.int64)
    state[1] = -1
    opened = -1
    pos = offset
    while pos < size:
        window = np.frombuffer(os.pread(fd, PIECE_BYTES, pos), dtype=np.uint8)
        if len(window) == 0:
            break
        state[1] = -1
        end = scan_records(window, 0, len(window), state, True)
        if state[1] >= 0:
            opened = pos + int(state[1])
        if end >= 0:
            return pos + end
        pos += len(window)
    if state[0] in (2, 3) and opened >= 0:
        # open quote at the end of the file: the record ends at its own line end
        return line_end_after(fd, opened + 1, size)
    return size


def line_end_after(fd: int, pos: int, size: int) -> int:
    """Position after the first line end (``\\n`` or ``\\r``) at or after ``pos``, or ``size``."""
    while pos < size:
        window = os.pread(fd, PROBE_BYTES, pos)
        if not window:
            break
        lf, cr = window.find(b"\n"), window.find(b"\r")
        hits = [h for h in (lf, cr) if h >= 0]
        if hits:
            return pos + min(hits) + 1
        pos += len(window)
    return size


def line_end_before(fd: int, lo: int, hi: int) -> int:
    """Position after the last line end in ``[lo, hi)``, or ``lo``."""
    while hi > lo:
        start = max(lo, hi - PROBE_BYTES)
        window = os.pread(fd, hi - start, start)
        p = max(window.rfind(b"\n"), window.rfind(b"\r"))
        if p >= 0:
            return start + p + 1
        hi = start
    return lo


def line_ends(data: bytes) -> int:
    """How many ``\\n`` and ``\\r`` bytes: an upper bound on the records in ``data``."""
    return data.count(b"\n") + data.count(b"\r")


@njit(cache=True, nogil=True)
def record_views(
    buf: np.ndarray, rec_start: np.ndarray, rec_end: np.ndarray, n: int, views: np.ndarray
) -> None:
    """Binary views of each record's own bytes (for the rejects file's ``raw``)."""
    for r in range(n):
        _put_view(views, 0, r, buf, rec_start[r], rec_end[r] - rec_start[r], 0)


class Tokens:
    """What :func:`tokenize` made of one run of records (arrays sized for it)."""

    __slots__ = (
        "buf", "nulls", "rec_col", "rec_end", "rec_start", "rec_status", "resume", "rows",
        "side", "side_used", "views",
    )

    def __init__(self, data: bytes, colmap: np.ndarray, ncols: int, final: bool) -> None:
        self.buf = np.frombuffer(data, dtype=np.uint8)
        cap = line_ends(data) + 1
        self.views = np.zeros((ncols, cap, 4), dtype=np.uint32)
        self.nulls = np.zeros((ncols, cap), dtype=np.uint8)
        self.rec_start = np.zeros(cap, dtype=np.int64)
        self.rec_end = np.zeros(cap, dtype=np.int64)
        self.rec_status = np.zeros(cap, dtype=np.uint8)
        self.rec_col = np.zeros(cap, dtype=np.int64)
        self.side = np.zeros(len(data) if b'""' in data else 1, dtype=np.uint8)
        self.rows, self.resume, self.side_used = tokenize(
            self.buf, 0, len(self.buf), final, colmap, self.views, self.nulls,
            self.rec_start, self.rec_end, self.rec_status, self.rec_col, self.side,
        )
