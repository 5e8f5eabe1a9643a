"""Results must not depend on how the stream is cut into batches."""

from __future__ import annotations

import itertools
from functools import cache
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapshield.monitor import AlertEvent, Monitor

from .synth import Fault, events


@cache
def stream() -> pl.DataFrame:
    faults = (Fault(1000, 1600, {"channel": "qr", "region": "CN-GD"}, "technical", 0.8),
              Fault(1300, 1900, {"channel": "debit_card"}, "silence", 1.0),
              Fault(1700, 2300, {"region": "CN-JS"}, "latency", 5.0))
    return events(2400, rate=25, faults=faults, seed=71)


def fingerprint(evs: list[AlertEvent]) -> list[tuple[Any, ...]]:
    return [(e.alert_id, e.state, e.ts, e.level, e.signal, tuple(sorted(e.slice.items())),
             e.started_at, e.notify, round(e.figures.get("share_affected", 0.0), 9))
            for e in evs]


def replay(cuts: list[int]) -> tuple[list[tuple[Any, ...]], pl.DataFrame]:
    frame = stream()
    bounds = [0, *sorted(set(cuts)), frame.height]
    m = Monitor()
    out: list[AlertEvent] = []
    for lo, hi in itertools.pairwise(bounds):
        out.extend(m.process(frame.slice(lo, hi - lo)))
    out.extend(m.close())
    return fingerprint(out), m.timeline()


@cache
def reference() -> tuple[list[tuple[Any, ...]], pl.DataFrame]:
    return replay([])


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=59_000), min_size=1, max_size=40))
def test_same_alerts_and_timeline_whatever_the_batching(cuts: list[int]) -> None:
    ref_alerts, ref_tl = reference()
    assert len(ref_alerts) >= 4  # the stream does raise alerts
    alerts, tl = replay([c for c in cuts if c < stream().height])
    assert alerts == ref_alerts
    assert tl.equals(ref_tl)


def test_one_event_at_a_time_around_a_detection() -> None:
    frame = stream()
    ref_alerts, _ = reference()
    # a window around the first detection, fed event by event
    first = ref_alerts[0][2]
    idx = frame.with_row_index().filter(pl.col("ts") >= first)["index"][0]
    cuts = list(range(max(idx - 200, 1), idx + 200))
    alerts, _ = replay(cuts)
    assert alerts == ref_alerts


def test_dictionary_encoded_dimensions_give_the_same_alerts() -> None:
    """Categorical/Enum dimension columns map to slices through their categories;
    the result must not depend on the encoding (even changing between batches)."""
    ref_alerts, ref_tl = reference()
    frame = stream()
    cat = frame.with_columns(
        pl.col("channel", "region", "merchant_id").cast(pl.Categorical),
        pl.col("carrier").cast(pl.Enum(sorted(frame["carrier"].unique().to_list()))),
    )
    m = Monitor()
    out: list[AlertEvent] = []
    step = 10_000
    for i, lo in enumerate(range(0, frame.height, step)):
        out.extend(m.process((cat if i % 2 == 0 else frame).slice(lo, step)))
    out.extend(m.close())
    assert fingerprint(out) == ref_alerts
    assert m.timeline().equals(ref_tl)
