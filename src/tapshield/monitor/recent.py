"""The last few minutes of events, kept as compact arrays for alert decisions.

Two questions need individual recent events rather than counters: *is this
firing slice explained by an alert already open* (test it with that alert's
events taken out) and *how bad is the wave* (excess failed taps and their
amount over the last minute). A few columns per event (membership indices,
outcome class, latency, amount, payment and device hashes) for ``retention`` of event time
answer both, at a few tens of bytes per event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


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

    @property
    def size(self) -> int:
        return int(self.ts.shape[0])


class RecentEvents:
    def __init__(self, retention_us: int, max_events: int) -> None:
        self.retention_us = retention_us
        self.max_events = max_events
        self._chunks: deque[Chunk] = deque()
        self._size = 0

    def add(self, chunk: Chunk) -> None:
        if chunk.ts.shape[0] == 0:
            return
        self._chunks.append(chunk)
        self._size += chunk.ts.shape[0]
        newest = int(chunk.ts[-1])
        while self._chunks and (
            int(self._chunks[0].ts[-1]) < newest - self.retention_us
            or self._size - self._chunks[0].ts.shape[0] >= self.max_events
        ):
            if len(self._chunks) == 1:
                break
            old = self._chunks.popleft()
            self._size -= old.ts.shape[0]

    @property
    def earliest_ts(self) -> int | None:
        return int(self._chunks[0].ts[0]) if self._chunks else None

    def view(self, since_us: int, upto_seq: int) -> View:
        """Events with ``ts >= since_us`` and sequence number ``<= upto_seq``."""
        picked: list[Chunk] = []
        for c in reversed(self._chunks):
            if c.seq0 > upto_seq:
                continue
            if int(c.ts[-1]) < since_us:
                break
            picked.append(c)
        if not picked:
            return _empty(self._width())
        picked.reverse()
        seq = np.concatenate([c.seq0 + np.arange(c.ts.shape[0], dtype=np.int64)
                              for c in picked])
        ts = np.concatenate([c.ts for c in picked])
        lo = int(np.searchsorted(ts, since_us, side="left"))
        hi = int(np.searchsorted(seq, upto_seq, side="right"))
        hi = max(hi, lo)
        cut = slice(lo, hi)
        return View(
            seq[cut], ts[cut],
            np.concatenate([c.cls for c in picked])[cut],
            np.concatenate([c.dup for c in picked])[cut],
            np.concatenate([c.lat for c in picked])[cut],
            np.concatenate([c.amt for c in picked])[cut],
            np.concatenate([c.pay for c in picked])[cut],
            np.concatenate([c.dev for c in picked])[cut],
            np.concatenate([c.member for c in picked])[cut],
        )

    def _width(self) -> int:
        return int(self._chunks[0].member.shape[1]) if self._chunks else 1


def _empty(width: int) -> View:
    e = np.empty(0, dtype=np.int64)
    return View(e, e, e.astype(np.int8), e.astype(bool), e.astype(np.float64), e,
                e.astype(np.uint64), e.astype(np.uint64), np.empty((0, width), dtype=np.int32))
