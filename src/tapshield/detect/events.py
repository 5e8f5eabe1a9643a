"""Event-level scoring of a detector's alerts against labelled anomaly windows.

NAB's score (:mod:`tapshield.detect.nab`) rewards *early* detection and prices a
false alert at a fixed fraction of a miss. An on-call engineer asks two simpler
questions, and **event F1** answers them:

* **recall**: of the labelled anomalies (windows), how many got at least one alert
  inside the window (first row to last row, inclusive)? A window is one event
  however many alerts fall in it.
* **precision**: of the *pages* sent, how many were for a real anomaly? Outside
  every window, alerts become pages the way Alertmanager sends them with its
  default timers: a page when the alert starts firing (an alert row after a
  quiet row), at most one per ``group_interval`` (5 minutes: a flickering alarm
  pages every 5 minutes, not every row), and a reminder every
  ``repeat_interval`` (4 hours) while it keeps firing. Each detected window
  counts as one true page. ``precision = detected / (detected + false pages)``.
  :func:`page_rows` turns the two timers into rows for a series' sampling step.
* ``F1 = 2 P R / (P + R)`` (0 when nothing is detected).

**Why pages and not episodes.** Until 2026-12-07 the false alarms were counted as
*episodes*: runs of alerts at most 30 rows apart, whatever their length. That
count cannot tell a detector that fires all day from one that fires once: a
detector that alerts on every row scores one false episode per gap between
windows, hence precision near 1/2, recall 1 and F1 about 0.67 on the simulator's
metrics, above every real detector (measured, BENCHMARKS.md). Baselines that
fire for hours or flicker for hours (a robust z-score whose median absolute
deviation is 0 through a night of 100% approval) were rewarded the same way.
``episode_gap`` gives the former count, for comparison only.

Rows before ``skip`` (a warm-up, e.g. NAB's probationary period) are not scored:
alerts there count neither way and windows that end there are dropped.

The same function scores every detector and baseline, so their F1 are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Alertmanager's default timers: a new firing pages at most this often ...
GROUP_INTERVAL_US = 5 * 60_000_000
#: ... and an alert that keeps firing pages again this often
REPEAT_INTERVAL_US = 4 * 3_600_000_000
#: the former episode gap (rows), for comparison only
EPISODE_GAP = 30


@dataclass(frozen=True, slots=True)
class EventCounts:
    """Windows detected and missed, and false pages; additive over series."""

    detected: int = 0
    missed: int = 0
    false_pages: int = 0

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(self.detected + other.detected, self.missed + other.missed,
                           self.false_pages + other.false_pages)

    @property
    def recall(self) -> float:
        n = self.detected + self.missed
        return self.detected / n if n else 0.0

    @property
    def precision(self) -> float:
        n = self.detected + self.false_pages
        return self.detected / n if n else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def page_rows(step_us: float) -> tuple[int, int]:
    """``(group_rows, repeat_rows)``: Alertmanager's default timers in rows of ``step_us``."""
    if not step_us > 0:
        raise ValueError("the sampling step must be positive")
    return (max(1, math.ceil(GROUP_INTERVAL_US / step_us)),
            max(1, math.ceil(REPEAT_INTERVAL_US / step_us)))


def _false_pages(alert: npt.NDArray[np.bool_], inside: npt.NDArray[np.bool_],
                 group_rows: int, repeat_rows: int) -> int:
    """Pages sent outside the windows (see the module docstring).

    Pages are sent for the whole alert sequence, windows included, so an alert
    that started inside a window and keeps firing after it re-pages only after
    the repeat interval, like the one alert it is.
    """
    pages = 0
    last = -(10**18)
    prev = False
    for i, a in enumerate(alert.tolist()):
        if a and ((not prev and i - last >= group_rows) or i - last >= repeat_rows):
            last = i
            if not inside[i]:
                pages += 1
        prev = a
    return pages


def event_counts(alert: npt.ArrayLike, windows: Sequence[tuple[int, int]], *,
                 skip: int = 0, group_rows: int = 1, repeat_rows: int = 48,
                 episode_gap: int | None = None) -> EventCounts:
    """Score one series' alerts (a boolean per row) against its windows (row ranges, inclusive).

    False alarms are pages: ``group_rows`` and ``repeat_rows`` are Alertmanager's
    timers in rows (:func:`page_rows`; the defaults are 5-minute data's). With
    ``episode_gap`` set they are the former episodes instead (alerts at most that
    many rows apart are one, however long), kept only to compare.
    """
    if group_rows < 1 or repeat_rows < 1:
        raise ValueError("group_rows and repeat_rows must be at least 1")
    a = np.asarray(alert, dtype=bool).copy()
    n = a.size
    a[: max(0, skip)] = False
    inside = np.zeros(n, dtype=bool)
    detected = missed = 0
    for lo, hi in windows:
        if not 0 <= lo <= hi:
            raise ValueError(f"window ({lo}, {hi}) is not a row range")
        if hi < skip:
            continue
        lo_c, hi_c = max(lo, skip), min(hi, n - 1)
        inside[lo:hi + 1] = True
        if lo_c <= hi_c and a[lo_c : hi_c + 1].any():
            detected += 1
        else:
            missed += 1
    if episode_gap is None:
        return EventCounts(detected, missed, _false_pages(a, inside, group_rows, repeat_rows))
    out = np.flatnonzero(a & ~inside)
    episodes = 0
    if out.size:
        episodes = 1 + int(np.count_nonzero(np.diff(out) > episode_gap))
    return EventCounts(detected, missed, episodes)
