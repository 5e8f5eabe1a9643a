"""The global stage: detection, grouping, diagnosis and incidents over all slices.

One consumer reads every partition of ``T.canonical`` (``read_committed``: only
what a worker's transaction committed), puts the partitions back into event
time (:class:`~tapshield.stream.merge.Merger`) and feeds the result to the
same :class:`tapshield.pipeline.Analysis` the file replay uses: the monitor's
sequential tests, the alert lifecycle, the incident book, the recent-events
window and diagnosis. Its input is the compact canonical batches the workers
already validated, so it parses and checks nothing.

It also reads ``T.aggregates`` and checks, at the end of a replay, that the
events it analysed per partition are exactly the events the workers accepted.

Recovery: the stage keeps no offsets of its own. On start it replays
``T.canonical`` from the earliest retained offset, so a restart rebuilds the
same state and the same incidents (the sinks rewrite their files; Alertmanager
deduplicates repeated alerts by their labels). Its consumer group's committed
offsets are progress markers for ``stream status`` only.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import ContractError
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.pipeline import Analysis, AnalysisResult, PipelineConfig, Sink
from tapshield.stream import wire
from tapshield.stream.merge import Merger
from tapshield.stream.topics import ANALYSIS_GROUP, WORKER_GROUP, Topics, consumer_config

CANONICAL = list(CANONICAL_SCHEMA)


@dataclass(slots=True)
class AnalysisSettings:
    brokers: str
    topic: str
    lateness: float = 60.0
    follow: bool = False
    """Keep running (a live stream); otherwise stop once every input event is analysed."""
    idle_seconds: float = 10.0
    """Live mode: a partition silent this long stops holding the watermark."""
    session_timeout_ms: int = 10_000
    worker_group: str | None = None
    wait_seconds: float = 120.0
    """Replay: give up if the input topic does not appear within this time."""

    @property
    def worker_group_id(self) -> str:
        return self.worker_group or f"{WORKER_GROUP}.{self.topic}"


@dataclass(slots=True)
class StreamProgress:
    partitions: int = 0
    events: dict[int, int] = field(default_factory=dict)
    """Canonical rows read per partition."""
    accepted: dict[int, int] = field(default_factory=dict)
    """Rows the workers report accepted per partition (``T.aggregates``)."""
    rejected: int = 0
    covered: dict[int, int] = field(default_factory=dict)
    """Per partition: the input offset up to which the workers have committed outputs."""
    ends: dict[int, int] | None = None
    """The end-of-input marker of ``stream produce`` (offset after each partition's last)."""
    duplicates: int = 0
    interrupted: bool = False
    pending: int = 0
    watermark_us: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "events_by_partition": {str(k): v for k, v in sorted(self.events.items())},
            "accepted_by_workers": sum(self.accepted.values()),
            "rejected_by_workers": self.rejected,
            "duplicates_dropped": self.duplicates,
            "interrupted": self.interrupted,
            "complete": all(self.events.get(p, 0) == self.accepted.get(p, 0)
                            for p in set(self.events) | set(self.accepted)),
        }


class Duplicates:
    """Drops repeated ``event_id`` s in analysis order (the first copy is kept).

    The workers validate without cross-message state; duplicate ids are found here,
    where every partition meets, with the file reader's index (64-bit hashes). A
    stream never ends, so the index is kept per ``horizon`` of event time and the
    oldest is dropped: a repeat is caught if it comes within one to two horizons
    of the first copy (redeliveries and resends come within minutes), and memory
    stays at about 9 bytes per event of two horizons.
    """

    def __init__(self, horizon_us: int = 15 * 60 * 1_000_000) -> None:
        self.horizon_us = horizon_us
        self.indexes: deque[tuple[int, EventIdIndex]] = deque()
        self.dropped = 0

    def _seen(self, ordered: np.ndarray) -> np.ndarray:
        hit = np.zeros(len(ordered), dtype=np.bool_)
        for _, index in self.indexes:
            if index.size:
                hit |= index.seen_sorted(ordered)
        return hit

    def _current(self, newest_us: int) -> EventIdIndex:
        if not self.indexes or newest_us >= self.indexes[-1][0] + self.horizon_us:
            self.indexes.append((newest_us, EventIdIndex()))
            while len(self.indexes) > 2:
                self.indexes.popleft()
        return self.indexes[-1][1]

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        hashes = EventIdIndex.hashes(frame.get_column("event_id"))
        ordered = np.sort(hashes.to_numpy())
        seen = self._seen(ordered)
        repeats = bool(len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any())
        kept = frame
        if repeats or seen.any():
            before = pl.Series(ordered[seen])
            kept = frame.filter(~hashes.is_in(before.implode()) & hashes.is_first_distinct())
            self.dropped += frame.height - kept.height
            ordered = np.sort(EventIdIndex.hashes(kept.get_column("event_id")).to_numpy())
        newest = frame.get_column("ts").cast(pl.Int64).max()
        assert isinstance(newest, int)
        self._current(newest).add_sorted(ordered)
        return kept


