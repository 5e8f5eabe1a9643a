"""``EventWindow.since`` by binary search returns what the filter and sort returned.

The window answers from slices of ordered, consecutive batches and falls back
to filtering and sorting otherwise (late events, unordered batches); both
must give the same rows in the same order for any question, including ties
at batch edges and questions before, inside and after what is retained.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.pipeline import EventWindow
from tapshield.timeutil import epoch_us

T0 = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)


def batch(seconds: list[int], tag: int) -> pl.DataFrame:
    cols: dict[str, list[object]] = {c: [None] * len(seconds) for c in CANONICAL_SCHEMA}
    cols["ts"] = [T0 + timedelta(seconds=s) for s in seconds]
    cols["event_id"] = [f"b{tag}-{i}" for i in range(len(seconds))]
    return pl.DataFrame(cols, schema=CANONICAL_SCHEMA)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.tuples(st.lists(st.integers(0, 40), min_size=1, max_size=12),
                               st.booleans()), min_size=1, max_size=5),
    step=st.integers(0, 30),
    questions=st.lists(st.tuples(st.integers(-5, 200), st.one_of(st.none(),
                                                                 st.integers(-5, 200))),
                       min_size=1, max_size=6),
    retention_s=st.integers(10, 300),
)
def test_since_by_search_equals_filter_and_sort(
    batches: list[tuple[list[int], bool]], step: int,
    questions: list[tuple[int, int | None]], retention_s: int,
) -> None:
    window = EventWindow(timedelta(seconds=retention_s))
    for i, (secs, ordered) in enumerate(batches):
        # ordered batches move forward by ``step`` (ties at the edges when step is
        # small); an unordered one stands for late events passed on as they came
        shifted = [s + i * step for s in secs]
        window.add(batch(sorted(shifted) if ordered else shifted, i))
        for a, b in questions:
            start = T0 + timedelta(seconds=a)
            until = None if b is None else T0 + timedelta(seconds=b)
            got = window.since(start, until)
            parts = [f.frame for f in window._frames  # the long way, over the same batches
                     if f.hi >= epoch_us(start) and (until is None or f.lo <= epoch_us(until))]
            if not parts:
                assert got.height == 0
                continue
            expected = EventWindow._filtered(parts, epoch_us(start),
                                             None if until is None else epoch_us(until))
            assert got.schema == expected.schema
            assert got.get_column("event_id").to_list() == expected.get_column(
                "event_id").to_list()
