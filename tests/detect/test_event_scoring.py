"""Event F1 on hand-made cases: what counts as a detection, a false alarm, a page."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.detect.events import EventCounts, event_counts


def _alerts(n: int, at: list[int]) -> np.ndarray:
    a = np.zeros(n, dtype=bool)
    a[at] = True
    return a


def test_a_window_is_one_event_however_many_alerts_fall_in_it() -> None:
    c = event_counts(_alerts(100, [10, 11, 12, 50]), [(10, 20), (40, 45), (50, 50)])
    assert (c.detected, c.missed, c.false_pages) == (2, 1, 0)
    assert c.recall == pytest.approx(2 / 3) and c.precision == 1.0
    assert c.f1 == pytest.approx(0.8)


def test_false_alarms_are_counted_as_pages() -> None:
    # 60 pages; 70 and 90 are repeats within 30 rows of it; 100 pages again (a still
    # firing alarm re-pages every 30 rows); 200 pages; the window is missed
    c = event_counts(_alerts(300, [60, 70, 90, 100, 200]), [(10, 20)], repeat_after=30)
    assert (c.detected, c.missed, c.false_pages) == (0, 1, 3)
    assert c.f1 == 0.0
    assert event_counts(_alerts(300, [60, 90]), [], repeat_after=30).false_pages == 1
    assert event_counts(_alerts(300, [60, 91]), [], repeat_after=30).false_pages == 2
    # the former count (episodes of any length) is kept for comparison only
    old = event_counts(_alerts(300, [60, 70, 90, 100, 200]), [(10, 20)], repeat_after=None,
                       episode_gap=30)
    assert old.false_pages == 2


def test_an_alarm_that_never_stops_is_not_one_false_alarm() -> None:
    # The former episode count gave "alert on every row" at most one false episode per
    # gap between windows (here one: the windows are shorter than the episode gap), so
    # it scored as well as a detector that alerts once per window and once besides.
    n, windows = 3000, [(500, 520), (1500, 1520), (2500, 2520)]
    always = np.ones(n, dtype=bool)
    once = _alerts(n, [505, 1505, 2505, 1000])
    assert event_counts(always, windows, repeat_after=None).f1 >= event_counts(
        once, windows, repeat_after=None).f1
    assert event_counts(always, windows).f1 < 0.1
    assert event_counts(once, windows).f1 == pytest.approx(6 / 7)


def test_the_warm_up_is_not_scored() -> None:
    c = event_counts(_alerts(100, [5, 30]), [(0, 10), (25, 40)], skip=20)
    assert (c.detected, c.missed, c.false_pages) == (1, 0, 0)
    # a window straddling the warm-up counts only its scored part
    c = event_counts(_alerts(100, [15]), [(10, 30)], skip=20)
    assert (c.detected, c.missed) == (0, 1)


def test_counts_add_over_series_and_perfect_and_null_detectors() -> None:
    total = EventCounts(1, 2, 3) + EventCounts(4, 5, 6)
    assert total == EventCounts(5, 7, 9)
    assert EventCounts().f1 == 0.0
    assert event_counts(_alerts(50, [3, 30]), [(3, 5), (30, 31)]).f1 == 1.0


@settings(max_examples=50, deadline=None)
@given(at=st.lists(st.integers(0, 199), max_size=40),
       starts=st.lists(st.integers(0, 180), max_size=4, unique=True))
def test_counts_are_consistent(at: list[int], starts: list[int]) -> None:
    windows = []
    last = -1
    for s in sorted(starts):
        if s > last:
            windows.append((s, s + 10))
            last = s + 10
    c = event_counts(_alerts(200, at), windows)
    assert c.detected + c.missed == len(windows)
    assert 0.0 <= c.f1 <= 1.0
    # adding an alert never lowers recall
    more = event_counts(_alerts(200, [*at, 0]), windows)
    assert more.recall >= c.recall
