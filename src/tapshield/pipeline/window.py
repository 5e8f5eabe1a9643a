"""The recent past, kept in memory for diagnosis and incident measurement.

Diagnosis compares the wave with its recent normal past, so the pipeline keeps
the last ``retention`` of event time (a list of micro-batches, evicted whole
once entirely older than the horizon): memory is bounded by traffic x
retention plus one batch, whatever the length of the replay.

The horizon is measured back from the *oldest* event of the newest batch, not
its newest: the alerts raised while that batch is processed carry event times
from anywhere inside it, and each needs the ``retention`` before it. A replay
of a quiet file in 500,000-row chunks hands over batches that span hours; a
horizon measured from their end would evict the very baseline a diagnosis of
an alert at the batch's start compares against.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import polars as pl

from tapshield.events.schema import empty_events
from tapshield.timeutil import epoch_us, from_epoch_us


class _Batch(NamedTuple):
    lo: int
    """Oldest event time (epoch us)."""
    hi: int
    """Newest event time (epoch us)."""
    frame: pl.DataFrame
    ts: np.ndarray
    """The batch's event times (epoch us), for binary search."""
    ordered: bool
    """Are the rows in event-time order (the Reorderer releases them so)?"""


class EventWindow:
    def __init__(self, retention: timedelta) -> None:
        self.retention_us = int(retention.total_seconds() * 1_000_000)
        self._frames: deque[_Batch] = deque()
        self.rows = 0
        self._evicted_us: int | None = None  # newest event time evicted so far

    def add(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        ts = batch["ts"].cast(pl.Int64).to_numpy()
        lo, hi = int(ts.min()), int(ts.max())
        ordered = bool(ts.size < 2 or (ts[1:] >= ts[:-1]).all())
        self._frames.append(_Batch(lo, hi, batch, ts, ordered))
        self.rows += batch.height
        # Batches arrive in event-time order (after the Reorderer), so ``lo`` is
        # the earliest time anyone can still ask about.
        horizon = lo - self.retention_us
        while self._frames and self._frames[0].hi < horizon:
            gone = self._frames.popleft()
            self.rows -= gone.frame.height
            self._evicted_us = max(gone.hi, self._evicted_us or gone.hi)

    def holds_since(self, start: datetime) -> bool:
        """Is every event seen with ``ts >= start`` still here (nothing of it evicted)?"""
        return self._evicted_us is None or self._evicted_us < epoch_us(start)

    @property
    def earliest(self) -> datetime | None:
        if not self._frames:
            return None
        return from_epoch_us(min(f.lo for f in self._frames))

    def since(self, start: datetime, until: datetime | None = None) -> pl.DataFrame:
        """Retained events with ``start <= ts`` (and ``ts <= until``), time-ordered.

        Diagnosis and incident measurement ask this for every incident, of a
        window holding whole replay chunks (500,000 rows): when the batches
        asked about are each in event-time order and follow one another
        (always, unless late events arrived), the answer is a slice of each,
        found by binary search, instead of a filter and a sort of all their
        rows. The rows are the same, in the same order (the stable sort of
        ordered, consecutive batches keeps them where they are); otherwise the
        filter and the sort run as before.
        """
        cut = epoch_us(start)
        end = epoch_us(until) if until is not None else None
        batches = [b for b in self._frames if b.hi >= cut and (end is None or b.lo <= end)]
        if not batches:
            return empty_events()
        if all(b.ordered for b in batches) and all(
                later.lo >= earlier.hi for earlier, later in pairwise(batches)):
            slices = []
            for b in batches:
                a = int(np.searchsorted(b.ts, cut, side="left"))
                z = b.ts.size if end is None else int(np.searchsorted(b.ts, end, side="right"))
                if z > a:
                    slices.append(b.frame.slice(a, z - a))
            if not slices:
                return batches[0].frame.clear()
            return slices[0] if len(slices) == 1 else pl.concat(slices, rechunk=False)
        return self._filtered([b.frame for b in batches], cut, end)

    @staticmethod
    def _filtered(parts: list[pl.DataFrame], cut: int, end: int | None) -> pl.DataFrame:
        """:meth:`since` the long way: filter every row, then a stable sort by time."""
        frame = pl.concat(parts, rechunk=False)
        ts = pl.col("ts").cast(pl.Int64)
        keep = ts >= cut if end is None else ts.is_between(cut, end)
        return frame.filter(keep).sort("ts", maintain_order=True)
