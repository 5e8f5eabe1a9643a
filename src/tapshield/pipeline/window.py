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

import polars as pl

from tapshield.events.schema import empty_events
from tapshield.timeutil import epoch_us, from_epoch_us


class EventWindow:
    def __init__(self, retention: timedelta) -> None:
        self.retention_us = int(retention.total_seconds() * 1_000_000)
        self._frames: deque[tuple[int, int, pl.DataFrame]] = deque()  # (min_us, max_us, frame)
        self.rows = 0
        self._evicted_us: int | None = None  # newest event time evicted so far

    def add(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        us = batch["ts"].cast(pl.Int64)
        lo, hi = us.min(), us.max()
        assert isinstance(lo, int) and isinstance(hi, int)
        self._frames.append((lo, hi, batch))
        self.rows += batch.height
        # Batches arrive in event-time order (after the Reorderer), so ``lo`` is
        # the earliest time anyone can still ask about.
        horizon = lo - self.retention_us
        while self._frames and self._frames[0][1] < horizon:
            _, gone_hi, gone = self._frames.popleft()
            self.rows -= gone.height
            self._evicted_us = max(gone_hi, self._evicted_us or gone_hi)

    def holds_since(self, start: datetime) -> bool:
        """Is every event seen with ``ts >= start`` still here (nothing of it evicted)?"""
        return self._evicted_us is None or self._evicted_us < epoch_us(start)

    @property
    def earliest(self) -> datetime | None:
        if not self._frames:
            return None
        return from_epoch_us(min(f[0] for f in self._frames))

    def since(self, start: datetime, until: datetime | None = None) -> pl.DataFrame:
        """Retained events with ``start <= ts`` (and ``ts <= until``), time-ordered."""
        cut = epoch_us(start)
        end = epoch_us(until) if until is not None else None
        parts = [f for lo, hi, f in self._frames if hi >= cut and (end is None or lo <= end)]
        if not parts:
            return empty_events()
        frame = pl.concat(parts, rechunk=False)
        ts = pl.col("ts").cast(pl.Int64)
        keep = ts >= cut if end is None else ts.is_between(cut, end)
        return frame.filter(keep).sort("ts", maintain_order=True)
