"""Event-time order from arrival order, as a live system sees it.

Events arrive out of order (mobile clients buffer, gateways batch, files are
concatenated). The reorderer holds events until the *watermark* (the newest
event time seen, minus the allowed lateness) passes them, then releases them
sorted. An event older than what was already released is *late*: it is still
passed on (nothing accepted is dropped) and counted, so the summary says how
much arrived too late to be ordered.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from tapshield.events.schema import empty_events


class Reorderer:
    def __init__(self, lateness: timedelta) -> None:
        self.lateness_us = int(lateness.total_seconds() * 1_000_000)
        self._pending = empty_events()
        self._released_max: int | None = None
        self.late_events = 0

    def push(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Add a batch; return the events the watermark has passed, time-ordered."""
        if batch.height == 0:
            return batch
        pending = pl.concat([self._pending, batch]) if self._pending.height else batch
        ts_us = pl.col("ts").cast(pl.Int64)
        newest = pending.select(ts_us.max()).item()
        watermark = int(newest) - self.lateness_us
        ready = pending.filter(ts_us <= watermark)
        self._pending = pending.filter(ts_us > watermark)
        return self._release(ready)

    @property
    def held(self) -> int:
        """Events waiting for the watermark."""
        return self._pending.height

    def release_until(self, watermark_us: int) -> pl.DataFrame:
        """Live feeds: release what is at or before ``watermark_us`` (the wall clock
        minus the lateness) even when no newer event came to push it out."""
        if self._pending.height == 0:
            return self._pending
        ts_us = pl.col("ts").cast(pl.Int64)
        ready = self._pending.filter(ts_us <= watermark_us)
        self._pending = self._pending.filter(ts_us > watermark_us)
        return self._release(ready)

    def flush(self) -> pl.DataFrame:
        """End of stream: release everything held."""
        ready, self._pending = self._pending, empty_events()
        return self._release(ready)

    def _release(self, ready: pl.DataFrame) -> pl.DataFrame:
        if ready.height == 0:
            return ready
        ready = ready.sort("ts", maintain_order=True)
        if self._released_max is not None:
            self.late_events += int((ready["ts"].cast(pl.Int64) < self._released_max).sum())
        top = ready["ts"].cast(pl.Int64).max()
        if isinstance(top, int):
            self._released_max = top if self._released_max is None else max(
                self._released_max, top
            )
        return ready
