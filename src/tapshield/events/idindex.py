"""Which event ids have been accepted already: exact-enough, small, fast.

A replay of a 10-million-event file must reject a repeated ``event_id``
wherever the repeat is, so the index spans the whole stream. It keeps 64-bit
hashes of accepted ids in a few sorted runs merged like a binary counter
(log-structured): 8 bytes per event, each batch looked up with a galloping
merge-join (cost ``O(k log(n / k))`` for ``k`` queries against ``n`` entries)
and merged in linear time. In front of the runs sits a bitmap of the hashes'
top bits (8 bits per accepted event, so at most one query in eight gets
past it): a batch's sorted hashes test it front to back, and only those whose
bit is set are looked up in the runs, which for a file without repeats is
almost none. Two different ids collide with probability about ``n^2 / 2^65``
(3e-6 for a 10-million-event file); a collision rejects a row as a duplicate
*visibly*, never drops it silently.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit


@njit(cache=True, nogil=True)
def _member(run: np.ndarray, queries: np.ndarray, hit: np.ndarray) -> None:
    """``hit[i] |= queries[i] in run``; both sorted ascending."""
    n = len(run)
    j = 0
    for i in range(len(queries)):
        q = queries[i]
        # gallop forward from j to bracket q, then binary-search the bracket
        step = 1
        hi = j
        while hi < n and run[hi] < q:
            j = hi + 1
            hi = j + step
            step *= 2
        lo = j
        hi = min(hi, n)
        while lo < hi:
            mid = (lo + hi) // 2
            if run[mid] < q:
                lo = mid + 1
            else:
                hi = mid
        j = lo
        if j < n and run[j] == q:
            hit[i] = True


@njit(cache=True, nogil=True)
def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a) + len(b), dtype=a.dtype)
    i = j = k = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out[k] = a[i]
            i += 1
        else:
            out[k] = b[j]
            j += 1
        k += 1
    while i < len(a):
        out[k] = a[i]
        i += 1
        k += 1
    while j < len(b):
        out[k] = b[j]
        j += 1
        k += 1
    return out


@njit(cache=True, nogil=True)
def _test_bits(words: np.ndarray, shift: int, keys: np.ndarray, hit: np.ndarray) -> None:
    """``hit[i] = bit (keys[i] >> shift) is set``."""
    for i in range(len(keys)):
        b = np.int64(keys[i] >> np.uint64(shift))
        hit[i] = (words[b >> 6] >> np.uint64(b & 63)) & np.uint64(1) != 0


@njit(cache=True, nogil=True)
def _set_bits(words: np.ndarray, shift: int, keys: np.ndarray) -> None:
    for i in range(len(keys)):
        b = np.int64(keys[i] >> np.uint64(shift))
        words[b >> 6] |= np.uint64(1) << np.uint64(b & 63)


class EventIdIndex:
    SEED = 0x7A95_11E1
    _MIN_BITS = 16
    _BITS_PER_EVENT = 8

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self.size = 0
        self._bits = self._MIN_BITS
        self._words = np.zeros((1 << self._bits) // 64, dtype=np.uint64)

    @classmethod
    def hashes(cls, ids: pl.Series) -> pl.Series:
        return ids.hash(seed=cls.SEED)

    def seen_sorted(self, queries: np.ndarray) -> np.ndarray:
        """For sorted hashes: which were added before (mask in the same sorted order)."""
        queries = np.asarray(queries, dtype=np.uint64)
        hit = np.zeros(len(queries), dtype=np.bool_)
        if not self.size or not len(queries):
            return hit
        maybe = np.zeros(len(queries), dtype=np.bool_)
        _test_bits(self._words, 64 - self._bits, queries, maybe)
        candidates = np.flatnonzero(maybe)
        if not len(candidates):
            return hit
        asked = queries[candidates]
        found = np.zeros(len(asked), dtype=np.bool_)
        for run in self._runs:
            _member(run, asked, found)
        hit[candidates[found]] = True
        return hit

    def add_sorted(self, run: np.ndarray) -> None:
        """Add sorted hashes that are new (callers pass only rows they accepted)."""
        if not len(run):
            return
        run = np.asarray(run, dtype=np.uint64)
        self.size += len(run)
        if self.size * self._BITS_PER_EVENT > (1 << self._bits):
            self._grow_bits()
        _set_bits(self._words, 64 - self._bits, run)
        while self._runs and len(self._runs[-1]) <= 2 * len(run):
            run = _merge(self._runs.pop(), run)
        self._runs.append(run)

    def _grow_bits(self) -> None:
        """A larger bitmap, filled from the runs (amortised: it grows geometrically)."""
        while self.size * self._BITS_PER_EVENT > (1 << self._bits):
            self._bits += 1
        self._words = np.zeros((1 << self._bits) // 64, dtype=np.uint64)
        for run in self._runs:
            _set_bits(self._words, 64 - self._bits, run)
