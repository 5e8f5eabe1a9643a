"""Event-time order across partitions, as the file replay sees it.

Every partition of ``T.canonical`` is in its own input order; the analysis
needs one stream in event time. The merger keeps each partition's pending
events and releases, sorted by ``(ts, file position, partition, offset)``,
those older than the *watermark*: the oldest of the partitions' newest event
times, minus the allowed lateness. A slow or restarting worker therefore
holds the others back instead of making its events late (as Flink's
per-partition watermarks do). A partition that has been idle for
``idle_seconds`` with nothing pending stops holding the watermark (a live
stream where one partition falls silent); a replay passes ``None`` and waits.

With the file's own order the release is exactly the file replay's: a stable
sort by time of the events in file order (equal times keep file order through
the ``tapshield-seq`` position), as long as no event is more than the
lateness out of order. An event that arrives after its time was released is
still passed on (nothing accepted is dropped) and is counted late downstream.
"""

from __future__ import annotations

import time

import polars as pl

from tapshield.stream.wire import OFFSET, PART, SEQ

ORDER = ["ts", SEQ, PART, OFFSET]


class Merger:
    def __init__(self, partitions: int, lateness_us: int,
                 idle_seconds: float | None = None) -> None:
        self.partitions = partitions
        self.lateness_us = lateness_us
        self.idle_seconds = idle_seconds
        self._pending: dict[int, list[pl.DataFrame]] = {p: [] for p in range(partitions)}
        self._newest: dict[int, int | None] = dict.fromkeys(range(partitions))
        self._seen_at: dict[int, float] = dict.fromkeys(range(partitions), time.monotonic())
        self.pending_rows = 0
        self.watermark_us: int | None = None

    def add(self, partition: int, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self._pending[partition].append(frame)
        self.pending_rows += frame.height
        top = frame.get_column("ts").cast(pl.Int64).max()
        assert isinstance(top, int)
        old = self._newest[partition]
        self._newest[partition] = top if old is None else max(old, top)
        self._seen_at[partition] = time.monotonic()

    def release(self, *, final: bool = False) -> pl.DataFrame | None:
        """The events the watermark has passed (everything with ``final``), ordered."""
        if self.pending_rows == 0:
            return None
        if final:
            cut: int | None = None
        else:
            now = time.monotonic()
            holding: list[int] = []
            for p in range(self.partitions):
                idle = (self.idle_seconds is not None and not self._pending[p]
                        and now - self._seen_at[p] > self.idle_seconds)
                if idle:
                    continue
                newest = self._newest[p]
                if newest is None:
                    return None  # a partition not heard from yet may hold the oldest events
                holding.append(newest)
            if not holding:
                return None
            cut = min(holding) - self.lateness_us
            if self.watermark_us is not None and cut <= self.watermark_us:
                return None
            self.watermark_us = cut
        ready: list[pl.DataFrame] = []
        for p, frames in self._pending.items():
            if not frames:
                continue
            whole = pl.concat(frames, rechunk=False) if len(frames) > 1 else frames[0]
            if cut is None:
                ready.append(whole)
                self._pending[p] = []
                continue
            ts = pl.col("ts").cast(pl.Int64)
            now_ready = whole.filter(ts <= cut)
            if now_ready.height:
                ready.append(now_ready)
                rest = whole.filter(ts > cut)
                self._pending[p] = [rest] if rest.height else []
            elif len(frames) > 1:
                self._pending[p] = [whole]
        if not ready:
            return None
        out = pl.concat(ready, rechunk=False).sort(ORDER, nulls_last=True)
        self.pending_rows -= out.height
        return out
