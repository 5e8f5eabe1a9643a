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
def _field_end(buf: np.ndarray, p: int, hi: int) -> int:
    """Position of the first ``,`` ``\\n`` or ``\\r`` at or after ``p`` (or ``hi``).

    The three bytes are all below 45, as are few data bytes (digits, letters,
    ``-``, ``.``, ``:`` are above): one well-predicted compare per byte skips
    the rest.
    """
    while p < hi:
        c = buf[p]
        if c > _COMMA:
            p += 1
        elif c == _COMMA or c == _LF or c == _CR:  # noqa: PLR1714, SIM109 - Numba: plain compares
            return p
        else:
            p += 1
    return hi


@njit(cache=True, nogil=True, inline="always")
def _no_view(views: np.ndarray, col: int, r: int) -> None:
    v = views[col, r]
    v[0] = 0
    v[1] = 0
    v[2] = 0
    v[3] = 0


@njit(cache=True, nogil=True, inline="always")
def _put_view(
    views: np.ndarray, col: int, r: int, src: np.ndarray, a: int, ln: int, buffer: int
) -> None:
    """Write the string view of ``src[a:a+ln]`` (data buffer ``buffer``) for row ``r``.

    The view's words are built from the value's bytes with shifts (little
    endian: the bytes in the order they come), zeros past a short value; no
    byte past the value is read. Built this way rather than copied byte by
    byte into the view, the split costs half as much (the compiler keeps the
    words in registers).
    """
    v = views[col, r]
    v[0] = ln
    w1 = np.uint32(0)
    if ln <= _INLINE:
        w2 = np.uint32(0)
        w3 = np.uint32(0)
        for k in range(4):
            if k < ln:
                w1 |= np.uint32(src[a + k]) << np.uint32(8 * k)
            if k + 4 < ln:
                w2 |= np.uint32(src[a + 4 + k]) << np.uint32(8 * k)
            if k + 8 < ln:
                w3 |= np.uint32(src[a + 8 + k]) << np.uint32(8 * k)
        v[1] = w1
        v[2] = w2
        v[3] = w3
    else:
        for k in range(4):
            w1 |= np.uint32(src[a + k]) << np.uint32(8 * k)
        v[1] = w1
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
    check_utf8: bool,
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
        if c0 == _LF or c0 == _CR:  # noqa: PLR1714, SIM109 - Numba: plain compares
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
            if buf[p] == _QUOTE if p < hi else False:
                q = p + 1
                escaped = False
                closed = -1
                while q < hi:
                    c = buf[q]
                    if c > _QUOTE:
                        q += 1
                        continue
                    if c == _QUOTE:
                        if q + 1 < hi and buf[q + 1] == _QUOTE:
                            escaped = True
                            q += 2
                            continue
                        if q + 1 >= hi and not final:
                            break  # the next byte decides: read on
                        closed = q
                        break
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
                        if c != _COMMA and c != _LF and c != _CR:  # noqa: PLR1714 - Numba: plain compares
                            # text after the closing quote: a broken record
                            if status == REC_OK:
                                status = REC_QUOTE
                                bad_col = field
                            p = _field_end(buf, p, hi)
                            if p >= hi and not final:
                                return r, rs, s
                # a quote still open at the end of the file: an ordinary
                # character; the record ends at its own line end
                elif status == REC_OK:
                    status = REC_QUOTE
                    bad_col = field
            if not quoted_ok:
                p = fs
                p = _field_end(buf, p, hi)
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
                    _no_view(views, out, r)
                elif check_utf8 and not utf8_ok(side if vbuf else buf, va, va + vln):
                    nulls[out, r] = 1
                    _no_view(views, out, r)
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
                            _no_view(views, o, r)
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
                _no_view(views, o, r)
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
            elif c == _LF or c == _CR:  # noqa: PLR1714, SIM109 - Numba: plain compares
                mode = 0
                last = p + 1
                if first:
                    break
            else:
                mode = 1
        elif c == _COMMA:
            mode = 0
        elif c == _LF or c == _CR:  # noqa: PLR1714, SIM109 - Numba: plain compares
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


def _line_ends(buf: np.ndarray) -> int:
    """How many ``\\n`` and ``\\r`` bytes (vectorised): room for every record."""
    return int(np.count_nonzero(buf == _LF)) + int(np.count_nonzero(buf == _CR))


