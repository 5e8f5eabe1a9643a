"""Cut a CSV file into runs of whole records, cheaply, for parallel parsing.

Polars parses a run of records handed to it as bytes exactly as it would parse
them inside the whole file, so a file can be parsed chunk by chunk, several
chunks at a time, with the rows numbered in order afterwards. Two things make
that cheap:

* **No pass over the bytes to find the cuts.** A cut is the last newline
  before a target size, found by reading a small window there (a *probe*).
  That newline ends a record unless it sits inside a quoted field; the worker
  that reads the piece checks it (an odd number of ``"`` in the piece means
  the cut was inside quotes) and the reader then re-cuts from that piece on
  with :func:`quoted_pieces`, which counts quotes as it reads.
* **Pieces of at most 16 MB.** Each piece is read into its own ``bytes``
  (``os.pread``, no shared file position, so workers read in parallel).
  Buffers of 80 MB are mapped fresh from the kernel every time and cost more
  in page faults than parsing them; 16 MB buffers are recycled by the
  allocator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

PIECE_BYTES = 1 << 24
PROBE_BYTES = 1 << 16
SAMPLE_BYTES = 1 << 18


@dataclass(frozen=True, slots=True)
class Piece:
    """``length`` bytes at ``offset``: whole records (``data`` when already read)."""

    offset: int
    length: int
    data: bytes | None = None

    def load(self, fd: int) -> bytes:
        if self.data is not None:
            return self.data
        data = os.pread(fd, self.length, self.offset)
        if len(data) != self.length:
            raise OSError(f"file changed while read (short read at byte {self.offset})")
        return data


def record_end(buf: bytes, pos: int = 0) -> int:
    """Position after the first newline outside quotes at or after ``pos``, or -1."""
    quoted = False
    for i in range(pos, len(buf)):
        c = buf[i]
        if c == 34:
            quoted = not quoted
        elif c == 10 and not quoted:
            return i + 1
    return -1


def last_record_end(buf: bytes, end: int) -> int:
    """Position after the last newline outside quotes before ``end``, or 0.

    ``buf`` starts outside quotes; doubled quotes inside a quoted field count
    twice, so parity tells inside from outside.
    """
    p = buf.rfind(b"\n", 0, end)
    if p < 0 or buf.find(b'"', 0, p) < 0:
        return p + 1
    quotes = buf.count(b'"', 0, p)
    while p >= 0:
        if quotes % 2 == 0:
            return p + 1
        prev = buf.rfind(b"\n", 0, p)
        if prev < 0:
            return 0
        quotes -= buf.count(b'"', prev, p)
        p = prev
    return 0


def header_end(fd: int) -> tuple[int, float] | None:
    """``(offset of the first record, bytes per record)``, ``None`` without records.

    The bytes per record come from the records in the first 256 kB (to size
    chunks in rows).
    """
    sample = os.pread(fd, SAMPLE_BYTES, 0)
    head = record_end(sample)
    while head < 0:
        more = os.pread(fd, SAMPLE_BYTES, len(sample))
        if not more:
            return None
        sample += more
        head = record_end(sample)
    body = sample[head:]
    if not body:
        return None
    return head, max(1.0, len(body) / max(1, body.count(b"\n")))


def probed_pieces(fd: int, offset: int, size: int, piece_bytes: int) -> Iterator[Piece]:
    """Pieces ending on the last newline before every ``piece_bytes``, found by probes.

    A record longer than a piece makes a longer piece (the next newline).
    Whether a cut fell inside a quoted field is for the reader of the piece
    to check (an odd number of ``"`` in the piece).
    """
    while offset < size:
        end = offset + piece_bytes
        if end >= size:
            yield Piece(offset, size - offset)
            return
        cut = _newline_before(fd, offset, end)
        if cut <= offset:
            cut = _newline_after(fd, end, size)
        yield Piece(offset, cut - offset)
        offset = cut


def _newline_before(fd: int, lo: int, hi: int) -> int:
    """Position after the last newline in ``[lo, hi)``, or ``lo``."""
    while hi > lo:
        start = max(lo, hi - PROBE_BYTES)
        p = os.pread(fd, hi - start, start).rfind(b"\n")
        if p >= 0:
            return start + p + 1
        hi = start
    return lo


def _newline_after(fd: int, pos: int, size: int) -> int:
    """Position after the first newline at or after ``pos``, or ``size``."""
    while pos < size:
        window = os.pread(fd, PROBE_BYTES, pos)
        p = window.find(b"\n")
        if p >= 0:
            return pos + p + 1
        pos += len(window)
    return size


def quoted_pieces(fd: int, offset: int, piece_bytes: int) -> Iterator[Piece]:
    """Pieces cut on newlines outside quotes, counting quotes as the file is read.

    For files whose quoted fields hold newlines (where a probe may cut inside
    a field). ``offset`` must be a record boundary.
    """
    carry = b""
    final = False
    while True:
        buf = carry
        if len(carry) < piece_bytes and not final:
            data = os.pread(fd, piece_bytes - len(carry), offset + len(carry))
            final = not data
            buf = carry + data if carry else data
        if not buf:
            return
        cut = len(buf) if final else last_record_end(buf, min(len(buf), piece_bytes))
        if cut <= 0 and not final:
            cut = last_record_end(buf, len(buf))
        if cut <= 0:
            # One record longer than a piece: read on.
            more = os.pread(fd, piece_bytes, offset + len(buf))
            final = not more
            carry = buf + more
            continue
        yield Piece(offset, cut, buf if cut == len(buf) else buf[:cut])
        offset += cut
        carry = buf[cut:]
        if final and not carry:
            return
