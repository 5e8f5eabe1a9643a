"""The partitioned stage: one Quix Streams application, as many replicas as partitions.

Every replica joins the consumer group ``tapshield-workers.<topic>`` on the input
topic; Kafka hands each one a share of the partitions and moves them when a
replica comes or goes. Per partition, at every checkpoint (``commit_interval``),
the messages since the last one go through the events contract in one
vectorised call (:func:`tapshield.events.read.validate_json_records`, the JSONL
reader's code) and three things are produced:

* the accepted events, as Arrow micro-batches, to ``T.canonical`` (same
  partition number), with their file position and input offset;
* the partition's bucket counts per (channel, region) and its progress to
  ``T.aggregates``;
* every refused message, byte for byte, to ``T.dead-letter`` with its reason.

The outputs are written by the application's own producer inside the Kafka
transaction that also commits the input offsets (Quix's exactly-once
checkpoint flushes sinks before it commits): a replica killed at any instant
leaves either all of a checkpoint's effects or none, and its successor
reprocesses exactly the uncommitted messages. Readers use ``read_committed``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from tapshield.events.read import validate_json_records
from tapshield.stream import wire
from tapshield.stream.topics import (
    REASON_HEADER,
    SEQ_HEADER,
    WORKER_GROUP,
    Topics,
    consumer_config,
    topic_extra,
)

log = logging.getLogger(__name__)
BUCKET_US = 10_000_000
"""Aggregates use the monitor's default bucket (10 s)."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    brokers: str
    topic: str
    commit_interval: float = 1.0
    """Seconds per checkpoint: the batch each validation call sees, and the delay
    before a partition's events are visible downstream."""
    session_timeout_ms: int = 10_000
    group: str | None = None

    @property
    def group_id(self) -> str:
        return self.group or f"{WORKER_GROUP}.{self.topic}"


def _header(headers: Any, name: str) -> bytes | None:
    for k, v in headers or ():
        if k == name:
            return v if isinstance(v, bytes) else str(v).encode()
    return None


def process_partition(
    topics: Topics,
    partition: int,
    offsets: list[int],
    values: list[bytes | None],
    keys: list[Any],
    headers: list[Any],
    produce: Callable[..., None],
) -> dict[str, int]:
    """Validate one partition's messages and produce the three outputs; returns counts.

    Pure apart from ``produce``: the unit tests drive it with a list, the worker
    with the transactional producer.
    """
    records = [v if isinstance(v, bytes) else b"" for v in values]
    result = validate_json_records(records, offsets)
    rejected = result.rejects
    bad = set(rejected.get_column("row").to_list()) if rejected.height else set()
    seqs: list[int | None] = []
    kept: list[int] = []
    for off, hdr in zip(offsets, headers, strict=True):
        if off in bad:
            continue
        kept.append(off)
        raw = _header(hdr, SEQ_HEADER)
        seqs.append(int(raw) if raw is not None and raw.isdigit() else None)
    valid = result.valid
    if valid.height != len(kept):  # the contract's code changed its row accounting
        raise RuntimeError(f"validation kept {valid.height} rows of {len(kept)} expected")
    valid = valid.with_columns(
        pl.Series(wire.SEQ, seqs, dtype=pl.Int64),
        pl.lit(partition, dtype=pl.Int32).alias(wire.PART),
        pl.Series(wire.OFFSET, kept, dtype=pl.Int64),
    )
    for piece in wire.chunks(valid):
        produce(topics.canonical, value=wire.encode(piece), key=f"p{partition}",
                partition=partition)
    if rejected.height:
        by_offset = dict(zip(offsets, zip(values, keys, strict=True), strict=True))
        for row, reason in rejected.select("row", "errors").iter_rows():
            value, key = by_offset[row]
            produce(topics.dead_letter, value=value, key=key, headers=[
                (REASON_HEADER, str(reason).encode()),
                ("tapshield-source", f"{topics.events}/{partition}/{row}".encode()),
            ])
    for record in aggregate(valid, partition, offsets, len(bad)):
        produce(topics.aggregates, value=json.dumps(record).encode(), key=f"p{partition}")
    return {"events": len(offsets), "accepted": valid.height, "rejected": len(bad)}


AGGREGATE_ROWS = 2000
"""Bucket rows per aggregates message (about 200 kB of JSON)."""


def aggregate(valid: pl.DataFrame, partition: int, offsets: list[int],
              rejected: int) -> list[dict[str, Any]]:
    """A checkpoint's bucket counts per (channel, region) and the partition's progress.

    The progress figures ride on the first record; a checkpoint that covered a long
    stretch of event time continues its buckets in further records.
    """
    us = pl.col("ts").cast(pl.Int64)
    buckets = (
        valid.group_by((us // BUCKET_US * BUCKET_US).alias("bucket_us"), "channel", "region")
        .agg(
            pl.len().alias("attempts"),
            (pl.col("outcome") == "approved").sum().alias("approved"),
            (pl.col("outcome") == "declined").sum().alias("declined"),
            (pl.col("outcome") == "failed").sum().alias("failed"),
            (pl.col("outcome") == "timeout").sum().alias("timeout"),
            pl.col("amount_fen").sum().alias("amount_fen"),
        )
        .sort("bucket_us", "channel", "region")
    )
    newest = valid.select(us.max()).item() if valid.height else None
    rows = buckets.to_dicts()
    out: list[dict[str, Any]] = []
    for i in range(0, max(1, len(rows)), AGGREGATE_ROWS):
        first = i == 0
        out.append({
            "partition": partition,
            "first_offset": min(offsets) if offsets and first else None,
            "last_offset": max(offsets) if offsets and first else None,
            "messages": len(offsets) if first else 0,
            "accepted": valid.height if first else 0,
            "rejected": rejected if first else 0,
            "newest_event_us": newest,
            "buckets": rows[i:i + AGGREGATE_ROWS],
        })
    return out


def build_app(settings: WorkerSettings, state_dir: str | None = None) -> Any:
    """The Quix application of one replica (call ``.run()`` on it)."""
    from quixstreams import Application
    from quixstreams.models import TopicConfig
    from quixstreams.sinks import BatchingSink, SinkBatch

    topics = Topics(settings.topic)
    app = Application(
        broker_address=settings.brokers,
        consumer_group=settings.group_id,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        commit_interval=settings.commit_interval,
        consumer_extra_config=consumer_config(settings.session_timeout_ms),
        producer_extra_config={"linger.ms": 20, "transaction.timeout.ms": 60_000},
        state_dir=state_dir or tempfile.mkdtemp(prefix="tapshield-worker-"),
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )
    source = app.topic(settings.topic, value_deserializer="bytes", key_deserializer="bytes",
                       config=TopicConfig(num_partitions=None, replication_factor=None,
                                          extra_config=topic_extra()))
    # the checkpoint's own producer: what the sink produces is inside its transaction
    producer = app._producer

    class Stage(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            items = list(batch)
            process_partition(
                topics, batch.partition,
                [i.offset for i in items], [i.value for i in items],
                [i.key for i in items], [i.headers for i in items],
                producer.produce,
            )

    app.dataframe(source).sink(Stage())
    return app


def run_worker(settings: WorkerSettings) -> None:
    """Run one replica until SIGTERM/SIGINT (Quix commits a last checkpoint then).

    The derived topics are created first if missing (as many canonical partitions
    as the input has), so workers can be pointed at an existing payments topic.
    """
    from tapshield.stream.produce import ensure_topics

    ensure_topics(settings.brokers, Topics(settings.topic), partitions=1, create_input=False)
    build_app(settings).run()
