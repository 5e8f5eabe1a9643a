"""The stream pieces that need no broker: event-time merge, the partition stage, wire."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from tapshield.pipeline.ordering import Reorderer
from tapshield.stream import wire
from tapshield.stream.analysis import Duplicates
from tapshield.stream.merge import Merger
from tapshield.stream.produce import wire_json
from tapshield.stream.topics import REASON_HEADER, SEQ_HEADER, Topics
from tapshield.stream.worker import process_partition
from tests.stream.synth import outage_events

LATENESS_US = 60_000_000


def _partitioned(frame: pl.DataFrame, parts: int) -> list[pl.DataFrame]:
    """The file split by user as ``stream produce`` keys it, with the stream columns."""
    f = frame.with_row_index(wire.SEQ).with_columns(
        pl.col(wire.SEQ).cast(pl.Int64),
        (pl.col("user_id").hash(3) % parts).cast(pl.Int32).alias(wire.PART),
    )
    out = []
    for p in range(parts):
        part = f.filter(pl.col(wire.PART) == p).with_row_index(wire.OFFSET)
        out.append(part.with_columns(pl.col(wire.OFFSET).cast(pl.Int64)))
    return out


def test_merged_partitions_come_out_in_the_file_replays_order() -> None:
    frame = outage_events(minutes=20, rate=4.0)
    expected = Reorderer(timedelta(seconds=60))
    want = pl.concat([expected.push(frame), expected.flush()]).get_column("event_id")
    parts = _partitioned(frame, 3)
    merger = Merger(3, LATENESS_US)
    rng = np.random.default_rng(1)
    cursors = [0, 0, 0]
    got: list[pl.DataFrame] = []
    while any(c < parts[p].height for p, c in enumerate(cursors)):
        p = int(rng.integers(0, 3))  # partitions arrive at uneven speeds
        n = int(rng.integers(1, 700))
        merger.add(p, parts[p].slice(cursors[p], n))
        cursors[p] += n
        out = merger.release()
        if out is not None:
            got.append(out)
    last = merger.release(final=True)
    if last is not None:
        got.append(last)
    merged = pl.concat(got)
    assert merged.get_column("event_id").equals(want)
    assert merger.pending_rows == 0


def test_a_silent_partition_holds_the_watermark_until_it_is_idle() -> None:
    parts = _partitioned(outage_events(minutes=10, rate=2.0), 2)
    held = Merger(2, LATENESS_US)
    held.add(0, parts[0])
    assert held.release() is None  # partition 1 may still hold the oldest events
    live = Merger(2, LATENESS_US, idle_seconds=0.0)
    live.add(0, parts[0])
    out = live.release()
    assert out is not None and 0 < out.height < parts[0].height


def test_duplicate_ids_are_dropped_where_the_partitions_meet() -> None:
    frame = outage_events(minutes=5, rate=2.0)
    dup = Duplicates()
    first = dup(frame.head(100))
    again = dup(pl.concat([frame.slice(50, 100), frame.slice(150, 10), frame.slice(150, 10)]))
    assert first.height == 100
    assert again.get_column("event_id").to_list() == frame.slice(100, 60)[
        "event_id"].to_list()
    assert dup.dropped == 60


def test_the_duplicate_index_forgets_ids_older_than_two_horizons() -> None:
    frame = outage_events(minutes=30, rate=1.0)  # about 1,800 events over 30 minutes
    dup = Duplicates(horizon_us=5 * 60 * 1_000_000)
    for lo in range(0, frame.height, 100):
        dup(frame.slice(lo, 100))
    assert len(dup.indexes) == 2
    late_copy = dup(frame.head(10))  # a resend after 30 minutes is not recognised
    assert late_copy.height == 10
    recent = dup(frame.tail(10))
    assert recent.height == 0 and dup.dropped == 10


def test_the_partition_stage_validates_and_routes_every_message() -> None:
    frame = outage_events(minutes=2, rate=2.0)
    lines = wire_json(frame)
    bad = [b"{not json", b'{"event_id": "z", "ts": "yesterday"}']
    values: list[bytes | None] = [*lines[:5], bad[0], *lines[5:10], bad[1], None]
    offsets = list(range(100, 100 + len(values)))
    headers: list[Any] = [[(SEQ_HEADER, str(i).encode())] for i in range(len(values))]
    sent: list[dict[str, Any]] = []
    topics = Topics("t")
    counts = process_partition(topics, 2, offsets, values, [b"k"] * len(values), headers,
                               lambda topic, **kw: sent.append({"topic": topic, **kw}))
    assert counts == {"events": 13, "accepted": 10, "rejected": 3}
    canon = [m for m in sent if m["topic"] == "t.canonical"]
    got = pl.concat([wire.decode(m["value"]) for m in canon])
    assert got.get_column("event_id").to_list() == frame.head(10)["event_id"].to_list()
    assert got.get_column(wire.OFFSET).to_list() == [*offsets[:5], *offsets[6:11]]
    assert got.get_column(wire.SEQ).to_list() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert all(m["partition"] == 2 for m in canon)
    original = frame.head(10).select(got.columns[:-3])
    assert got.select(original.columns).equals(original)
    dead = [m for m in sent if m["topic"] == "t.dead-letter"]
    assert [m["value"] for m in dead] == [bad[0], bad[1], None]
    reasons = [dict(m["headers"])[REASON_HEADER].decode() for m in dead]
    assert reasons[0] == "*: json_syntax" and "ts" in reasons[1]
    agg = [json.loads(m["value"]) for m in sent if m["topic"] == "t.aggregates"]
    assert agg[0]["accepted"] == 10 and agg[0]["rejected"] == 3
    assert agg[0]["last_offset"] == offsets[-1]
    assert sum(b["attempts"] for a in agg for b in a["buckets"]) == 10


def test_the_wire_keeps_every_value_and_type() -> None:
    frame = outage_events(minutes=1, rate=3.0).with_columns(
        pl.lit(None, dtype=pl.Int64).alias(wire.SEQ), pl.lit(0, dtype=pl.Int32).alias(wire.PART),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(wire.OFFSET))
    back = wire.decode(wire.encode(frame))
    assert back.schema == frame.schema and back.equals(frame)


def test_a_record_with_line_breaks_is_one_record() -> None:
    """A message is one record whatever its line breaks (JSONL splits on them)."""
    from tapshield.events.read import validate_json_records

    good = wire_json(outage_events(minutes=1, rate=1.0).head(2))
    pretty = json.dumps(json.loads(good[0]), indent=2).encode()  # breaks between tokens
    broken = good[1].replace(b'"nfc"', b'"n\nfc"').replace(b'"qr"', b'"q\nr"')
    broken = broken.replace(b'"debit_card"', b'"debit\n_card"').replace(b'"wallet"',
                                                                        b'"wal\nlet"')
    result = validate_json_records([pretty, broken, b"  "], [1, 2, 3])
    assert result.valid.height == 1
    assert result.valid.get_column("event_id").to_list() == [json.loads(good[0])["event_id"]]
    assert result.rejects.get_column("row").to_list() == [2, 3]
    assert set(result.rejects.get_column("errors").to_list()) == {"*: json_syntax"}
