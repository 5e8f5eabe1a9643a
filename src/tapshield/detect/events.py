"""Event-level scoring of a detector's alerts against labelled anomaly windows.

NAB's score (:mod:`tapshield.detect.nab`) rewards *early* detection and prices a
false alert at a fixed fraction of a miss. An on-call engineer asks two simpler
questions, and **event F1** answers them:

* **recall**: of the labelled anomalies (windows), how many got at least one alert
  inside the window (first row to last row, inclusive)? A window is one event
  however many alerts fall in it.
* **precision**: of the alert *episodes*, how many were real? An episode is a
  run of alerts outside every window in which consecutive alerts are at most
  ``episode_gap`` rows apart (one false alarm that flickers is one false page,
  not ten); each detected window counts as one true episode. So
  ``precision = detected / (detected + false episodes)``.
* ``F1 = 2 P R / (P + R)`` (0 when nothing is detected).

Rows before ``skip`` (a warm-up, e.g. NAB's probationary period) are not scored:
alerts there count neither way and windows that end there are dropped.

The same function scores every detector and baseline, so their F1 are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: alerts at most this many rows apart outside the windows are one false-alarm episode
EPISODE_GAP = 30


@dataclass(frozen=True, slots=True)
class EventCounts:
    """Windows detected and missed, and false-alarm episodes; additive over series."""

    detected: int = 0
    missed: int = 0
    false_episodes: int = 0

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(self.detected + other.detected, self.missed + other.missed,
                           self.false_episodes + other.false_episodes)

    @property
    def recall(self) -> float:
        n = self.detected + self.missed
        return self.detected / n if n else 0.0

    @property
    def precision(self) -> float:
        n = self.detected + self.false_episodes
        return self.detected / n if n else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def event_counts(alert: npt.ArrayLike, windows: Sequence[tuple[int, int]], *,
                 skip: int = 0, episode_gap: int = EPISODE_GAP) -> EventCounts:
    """Score one series' alerts (a boolean per row) against its windows (row ranges, inclusive)."""
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
    episodes = 0
    if out.size:
        episodes = 1 + int(np.count_nonzero(np.diff(out) > episode_gap))
    return EventCounts(detected, missed, episodes)
