"""Event-level scoring of a detector's alerts against labelled anomaly windows.

NAB's score (:mod:`tapshield.detect.nab`) rewards *early* detection and prices a
false alert at a fixed fraction of a miss. An on-call engineer asks two simpler
questions, and **event F1** answers them:

* **recall**: of the labelled anomalies (windows), how many got at least one alert
  inside the window (first row to last row, inclusive)? A window is one event
  however many alerts fall in it.
* **precision**: of the *pages* sent, how many were for a real anomaly? Outside
  every window, alerts are turned into pages the way an alert manager does it:
  the first alert pages, and while alerts keep coming the next page goes out
  only once ``repeat_after`` rows have passed since the last page (Alertmanager's
  ``repeat_interval``). So a false alarm that flickers for a few rows is one
  page, and one that stays on for a day is a page every ``repeat_after`` rows;
  each detected window counts as one true page. ``precision = detected /
  (detected + false pages)``.
* ``F1 = 2 P R / (P + R)`` (0 when nothing is detected).

**Why pages and not episodes.** Until 2026-12-07 the false alarms were counted as
*episodes*: runs of alerts at most 30 rows apart, whatever their length. That
count cannot tell a detector that fires for a day from one that fires once: a
detector that alerts on every row scores one false episode per gap between
windows, hence precision near 1/2, recall 1 and F1 about 0.67 on the simulator's
metrics, above every real detector (measured, BENCHMARKS.md). Baselines that
fire for hours (a robust z-score whose median absolute deviation is 0 on a
night of 100% approval) were rewarded the same way. ``repeat_after=None`` gives
the former count, for comparison only.

Rows before ``skip`` (a warm-up, e.g. NAB's probationary period) are not scored:
alerts there count neither way and windows that end there are dropped.

The same function scores every detector and baseline, so their F1 are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: rows after a page before a still-firing false alarm pages again (and, with
#: ``repeat_after=None``, the former episode gap)
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


def _pages(rows: npt.NDArray[np.intp], repeat_after: int) -> int:
    """Pages sent for alerts at ``rows`` (sorted): a page, then again ``> repeat_after`` later."""
    pages = 0
    last = -(10**18)
    for i in rows.tolist():
        if i - last > repeat_after:
            pages += 1
            last = i
    return pages


def event_counts(alert: npt.ArrayLike, windows: Sequence[tuple[int, int]], *,
                 skip: int = 0, repeat_after: int | None = EPISODE_GAP,
                 episode_gap: int = EPISODE_GAP) -> EventCounts:
    """Score one series' alerts (a boolean per row) against its windows (row ranges, inclusive).

    False alarms are pages (``repeat_after`` rows between pages of a still-firing
    alarm); with ``repeat_after=None`` they are the former episodes (alerts at most
    ``episode_gap`` rows apart are one, however long), kept only to compare.
    """
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
    out = np.flatnonzero(a & ~inside)
    if repeat_after is not None:
        return EventCounts(detected, missed, _pages(out, repeat_after))
    episodes = 0
    if out.size:
        episodes = 1 + int(np.count_nonzero(np.diff(out) > episode_gap))
    return EventCounts(detected, missed, episodes)
