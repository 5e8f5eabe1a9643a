"""Event F1 on hand-made cases: what counts as a detection, a false alarm, an episode."""

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
    assert (c.detected, c.missed, c.false_episodes) == (2, 1, 0)
    assert c.recall == pytest.approx(2 / 3) and c.precision == 1.0
    assert c.f1 == pytest.approx(0.8)


def test_false_alarms_are_counted_as_episodes() -> None:
    # 60, 70, 100 are one episode (gaps <= 30); 200 another; the window is missed
    c = event_counts(_alerts(300, [60, 70, 100, 200]), [(10, 20)], episode_gap=30)
    assert (c.detected, c.missed, c.false_episodes) == (0, 1, 2)
    assert c.f1 == 0.0
    assert event_counts(_alerts(300, [60, 90]), [], episode_gap=30).false_episodes == 1
    assert event_counts(_alerts(300, [60, 91]), [], episode_gap=30).false_episodes == 2


def test_the_warm_up_is_not_scored() -> None:
    c = event_counts(_alerts(100, [5, 30]), [(0, 10), (25, 40)], skip=20)
    assert (c.detected, c.missed, c.false_episodes) == (1, 0, 0)
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
