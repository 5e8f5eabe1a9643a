"""Event F1 on hand-made cases: what counts as a detection, a false alarm, a page."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.detect.events import EventCounts, event_counts, page_rows


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
    # separate firings page each (one row apart is enough with a 1-row group interval)
    c = event_counts(_alerts(300, [60, 70, 90, 100, 200]), [(10, 20)], group_rows=1,
                     repeat_rows=48)
    assert (c.detected, c.missed, c.false_pages) == (0, 1, 5)
    assert c.f1 == 0.0
    # an alarm that keeps firing pages once, then once per repeat interval
    on = np.zeros(300, dtype=bool)
    on[60:200] = True
    assert event_counts(on, [], group_rows=1, repeat_rows=48).false_pages == 3  # 60, 108, 156
    # a flickering alarm pages at most once per group interval
    flicker = _alerts(300, list(range(60, 120, 2)))
    assert event_counts(flicker, [], group_rows=5, repeat_rows=240).false_pages == 10
    # an alert that started in a window and keeps firing after it is the same alert
    after = np.zeros(300, dtype=bool)
    after[15:40] = True
    c = event_counts(after, [(10, 20)], group_rows=1, repeat_rows=48)
    assert (c.detected, c.false_pages) == (1, 0)
    # the former count: alerts at most episode_gap rows apart are one episode
    old = event_counts(_alerts(300, [60, 70, 90, 100, 200]), [(10, 20)], episode_gap=30)
    assert old.false_pages == 2


def test_alertmanager_timers_in_rows() -> None:
    assert page_rows(60_000_000) == (5, 240)  # 1-minute data
    assert page_rows(300_000_000) == (1, 48)  # 5-minute data
    assert page_rows(3_600_000_000) == (1, 4)  # hourly data
    with pytest.raises(ValueError):
        page_rows(0.0)


def test_an_alarm_that_never_stops_is_not_one_false_alarm() -> None:
    # The former episode count gave "alert on every row" at most one false episode per
    # gap between windows (here one: the windows are shorter than the episode gap), so
    # it scored as well as a detector that alerts once per window and once besides.
    n, windows = 3000, [(500, 520), (1500, 1520), (2500, 2520)]
    always = np.ones(n, dtype=bool)
    once = _alerts(n, [505, 1505, 2505, 1000])
    assert event_counts(always, windows, episode_gap=30).f1 >= event_counts(
        once, windows, episode_gap=30).f1
    assert event_counts(always, windows, repeat_rows=30).f1 < 0.1
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
