"""The last few minutes of events, kept as compact arrays for alert decisions.

Two questions need individual recent events rather than counters: *is this
firing slice explained by an alert already open* (test it with that alert's
events taken out) and *how bad is the wave* (excess failed taps and their
amount over the last minute). A few columns per event (membership indices,
outcome class, latency, amount, payment and device hashes) for ``retention`` of event time
answer both, at a few tens of bytes per event.

The columns live in one contiguous buffer each (appended to a whole batch at
a time, compacted into fresh arrays when full), so a :class:`View` is a
``searchsorted`` and zero-copy slices; membership is stored one slice set
per row, so a slice's mask reads contiguous memory. Per-event arrays derived
from the buffer (a slice's mask, a signal's failure indicator) are cached
aligned with the buffer and extended as views move forward: the lifecycle
asks for the same masks at every crossing and every bucket of an open wave,
and recomputing them over ten minutes of events each time used to cost more
than the detectors themselves. Compaction never writes into arrays a view
may still hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_CAPACITY = 4096
AHEAD = 32768
"""Rows a derived array is computed beyond what was asked (see :meth:`RecentEvents.derived`)."""
MAX_DERIVED = 512
"""Derived arrays kept at most, least recently used dropped first (each is one
byte per buffered event, written only where asked): the slices of the open
waves and their signals, 80-odd at a time on a busy day at ten times normal
traffic; a cache smaller than what is in use would recompute everything."""


@dataclass(slots=True)
class Chunk:
    seq0: int
    ts: np.ndarray
    cls: np.ndarray
    dup: np.ndarray
    lat: np.ndarray
    amt: np.ndarray
    pay: np.ndarray
    dev: np.ndarray
    member: np.ndarray
    """``int32 [slice sets, events]`` (one row per set)."""


@dataclass(slots=True)
class View:
    """A contiguous window of the buffer (arrays aligned by row)."""

    seq: np.ndarray
    ts: np.ndarray
    cls: np.ndarray
    dup: np.ndarray
    lat: np.ndarray
    amt: np.ndarray
    pay: np.ndarray
    dev: np.ndarray
    member: np.ndarray
    base: RecentEvents | None = None
    """The buffer the rows come from (derived arrays are cached there)."""
    gen: int = 0
    lo: int = 0
    """Position of the first row in ``base`` (of its generation ``gen``)."""
    memo: dict[Any, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.ts.shape[0])

    def tail(self, lo: int) -> View:
        """The rows from ``lo`` on (zero-copy)."""
        if lo == 0:
            return self
        return View(self.seq[lo:], self.ts[lo:], self.cls[lo:], self.dup[lo:], self.lat[lo:],
                    self.amt[lo:], self.pay[lo:], self.dev[lo:], self.member[lo:],
                    self.base, self.gen, self.lo + lo)

    def where(self, key: Any, fn: Callable[[View], np.ndarray]) -> np.ndarray:
        """The rows where the boolean :meth:`cached` ``fn`` is true."""
        return np.flatnonzero(self.cached(key, fn))

    def cached(self, key: Any, fn: Callable[[View], np.ndarray]) -> np.ndarray:
        """``fn(view)`` for a row-wise ``fn``, computed once per buffered event.

        ``key`` must identify everything ``fn`` depends on besides the rows.
        The result is read-only: it is shared.
        """
        if self.base is not None:
            got = self.base.derived(key, fn, self.gen, self.lo, self.lo + self.size)
            if got is not None:
                return got
        out = self.memo.get(key)
        if out is None:
            out = np.asarray(fn(self))
            out.setflags(write=False)
            self.memo[key] = out
        return out


_COLUMNS = ("seq", "ts", "cls", "dup", "lat", "amt", "pay", "dev")
_DTYPES = {"seq": np.int64, "ts": np.int64, "cls": np.int8, "dup": np.bool_,
           "lat": np.float64, "amt": np.int64, "pay": np.uint64, "dev": np.uint64}


class RecentEvents:
    """Events of the last ``retention`` of event time (at least), in stream order.

    A chunk may run ahead of the events being decided on (the monitor adds a
    whole batch, then walks it): views ask for rows up to a sequence number,
    and compaction keeps ``retention`` before the *first* event of the chunk
    coming in, so a view never misses rows it asks for. At most
    ``max_events`` are kept then (never fewer than the incoming chunk).

    Compaction alternates between two sets of arrays (allocating and touching
    hundreds of megabytes a day cost more than the copy): a view is valid
    until the next :meth:`add` but one, so views must not be kept across
    batches (``generation`` tells them apart).
    """

    def __init__(self, retention_us: int, max_events: int) -> None:
        self.retention_us = retention_us
        self.max_events = max_events
        self._start = 0
        self._end = 0
        self._cap = 0
        self._width = 1
        self.generation = 0
        self._cols: dict[str, np.ndarray] = {}
        self._member = np.empty((1, 0), dtype=np.int32)
        self._spare: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        self._derived: dict[Any, tuple[int, int, np.ndarray]] = {}

    def __len__(self) -> int:
        return self._end - self._start

    def add(self, chunk: Chunk) -> None:
        k = int(chunk.ts.shape[0])
        if k == 0:
            return
        if self._end + k > self._cap or chunk.member.shape[0] != self._width:
            self._compact(k, int(chunk.ts[0]), int(chunk.member.shape[0]))
        lo, hi = self._end, self._end + k
        c = self._cols
        c["seq"][lo:hi] = np.arange(chunk.seq0, chunk.seq0 + k, dtype=np.int64)
        c["ts"][lo:hi] = chunk.ts
        c["cls"][lo:hi] = chunk.cls
        c["dup"][lo:hi] = chunk.dup
        c["lat"][lo:hi] = chunk.lat
        c["amt"][lo:hi] = chunk.amt
        c["pay"][lo:hi] = chunk.pay
        c["dev"][lo:hi] = chunk.dev
        self._member[:, lo:hi] = chunk.member
        self._end = hi

    def _compact(self, incoming: int, first_ts: int, width: int) -> None:
        """Make room for ``incoming`` events: drop expired ones and move the rest to
        the front of the other set of arrays."""
        start, end = self._start, self._end
        if end > start:
            ts = self._cols["ts"][start:end]
            start += int(np.searchsorted(ts, first_ts - self.retention_us, side="left"))
            start = max(start, end - max(self.max_events - incoming, 0))
        live = end - start
        need = live + incoming
        spare = self._spare
        if spare is not None and spare[1].shape == (width, self._cap) and self._cap >= need:
            cols, member = spare
            cap = self._cap
        else:
            cap = max(self._cap, MIN_CAPACITY, 2 * need)
            cols = {name: np.empty(cap, dtype=_DTYPES[name]) for name in _COLUMNS}
            member = np.empty((width, cap), dtype=np.int32)
        if live:
            for name in _COLUMNS:
                cols[name][:live] = self._cols[name][start:end]
            if width == self._width:
                member[:, :live] = self._member[:, start:end]
            else:  # the slice sets never change in one Monitor
                member[:, :live] = -1
                w = min(width, self._width)
                member[:w, :live] = self._member[:w, start:end]
        if self._cap == cap and self._member.shape == (width, cap):
            self._spare = (self._cols, self._member)
        else:
            self._spare = None
        self._cols, self._member = cols, member
        self._start, self._end, self._cap, self._width = 0, live, cap, width
        self.generation += 1
        self._derived.clear()

    def view(self, since_us: int, upto_seq: int) -> View:
        """Events with ``ts >= since_us`` and sequence number ``<= upto_seq`` (zero-copy)."""
        start, end = self._start, self._end
        if end <= start:
            return _empty(self._width)
        c = self._cols
        hi = start + int(np.searchsorted(c["seq"][start:end], upto_seq, side="right"))
        lo = start + int(np.searchsorted(c["ts"][start:hi], since_us, side="left"))
        return self._rows(lo, hi, with_base=True)

    def _rows(self, lo: int, hi: int, *, with_base: bool) -> View:
        c = self._cols
        cut = slice(lo, hi)
        return View(c["seq"][cut], c["ts"][cut], c["cls"][cut], c["dup"][cut], c["lat"][cut],
                    c["amt"][cut], c["pay"][cut], c["dev"][cut], self._member[:, cut].T,
                    self if with_base else None, self.generation, lo)

    def derived(self, key: Any, fn: Callable[[View], np.ndarray], gen: int, lo: int,
                hi: int) -> np.ndarray | None:
        """``fn`` over buffer rows ``lo:hi``, computing only rows not cached yet.

        Computing runs a little ahead (views move forward through the batch
        already buffered), so most calls are a slice of what is cached.
        ``None`` when the view is from an older generation (the caller computes
        it on its own rows).
        """
        if gen != self.generation:
            return None
        out = self._cover(key, fn, lo, hi)[lo:hi]
        out.flags.writeable = False
        return out

    def _cover(self, key: Any, fn: Callable[[View], np.ndarray], lo: int,
               hi: int) -> np.ndarray:
        """The cached array of ``key``, computed at least over rows ``lo:hi``."""
        got = self._derived.pop(key, None)  # re-inserted below: the dict is in LRU order
        if got is not None and got[0] <= lo and hi <= got[1]:
            self._derived[key] = got
            return got[2]
        ahead = min(self._end, hi + AHEAD)
        if got is None:
            if len(self._derived) >= MAX_DERIVED:
                del self._derived[next(iter(self._derived))]  # the least recently used
            part = np.asarray(fn(self._rows(lo, ahead, with_base=False)))
            arr = np.empty(self._cap, dtype=part.dtype)
            arr[lo:ahead] = part
            a, b = lo, ahead
        else:
            a, b, arr = got
            if lo < a:
                arr[lo:a] = fn(self._rows(lo, a, with_base=False))
                a = lo
            if hi > b:
                arr[b:ahead] = fn(self._rows(b, ahead, with_base=False))
                b = ahead
        self._derived[key] = (a, b, arr)
        return arr


def _empty(width: int) -> View:
    e = np.empty(0, dtype=np.int64)
    return View(e, e, e.astype(np.int8), e.astype(bool), e.astype(np.float64), e,
                e.astype(np.uint64), e.astype(np.uint64), np.empty((0, width), dtype=np.int32))