@dataclass(slots=True)
class StreamAccounting:
    """Puts the stream's accounting into the summary before the sinks write it."""

    progress: StreamProgress

    def observe(self, batch: pl.DataFrame) -> None:
        return None

    def finish(self, result: AnalysisResult) -> None:
        result.summary["stream"] = self.progress.as_dict()


class StreamAnalysis:
    """Consume ``T.canonical`` into an :class:`Analysis`; :meth:`run` returns its result."""

    def __init__(self, settings: AnalysisSettings, *, changes: pl.DataFrame | None = None,
                 monitor_config: Path | None = None, sinks: Sequence[Sink] = (),
                 on_alerts: Callable[[list[Any]], None] | None = None,
                 progress_file: Path | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic)
        cfg = PipelineConfig(lateness=timedelta(0), monitor_config=monitor_config)
        # the merger waits for late events (per partition); the pipeline's own
        # reorderer then sees ordered input and only counts what still came late
        self.progress = StreamProgress()
        self.analysis = Analysis(cfg, changes=changes, sinks=sinks,
                                 extensions=[StreamAccounting(self.progress)])
        self.lateness_us = int(settings.lateness * 1e6)
        self.on_alerts = on_alerts
        self.progress_file = progress_file
        self.duplicates = Duplicates()
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self) -> AnalysisResult:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        s = self.settings
        consumer = Consumer({
            "bootstrap.servers": s.brokers,
            "group.id": f"{ANALYSIS_GROUP}.{s.topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **consumer_config(s.session_timeout_ms),
        })
        try:
            parts = self._partitions(consumer, self.topics.canonical)
            self.progress.partitions = parts
            merger = Merger(parts, self.lateness_us,
                            s.idle_seconds if s.follow else None)
            tps = [TopicPartition(self.topics.canonical, p, OFFSET_BEGINNING)
                   for p in range(parts)]
            tps.append(TopicPartition(self.topics.aggregates, 0, OFFSET_BEGINNING))
            consumer.assign(tps)
            try:
                self._loop(consumer, merger, parts)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: finish with what was read
                self.progress.interrupted = True
            self._feed(merger.release(final=True))
            self._mark(consumer, merger)
        finally:
            consumer.close()
        return self.analysis.finish()

    def _loop(self, consumer: Any, merger: Merger, parts: int) -> None:
        s = self.settings
        last_release = last_mark = quiet_since = time.monotonic()
        while not self._stop:
            msgs = consumer.consume(500, 0.2)
            for m in msgs:
                if m.error():
                    continue
                if m.topic() == self.topics.canonical:
                    frame = wire.decode(m.value() or b"")
                    p = int(m.partition())
                    merger.add(p, frame)
                    self.progress.events[p] = self.progress.events.get(p, 0) + frame.height
                else:
                    self._aggregate(m.value() or b"")
            now = time.monotonic()
            if merger.pending_rows and (now - last_release > 0.25
                                        or merger.pending_rows > 200_000):
                self._feed(merger.release())
                last_release = now
            if now - last_mark > 2.0:
                self._mark(consumer, merger)
                last_mark = now
            if msgs or s.follow:
                quiet_since = now
                continue
            if now - quiet_since >= 0.4 and self._caught_up(consumer, parts,
                                                            now - quiet_since):
                break

    # -- internals ---------------------------------------------------------------

    def _feed(self, frame: pl.DataFrame | None) -> None:
        if frame is None or frame.height == 0:
            return
        frame = self.duplicates(frame)
        self.progress.duplicates = self.duplicates.dropped
        changes = self.analysis.feed(frame.select(CANONICAL))
        if changes and self.on_alerts is not None:
            self.on_alerts(changes)

    def _aggregate(self, data: bytes) -> None:
        try:
            rec = json.loads(data)
            if "end_of_input" in rec:
                ends = {int(k): int(v) for k, v in rec["end_of_input"].items()}
                prev = self.progress.ends or {}
                self.progress.ends = {p: max(ends.get(p, 0), prev.get(p, 0))
                                      for p in set(ends) | set(prev)}
                return
            p = int(rec["partition"])
            if rec.get("last_offset") is not None:
                self.progress.covered[p] = max(self.progress.covered.get(p, 0),
                                               int(rec["last_offset"]) + 1)
            self.progress.accepted[p] = self.progress.accepted.get(p, 0) + int(rec["accepted"])
            self.progress.rejected += int(rec["rejected"])
        except (ValueError, KeyError, TypeError):
            return

    def _partitions(self, consumer: Any, topic: str) -> int:
        deadline = time.monotonic() + self.settings.wait_seconds
        while True:
            meta = consumer.list_topics(topic, timeout=10)
            info = meta.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                return len(info.partitions)
            if time.monotonic() > deadline or self._stop:
                raise ContractError(f"topic {topic} not found on {self.settings.brokers}: "
                                    "produce events first (tapshield stream produce)")
            time.sleep(0.5)

    def _caught_up(self, consumer: Any, parts: int, quiet: float) -> bool:
        """Replay: every input event was committed by a worker and every output read.

        With the loader's end-of-input marker this is exact: the workers' aggregates
        cover every partition to its end, and the canonical rows read per partition
        equal the rows they accepted (both written in the same transactions). Without
        one (events loaded by another producer) it falls back to the broker's lag
        figures and read positions, once something was read and the input has been
        quiet for ``idle_seconds``: a broker that under-reports its log end (Tansu
        does) could otherwise end a replay early.
        """
        from confluent_kafka import TopicPartition

        pr = self.progress
        if pr.ends is not None:
            return all(pr.covered.get(p, 0) >= end for p, end in pr.ends.items()) and all(
                pr.events.get(p, 0) == pr.accepted.get(p, 0) for p in range(parts))
        if not self.progress.events or quiet < self.settings.idle_seconds:
            return False
        lag = input_lag(self.settings.brokers, self.topics.events,
                        self.settings.worker_group_id, parts)
        if lag is None or sum(lag.values()) > 0:
            return False
        tps = [TopicPartition(self.topics.canonical, p) for p in range(parts)]
        for tp, pos in zip(tps, consumer.position(tps), strict=True):
            _, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if high > 0 and pos.offset < high:
                return False
        return True

    def _mark(self, consumer: Any, merger: Merger) -> None:
        """Progress for operators: committed offsets (``stream status``) and a JSON file."""
        self.progress.pending = merger.pending_rows
        self.progress.watermark_us = merger.watermark_us
        try:
            assigned = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
            if assigned:
                consumer.commit(offsets=assigned, asynchronous=True)
        except Exception:  # progress markers only: never stop the analysis for them
            pass
        if self.progress_file is not None:
            a = self.analysis
            doc = {**self.progress.as_dict(), "analysed": a.events_seen,
                   "pending": merger.pending_rows, "watermark_us": merger.watermark_us,
                   "incidents": len(a.book.incidents()), "at": time.time()}
            tmp = self.progress_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
            tmp.replace(self.progress_file)


def input_lag(brokers: str, topic: str, group: str, parts: int) -> dict[int, int] | None:
    """Messages of ``topic`` not yet committed by ``group``, per partition (None: unknown)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": brokers, "group.id": group,
                      "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(parts)]
        committed = probe.committed(tps, timeout=10)
        out: dict[int, int] = {}
        for tp in committed:
            _, high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                  timeout=10, cached=False)
            done = tp.offset if tp.offset >= 0 else 0
            out[tp.partition] = max(0, high - done)
        return out
    except Exception:
        return None
    finally:
        probe.close()
