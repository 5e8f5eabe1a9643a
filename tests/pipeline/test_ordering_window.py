from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.events.validate import validate_frame
from tapshield.pipeline import EventWindow, Reorderer
from tests.events.helpers import rows

T0 = 1_795_737_600_000  # epoch ms


def frame(offsets_ms: list[int]) -> pl.DataFrame:
    return validate_frame(
        rows(*[{"ts": str(T0 + o)} for o in offsets_ms]).with_columns(
            pl.Series("event_id", [f"e{i}-{o}" for i, o in enumerate(offsets_ms)])
        )
    ).valid


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 600_000), min_size=1, max_size=60), st.integers(1, 9))
def test_reorderer_releases_everything_in_order_within_lateness(
    offsets: list[int], cut: int
) -> None:
    """Property: with lateness covering the disorder, output = input sorted, nothing lost."""
    r = Reorderer(timedelta(minutes=11))
    out = []
    for i in range(0, len(offsets), cut):
        out.append(r.push(frame(offsets[i : i + cut])))
    out.append(r.flush())
    got = pl.concat(out)["ts"].cast(pl.Int64).to_list()
    assert got == sorted((T0 + o) * 1000 for o in offsets)
    assert r.late_events == 0


def test_late_events_are_passed_on_and_counted() -> None:
    r = Reorderer(timedelta(seconds=1))
    first = r.push(frame([0, 10_000]))
    assert first.height == 1  # the 10 s event waits for the watermark
    late = r.push(frame([20_000, 500]))  # 500 ms is older than what was released? no: 0 was
    assert late["ts"].cast(pl.Int64).to_list() == [(T0 + 500) * 1000, (T0 + 10_000) * 1000]
    again = r.push(frame([100]))  # older than the released 10 s event
    assert again.height == 1 and r.late_events == 1
    assert r.flush().height == 1


def test_window_keeps_only_the_retention() -> None:
    w = EventWindow(timedelta(minutes=10))
    for minute in range(30):
        w.add(frame([minute * 60_000, minute * 60_000 + 1]))
    start = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert w.earliest is not None and w.earliest >= start + timedelta(minutes=19)
    assert w.rows == 2 * 11
    recent = w.since(start + timedelta(minutes=25))
    assert recent.height == 10
    assert recent["ts"].is_sorted()


def test_window_keeps_the_retention_before_a_long_batch_starts() -> None:
    """A replay chunk spanning hours must not evict the past its first alerts compare with."""
    w = EventWindow(timedelta(minutes=30))
    w.add(frame([0, 10 * 60_000, 29 * 60_000]))
    # the next batch starts a minute later and runs five hours
    w.add(frame([30 * 60_000 + k * 60_000 for k in range(300)]))
    start = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert w.earliest == start and w.holds_since(start - timedelta(hours=1))
    assert w.since(start).height == 303
    # a batch starting more than the retention after the first one evicts it
    w.add(frame([29 * 60_000 + 300 * 60_000 + 31 * 60_000]))
    assert w.earliest is not None and w.earliest > start + timedelta(minutes=29)
    assert not w.holds_since(start + timedelta(minutes=300))
    assert w.holds_since(start + timedelta(minutes=330))