class Tokens:
    """What :func:`tokenize` made of one run of records (arrays sized for it)."""

    __slots__ = (
        "buf", "nulls", "rec_col", "rec_end", "rec_start", "rec_status", "resume", "rows",
        "side", "side_used", "views",
    )

    def __init__(self, data: bytes, colmap: np.ndarray, ncols: int, final: bool) -> None:
        self.buf = np.frombuffer(data, dtype=np.uint8)
        cap = _line_ends(self.buf) + 1
        # Every slot a record uses is written by the tokenizer: no zeroing.
        self.views = np.empty((ncols, cap, 4), dtype=np.uint32)
        self.nulls = np.empty((ncols, cap), dtype=np.uint8)
        self.rec_start = np.empty(cap, dtype=np.int64)
        self.rec_end = np.empty(cap, dtype=np.int64)
        self.rec_status = np.empty(cap, dtype=np.uint8)
        self.rec_col = np.empty(cap, dtype=np.int64)
        # room for unescaped quoted values; pages are only mapped if written
        self.side = np.empty(len(self.buf), dtype=np.uint8)
        # UTF-8 is checked field by field only where some byte is not ASCII
        # (one vectorised look at the whole run decides).
        check = bool(len(self.buf)) and int(self.buf.max()) >= 0x80
        self.rows, self.resume, self.side_used = tokenize(
            self.buf, 0, len(self.buf), final, colmap, self.views, self.nulls,
            self.rec_start, self.rec_end, self.rec_status, self.rec_col, self.side, check,
        )


STATUS_RULES = {REC_FIELD_COUNT: "field_count", REC_ENCODING: "encoding", REC_QUOTE: "csv_quote"}
UTF8_BOM = b"\xef\xbb\xbf"
OTHER_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"),
)


def split_header(data: bytes, name: str) -> tuple[list[str], int]:
    """``(field names, offset of the first record)`` of a CSV file's bytes.

    Refuses (``ValueError`` with one line) a file without a header, a header
    that is not UTF-8 and UTF-16/32 text; skips a UTF-8 byte-order mark and
    blank lines before the header.
    """
    for bom, enc in OTHER_BOMS:
        if data.startswith(bom):
            raise ValueError(f"{name}: the file is {enc} text; save it as UTF-8")
    start = 3 if data.startswith(UTF8_BOM) else 0
    while start < len(data) and data[start] in (10, 13):
        start += 1
    state = np.zeros(2, dtype=np.int64)
    end = scan_records(np.frombuffer(data, np.uint8), start, len(data), state, True)
    if end < 0:
        end = len(data)
    text = data[start:end]
    if not text.strip(b"\r\n"):
        raise ValueError(f"{name}: empty file (no CSV header)")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: the CSV header is not UTF-8 ({exc.reason})") from exc
    del decoded
    return header_fields(text), end


def header_fields(text: bytes) -> list[str]:
    """The names in a header record (UTF-8 checked by the caller), by this grammar.

    The tokenizer, not the ``csv`` module: a header field has no size limit
    either (``csv`` refuses fields over 131,072 bytes).
    """
    width = text.count(b",") + 1
    tokens = Tokens(text, np.arange(width, dtype=np.int64), width, True)
    if not tokens.rows:
        return []
    names = []
    for c in range(width):
        if tokens.nulls[c, 0]:
            names.append("")
            continue
        v = tokens.views[c, 0]
        ln = int(v[0])
        if ln <= 12:
            value = v[1:4].tobytes()[:ln]
        else:
            src = tokens.side if v[2] == 1 else tokens.buf
            value = bytes(src[int(v[3]) : int(v[3]) + ln])
        names.append(value.decode("utf-8").strip())
    # the record's own width (trailing fields the count of "," overestimated
    # inside quotes are not names)
    real = _record_width(tokens, width)
    return names[:real]


