"""``stream produce``: load an events file into the input topic.

The file goes through the same contract as ``tapshield analyze`` (rejected rows
are reported, not sent). Each accepted event becomes one JSON message in the
wire contract (every value as text, as a CSV would carry it), keyed by
``user_id``: a user's taps, their retries and failovers stay in one partition
in file order, which the per-user state of the partitioned stage needs. The
event's position in the file rides along in the ``tapshield-seq`` header so
the analysis can order events with equal timestamps exactly as the file
replay does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.errors import ContractError
from tapshield.events.read import EventReader
from tapshield.events.schema import WIRE_NAMES
from tapshield.events.write import fen_to_text
from tapshield.stream.topics import SEQ_HEADER, Topics, topic_extra

DEFAULT_PARTITIONS = 4


@dataclass(slots=True)
class ProduceStats:
    rows: int = 0
    sent: int = 0
    rejected: int = 0
    seconds: float = 0.0
    ends: dict[int, int] = field(default_factory=dict)
    """Per partition: the offset after the last event sent."""


def wire_json(batch: pl.DataFrame) -> list[bytes]:
    """Canonical events as JSON lines of the wire contract, every value as exact text.

    Timestamps carry microseconds in UTC (nothing is rounded on the way), amounts
    are decimal yuan from integer fen; text values parse on the fast path of the
    JSONL reader (no number that JSON would turn into a double).
    """
    cols: list[pl.Expr] = []
    for c in WIRE_NAMES:
        if c == "ts":
            cols.append(pl.col("ts").dt.convert_time_zone("UTC")
                        .dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").alias("ts"))
        elif c == "amount":
            cols.append(fen_to_text("amount_fen").alias("amount"))
        elif c == "latency_ms":
            # Float64 text is Rust's shortest round-trip form: parses back to the same double
            cols.append(pl.col(c).cast(pl.String).alias(c))
        else:
            cols.append(pl.col(c).cast(pl.String).alias(c))
    text = batch.select(cols).write_ndjson()
    return [line.encode() for line in text.splitlines()]


def ensure_topics(brokers: str, topics: Topics, partitions: int,
                  timeout: float = 30.0, *, create_input: bool = True) -> None:
    """Create the four topics (input, canonical, aggregates, dead letters) if missing.

    The canonical topic has as many partitions as the input: a worker writes a
    partition's validated events to the partition of the same number.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    meta = admin.list_topics(timeout=timeout)
    have = set(meta.topics)
    if topics.events in have:  # an existing input topic decides the partition count
        partitions = len(meta.topics[topics.events].partitions) or partitions
    elif not create_input:
        raise ContractError(f"topic {topics.events} not found on {brokers}")
    want = [
        NewTopic(name, num_partitions=n, replication_factor=1, config=topic_extra())
        for name, n in ((topics.events, partitions), (topics.canonical, partitions),
                        (topics.aggregates, 1), (topics.dead_letter, 1))
        if name not in have
    ]
    if not want:
        return
    for name, fut in admin.create_topics(want, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ContractError(f"cannot create topic {name}: {exc}") from exc


def producer_config(brokers: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,  # a retried send is written once
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
    }


def produce_file(
    path: Path | str,
    brokers: str,
    topic: str,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    speed: float = 0.0,
    on_reject: Callable[[pl.DataFrame], None] | None = None,
    chunk_rows: int = 100_000,
    first_seq: int = 0,
    on_sent: Callable[[int, float], None] | None = None,
) -> ProduceStats:
    """Send a file's accepted events; ``speed`` > 0 paces them (event seconds per wall second).

    ``on_sent(last_ts_us, wall)`` is called after every paced step (the latency benchmark
    records when each event time was handed to the broker).
    """
    from confluent_kafka import Producer

    topics = Topics(topic)
    ensure_topics(brokers, topics, partitions)
    producer = Producer(producer_config(brokers))
    reader = EventReader(path, chunk_rows=chunk_rows, on_reject=on_reject)
    stats = ProduceStats()
    t0 = time.perf_counter()
    seq = first_seq
    origin: tuple[int, float] | None = None
    failures: list[str] = []
    ends: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
            return
        p, off = int(msg.partition()), int(msg.offset())
        if off + 1 > ends.get(p, 0):
            ends[p] = off + 1

    for batch in reader:
        steps = _paced(batch, speed) if speed > 0 else [batch]
        for step in steps:
            if speed > 0 and step.height:
                first_us = _us(step, "min")
                if origin is None:
                    origin = (first_us, time.monotonic())
                due = origin[1] + (first_us - origin[0]) / 1e6 / speed
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            lines = wire_json(step)
            keys = step.get_column("user_id").to_list()
            for line, key in zip(lines, keys, strict=True):
                while True:
                    try:
                        producer.produce(topic, value=line, key=key,
                                         headers=[(SEQ_HEADER, str(seq).encode())],
                                         on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                seq += 1
            producer.poll(0)
            stats.sent += step.height
            if speed > 0:
                producer.flush()
                if on_sent is not None and step.height:
                    on_sent(_us(step, "max"), time.time())
    left = producer.flush(60)
    if left or failures:
        raise ContractError(
            f"{left + len(failures)} event(s) not acknowledged by the broker"
            + (f": {failures[0]}" if failures else "")
        )
    # the end-of-input marker: a replay (``stream run`` without --follow) stops once the
    # workers have covered these offsets and the analysis has read what they accepted
    marker = {"end_of_input": {str(p): n for p, n in sorted(ends.items())},
              "source": str(path), "events": stats.sent}
    producer.produce(topics.aggregates, value=json.dumps(marker).encode(), key="end")
    if producer.flush(60):
        raise ContractError("the end-of-input marker was not acknowledged by the broker")
    stats.rows, stats.rejected = reader.stats.rows, reader.stats.rejected
    stats.ends = ends
    stats.seconds = time.perf_counter() - t0
    return stats


def _paced(batch: pl.DataFrame, speed: float, step_s: float = 0.25) -> list[pl.DataFrame]:
    """Cut a batch into slices of ``step_s`` wall seconds at ``speed`` (file order kept)."""
    us = batch["ts"].cast(pl.Int64)
    width = max(1, int(step_s * speed * 1e6))
    first = _us(batch, "min")
    group = ((us - first) // width).cum_max()
    frame = batch.with_columns(group.alias("__g"))
    return [p.drop("__g") for p in frame.partition_by("__g", maintain_order=True)]


def _us(frame: pl.DataFrame, which: str) -> int:
    """The earliest or latest event time of a non-empty frame, in epoch microseconds."""
    value = getattr(frame.get_column("ts").cast(pl.Int64), which)()
    assert isinstance(value, int)
    return value
