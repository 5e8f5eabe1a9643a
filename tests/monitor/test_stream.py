"""Timeline, late events, input checks, profiles and the end of the stream."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from tapshield.errors import ContractError
from tapshield.events.read import EventReader
from tapshield.monitor import AlertEvent, Monitor, MonitorConfig

from .synth import Fault, at, events


def test_timeline_columns_and_counts() -> None:
    frame = events(900, rate=20, seed=3)
    m = Monitor()
    m.process(frame)
    m.close()
    tl = m.timeline()
    assert tl.columns[:8] == ["bucket_start", "attempts", "taps", "approved",
                              "technical_failures", "declines", "risk_declines", "success_rate"]
    assert {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "technical_rate",
            "decline_rate", "risk_decline_rate", "late_events"} <= set(tl.columns)
    assert tl["attempts"].sum() == frame.height
    assert tl["taps"].sum() == frame["payment_id"].n_unique()
    assert tl.height == 90
    assert tl["bucket_start"].diff().drop_nulls().unique().to_list() == [timedelta(seconds=10)]
    p50 = tl["latency_p50_ms"].drop_nulls().median()
    assert 250 < p50 < 350  # synthetic latency median 300 ms, sketch accuracy 2 %


def test_late_events_are_counted_into_the_open_bucket() -> None:
    frame = events(600, rate=20, seed=4)
    late = frame.filter(pl.col("ts") < at(100)).head(50).with_columns(
        (pl.col("event_id") + "-late").alias("event_id"))
    m = Monitor()
    m.process(frame.filter(pl.col("ts") < at(300)))
    m.process(late)  # events from 200+ s ago arrive now
    m.process(frame.filter(pl.col("ts") >= at(300)))
    m.close()
    assert m.late_events == 50
    tl = m.timeline()
    assert tl["late_events"].sum() == 50
    assert tl["attempts"].sum() == frame.height + 50  # nothing accepted is lost


def test_retries_of_one_tap_count_once_as_a_tap() -> None:
    frame = events(300, rate=20, seed=5)
    retries = frame.head(100).with_columns(
        (pl.col("event_id") + "-r").alias("event_id"),
        (pl.col("ts") + timedelta(seconds=3)).alias("ts"))
    both = pl.concat([frame, retries]).sort("ts", maintain_order=True)
    m = Monitor()
    m.process(both)
    m.close()
    assert m.timeline()["taps"].sum() == frame.height
    assert m.timeline()["attempts"].sum() == both.height


def test_input_without_required_columns_is_refused() -> None:
    frame = events(60, rate=5, seed=6).drop("device_id")
    with pytest.raises(ContractError, match="device_id"):
        Monitor().process(frame)


def test_the_public_examples_go_through(examples: Path) -> None:
    for name in ("events-rfc3339.csv", "events-epoch-ms.csv"):
        frame = EventReader(examples / name).read_all().sort("ts")
        m = Monitor()
        assert m.process(frame) == []
        m.close()
        assert m.timeline()["attempts"].sum() == frame.height


def test_close_leaves_firing_alerts_open_and_ends_the_stream() -> None:
    fault = Fault(900, 1500, {"channel": "qr"}, "technical", 0.8)
    frame = events(1200, rate=20, faults=(fault,), seed=8)
    m = Monitor()
    out = m.process(frame)
    out += m.close()
    assert any(e.state == "firing" for e in out)
    assert not any(e.state == "resolved" for e in out)
    assert m.open_alerts()
    with pytest.raises(RuntimeError):
        m.process(frame.tail(5))


def _trickle_end() -> pl.DataFrame:
    """25 minutes of steady traffic (40/s), then, inside the last 10-s bucket, a
    3-second gap and one straggler: how a file cut at midnight can end."""
    frame = events(1500, rate=40, seed=29)
    body = frame.filter(pl.col("ts") < at(1493))
    straggler = frame.filter(pl.col("ts") >= at(1497)).head(1)
    assert straggler.height == 1
    return pl.concat([body, straggler])


def _traffic_drops(evs: list[AlertEvent]) -> list[AlertEvent]:
    return [e for e in evs if e.signal == "traffic_drop" and e.state == "firing"]


def test_the_end_of_a_file_is_not_judged_a_traffic_drop() -> None:
    frame = _trickle_end()
    m = Monitor()
    out = m.process(frame)
    out += m.close()
    # the gap before the straggler would be a national silence (40 events/s), but the
    # last bucket is partial: at the end of the data nothing tells a silence apart
    assert _traffic_drops(out) == []


def test_a_live_stream_falling_silent_is_still_found_by_advance() -> None:
    frame = _trickle_end()
    m = Monitor()
    out = m.process(frame)
    assert _traffic_drops(out) == []  # held until its bucket closes
    out += m.advance(at(1501))  # the clock moves past the bucket: the silence is real
    drops = _traffic_drops(out)
    assert [e.slice for e in drops] == [{}]
    assert at(1493) <= drops[0].ts <= at(1497)
    # and a stream that simply stops is found by the clock too
    quiet = Monitor()
    stopped = quiet.process(frame.filter(pl.col("ts") < at(1493)))
    stopped += quiet.advance(at(1520))
    assert [e.slice for e in _traffic_drops(stopped)] == [{}]


def test_a_saved_profile_is_loaded_and_arms_detectors_at_once(tmp_path: Path) -> None:
    frame = events(1800, rate=20, seed=9)
    m = Monitor()
    m.process(frame)
    m.close()
    path = m.save_profile(tmp_path / "profile.parquet")
    prof = pl.read_parquet(path)
    assert {"slice", "hour", "attempts", "technical"} <= set(prof.columns)
    assert prof.filter(pl.col("slice") == "*")["attempts"].sum() == frame.height
    # with the profile there is no warm-up: a fault 3 minutes in is caught
    fault = Fault(180, 900, {"channel": "qr"}, "technical", 0.8)
    later = events(900, rate=20, faults=(fault,), seed=10, start=at(86400))
    cfg = replace(MonitorConfig(), profile=path)
    m2 = Monitor(cfg)
    out = m2.process(later) + m2.close()
    assert any(e.state == "firing" and e.ts < at(86400 + 240) for e in out), out
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(bad)
    with pytest.raises(ContractError, match="profile"):
        Monitor(replace(MonitorConfig(), profile=bad))
