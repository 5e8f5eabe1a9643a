"""Each detector on hand-built streams: what changed, where, when is known exactly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tapshield.monitor.slices import intersects

from .helpers import Run, run
from .synth import Fault, at, events


@pytest.fixture(scope="module")
def quiet() -> Run:
    return run(events(3600, rate=40, seed=5))


def test_normal_traffic_raises_nothing(quiet: Run) -> None:
    # an hour of healthy traffic: no alert at all, let alone a page
    assert quiet.events == []
    tl = quiet.monitor.timeline()
    assert tl["attempts"].sum() == quiet.monitor.events


@pytest.fixture(scope="module")
def outage() -> Run:
    fault = Fault(1800, 2400, {"channel": "nfc", "region": "CN-GD"}, "technical", 0.8)
    return run(events(3600, rate=40, faults=(fault,), seed=7))


def test_technical_failures_fire_in_the_failing_slice_within_seconds(outage: Run) -> None:
    fired = outage.firing("technical")
    assert len(fired) == 1
    ev = fired[0]
    assert intersects(ev.slice, {"channel": "nfc", "region": "CN-GD"})
    assert ev.slice and set(ev.slice.items()) <= {("channel", "nfc"), ("region", "CN-GD")}
    # ~4 events/s in scope at 80 % failure: the sequential test needs a few seconds
    assert at(1800) <= ev.ts <= at(1800) + timedelta(seconds=30)
    # started_at is the change point, not the detection time
    assert abs((ev.started_at - at(1800)).total_seconds()) < 15
    assert ev.level <= 3 and ev.notify


def test_the_wave_resolves_once_after_the_hold(outage: Run) -> None:
    waves = outage.alerts()
    assert len(waves) == 1
    (evs,) = waves.values()
    assert [e.state for e in evs].count("resolved") == 1
    res = evs[-1]
    assert res.state == "resolved" and res.notify
    ended = res.figures["ended_at"]
    assert abs((ended - at(2400)).total_seconds()) < 30
    # resolved after the 5-minute hold, not at the first healthy second
    assert res.ts >= at(2400) + timedelta(minutes=5)
    assert sum(e.notify for e in evs) <= 3


def test_latency_shift_is_detected_as_latency() -> None:
    fault = Fault(1500, 2700, {"region": "CN-JS"}, "latency", 4.0)
    r = run(events(3000, rate=40, faults=(fault,), seed=11))
    fired = r.firing("latency")
    assert fired, r.events
    assert intersects(fired[0].slice, {"region": "CN-JS"})
    assert at(1500) <= fired[0].ts <= at(1500) + timedelta(minutes=2)
    assert not r.firing("technical")


def test_a_silent_channel_is_detected_as_a_traffic_drop() -> None:
    fault = Fault(1500, 2400, {"channel": "debit_card"}, "silence", 1.0)
    r = run(events(3000, rate=40, faults=(fault,), seed=13))
    fired = r.firing("traffic_drop")
    assert fired, r.events
    assert fired[0].slice == {"channel": "debit_card"}
    # 4 events/s normally on debit_card: silence is unmistakable within a minute
    assert at(1500) <= fired[0].ts <= at(1500) + timedelta(seconds=60)


def test_a_national_silence_is_detected_when_time_moves_on() -> None:
    # nothing at all for ten minutes, then traffic comes back
    fault = Fault(1500, 2100, {}, "silence", 1.0)
    r = run(events(3000, rate=40, faults=(fault,), seed=17))
    fired = [e for e in r.firing("traffic_drop") if e.slice == {}]
    assert fired
    assert at(1500) <= fired[0].ts <= at(1500) + timedelta(seconds=20)
    assert fired[0].level == 1


def test_risk_declines_page_only_when_the_wave_lasts() -> None:
    fault = Fault(1500, 3300, {"device_model": "HW-4"}, "risk", 0.5)
    r = run(events(3400, rate=40, faults=(fault,), seed=19, users=200_000))
    fired = r.firing("risk_decline")
    assert fired, r.events
    first = fired[0]
    assert intersects(first.slice, {"device_model": "HW-4"})
    assert first.ts <= at(1500) + timedelta(seconds=60)
    pages = [e for e in r.paging() if e.signal == "risk_decline" and e.state != "resolved"]
    assert pages
    # declines come in bursts: a risk wave pages after lasting 20 minutes
    assert pages[0].ts >= first.started_at + timedelta(minutes=20)


def test_one_device_hammering_never_pages() -> None:
    # a single customer retrying/declined over and over: detected, never a page
    frame = events(3000, rate=40, seed=23)
    import polars as pl

    burst = frame.filter(pl.col("ts") > at(1500)).head(400).with_columns(
        pl.lit("d-bot").alias("device_id"), pl.lit("u-bot").alias("user_id"),
        pl.lit("declined").cast(frame.schema["outcome"]).alias("outcome"),
        pl.lit("59").alias("response_code"),
        pl.lit("decline").cast(frame.schema["risk_decision"]).alias("risk_decision"),
        (pl.col("event_id") + "-bot").alias("event_id"),
        (pl.col("payment_id") + "-bot").alias("payment_id"))
    both = pl.concat([frame, burst]).sort("ts", maintain_order=True)
    r = run(both)
    assert not [e for e in r.paging() if e.signal == "risk_decline"], r.events