def _record_width(tokens: Tokens, width: int) -> int:
    """How many fields the first record really has (quoted commas are not separators)."""
    text = bytes(tokens.buf[tokens.rec_start[0] : tokens.rec_end[0]])
    state = 0  # 0 field start, 1 unquoted, 2 in quotes, 3 quote in quotes
    fields = 1
    for c in text:
        if state == 2:
            state = 3 if c == _QUOTE else 2
        elif state == 3:
            if c == _QUOTE:
                state = 2
            elif c == _COMMA:
                fields += 1
                state = 0
            else:
                state = 1
        elif c == _COMMA:
            fields += 1
            state = 0
        elif state == 0 and c == _QUOTE:
            state = 2
        else:
            state = 1
    return min(fields, width)


def read_table_csv(data: bytes, name: str) -> tuple[list[str], list[list[str | None]], list[int],
                                                   list[tuple[int, str, str, bytes]]]:
    """A small CSV table with the event contract's grammar, all values as text.

    Returns ``(header, columns, row numbers, broken)``: one list of values per
    header column for the records that split cleanly, their 1-based record
    numbers, and ``(row, column, rule, raw bytes)`` for the others (too many
    fields, bytes that are not UTF-8, broken quoting). Raises ``ValueError``
    for a file-level problem (no header, a duplicate column).
    """
    header, offset = split_header(data, name)
    seen: set[str] = set()
    dupes = sorted({h for h in header if h in seen or seen.add(h)})  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"{name}: duplicate column(s) {', '.join(dupes)}")
    body = data[offset:]
    colmap = np.arange(len(header), dtype=np.int64)
    tokens = Tokens(body, colmap, len(header), True)
    columns: list[list[str | None]] = [[] for _ in header]
    rows: list[int] = []
    broken: list[tuple[int, str, str, bytes]] = []
    buf = tokens.buf
    side = tokens.side
    for r in range(tokens.rows):
        raw = bytes(buf[tokens.rec_start[r] : tokens.rec_end[r]])
        status = int(tokens.rec_status[r])
        if status:
            col = int(tokens.rec_col[r])
            broken.append((r + 1, header[col] if col >= 0 else "*", STATUS_RULES[status], raw))
            continue
        rows.append(r + 1)
        for c in range(len(header)):
            if tokens.nulls[c, r]:
                columns[c].append(None)
                continue
            v = tokens.views[c, r]
            ln = int(v[0])
            if ln <= 12:
                value = v[1:4].tobytes()[:ln]
            else:
                src = side if v[2] == 1 else buf
                value = bytes(src[int(v[3]) : int(v[3]) + ln])
            columns[c].append(value.decode("utf-8"))
    return header, columns, rows, broken


@njit(cache=True, nogil=True)
def polars_safe(buf: np.ndarray) -> bool:
    """Whether Polars' splitter reads this piece exactly as :func:`tokenize` would.

    True for well-formed RFC 4180 text that ends outside quotes: every quote
    opens a field, closes it (followed by ``,`` or a line end) or is doubled
    inside it; every CR is part of a CRLF; no empty line. Anything else
    (a stray or open quote, text after a closing quote, a lone CR, a blank
    line, a cut inside a quoted field) is the tokenizer's: Polars would
    refuse it, or read it differently.
    """
    n = len(buf)
    p = 0
    at_record = True
    while p < n:
        c = buf[p]
        if c > _COMMA:  # an ordinary byte (all four special ones are below 45)
            at_record = False
            p += 1
            continue
        if at_record and (c == _LF or c == _CR):  # noqa: PLR1714, SIM109 - Numba: plain compares
            return False  # an empty line
        at_record = False
        if c == _QUOTE:
            # must open a field: only at a field start (checked by the caller's
            # position: after a separator, a line end or at the piece start)
            if p > 0 and buf[p - 1] != _COMMA and buf[p - 1] != _LF and buf[p - 1] != _CR:
                return False
            q = p + 1
            while True:
                while q < n and buf[q] != _QUOTE:
                    q += 1
                if q >= n:
                    return False  # still open at the end of the piece
                if q + 1 < n and buf[q + 1] == _QUOTE:
                    q += 2
                    continue
                break
            p = q + 1
            if p < n:
                c = buf[p]
                if c != _COMMA and c != _LF and c != _CR:  # noqa: PLR1714 - Numba
                    return False
            continue
        if c == _CR:
            if p + 1 >= n or buf[p + 1] != _LF:
                return False  # a lone CR
            p += 2
            at_record = True
            continue
        if c == _LF:
            at_record = True
        p += 1
    return True
