"""A streaming anomaly detector for any metric series, with one fixed configuration.

Why this design (see ``docs/detect.md`` for the measurements):

An operational metric is usually shaped by the time of day (traffic, CPU,
latency, sales), sometimes by nothing at all (a random-looking counter), and it
comes on any scale. A human on call asks two questions of a new point: *is this
value normal for this time of day?* and *have I seen this shape at this time of
day before?* The detector asks exactly those, with three features:

1. **seasonal residual**: ``|x - median|`` of the values observed at the same
   time of day on each of the last 7 days (the sample nearest ``t - d days``
   and its two neighbours, so jitter of one sample is tolerated). When the
   metric has no daily rhythm this is simply the distance from its typical
   recent level, so it degrades gracefully; for data sampled daily or slower it
   is the distance from the median of the previous week.
2. **pattern novelty**: the Euclidean distance from the last 32 samples
   (summarised as 8 block means) to the nearest window, among the last 3000
   samples, that ended within one hour of the same time of day and does not
   overlap the current one: a left matrix profile restricted to the daily
   phase. It fires on shapes never seen at this hour (a missing daily peak, a
   flat line where there is usually a ramp, a burst of spikes).
3. **accumulated pattern evidence**: the sum of ``-ln p`` of feature 2 over the
   last 10 samples: a pattern change that is only mildly unusual at each point
   but persists (Fisher's combination over time).

Each feature becomes a p-value against its own history
(:mod:`tapshield.detect.kernels`), so no scale, unit or per-metric
threshold ever enters. The three are combined by their harmonic mean,
``p = 3 / sum_k 1/p_k`` (Wilson, "The harmonic mean p-value for combining
dependent tests", PNAS 2019): robust to the strong dependence between the
features, never smaller than the smallest p-value nor larger than Bonferroni's
``3 min_k p_k``, and stronger when several features agree. The anomaly score is
``1 - p``. Until a day of history is calibrated, a cold-start feature stands
in: the distance from the median of the previous 21 samples.

**Decision.** An alert fires when ``p < alpha`` with ``alpha = 1e-3``, a stated
per-point false-alarm probability (one false alert per thousand points of a
metric that behaves like its own history), and the previous alert is more than
50 samples old: one alert per episode, not one per point of a sustained
change.

Everything is causal (a point is scored against the past only, then learned),
deterministic, and the per-point cost is bounded (a few hundred window
distances, three binary searches and ``memmove`` of at most 5000 floats), so a
replay of a file and a live stream fed in any batch sizes give identical
results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from tapshield.detect.kernels import (
    N_FEATURES,
    N_FSTATE,
    N_ISTATE,
    STEPS,
    process,
)
from tapshield.timeutil import epoch_us

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000

#: names of the features, in the order of :attr:`Verdicts.driver`
FEATURES = ("seasonal", "pattern", "pattern_accumulated", "level")
assert len(FEATURES) == N_FEATURES


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """The detector's constants. :data:`DEFAULT_CONFIG` is the one configuration we ship.

    Where each number comes from:

    * ``alpha``: per-point false-alarm probability of the alert, chosen from the
      rate an operator tolerates (one false alert per 1000 points of one
      metric: about 3.5 days of 5-minute data), not from any label;
    * ``refractory``: samples after an alert during which no new alert fires
      (one alert per episode; 50 samples is about four hours of 5-minute data);
    * ``season_days``: a week of history for the time-of-day median (covers the
      weekly cycle once, adapts to change within a week);
    * ``window_blocks`` x ``block``: the pattern window, 32 samples as 8 means of 4
      (about 2.7 h of 5-minute data: short enough that a new shape fills most of
      the window within an hour of its onset, long enough to hold a daily
      ramp's slope; 64 samples reacted later and raised more false alerts on
      the second and third day of a metric, docs/detect.md);
    * ``pattern_memory`` and ``phase_tolerance_us``: how far back and how close
      in time of day a comparable window must be;
    * ``accumulate``: samples over which pattern evidence is summed (10: a
      third of the pattern window, so a persistent mild change is summed over
      new windows rather than over one window seen many times);
    * ``calib_memory``, ``calib_min``, ``tail_fraction``, ``tail_min``,
      ``xi_max``, ``refit``: the p-value calibration (see
      :mod:`tapshield.detect.kernels`).
    """

    alpha: float = 1e-3
    refractory: int = 50
    season_days: int = 7
    window_blocks: int = 8
    block: int = 4
    pattern_memory: int = 3000
    phase_tolerance_us: int = HOUR_US
    accumulate: int = 10
    calib_memory: int = 5000
    calib_min: int = 100
    tail_fraction: float = 0.02
    tail_min: int = 10
    xi_max: float = 0.5
    refit: int = 25

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        for name in ("refractory", "season_days", "window_blocks", "block", "pattern_memory",
                     "accumulate", "calib_memory", "calib_min", "tail_min", "refit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.pattern_memory <= self.window_length:
            raise ValueError("pattern_memory must exceed the pattern window")

    @property
    def window_length(self) -> int:
        return self.window_blocks * self.block

    def _ints(self) -> npt.NDArray[np.int64]:
        return np.array([self.refractory, self.season_days, self.window_blocks, self.block,
                         self.pattern_memory, self.phase_tolerance_us, self.accumulate,
                         self.calib_min, self.tail_min, self.refit], dtype=np.int64)

    def _floats(self) -> npt.NDArray[np.float64]:
        return np.array([self.alpha, self.tail_fraction, self.xi_max], dtype=np.float64)


DEFAULT_CONFIG = DetectorConfig()



@dataclass(frozen=True, slots=True)
class Verdict:
    """The detector's answer for one point."""

    score: float  # 1 - p: probability-like anomaly score in [0, 1]
    p_value: float
    alert: bool
    driver: str | None  # the feature with the smallest p-value, if any evidence


@dataclass(frozen=True, slots=True)
class Verdicts:
    """The detector's answers for a batch of points (aligned with the input)."""

    p_value: npt.NDArray[np.float64]
    alert: npt.NDArray[np.bool_]
    driver: npt.NDArray[np.int8]  # index into FEATURES, -1 when p == 1 or missing

    # p_value is NaN at missing points (NaN values): they are not scored

    @property
    def score(self) -> npt.NDArray[np.float64]:
        return 1.0 - self.p_value


class GenericDetector:
    """Streaming detector: ``update(ts, x)`` scores a point against the past, then learns it.

    Points are taken in arrival order. A point whose timestamp does not advance
    (it repeats the previous one or goes back: a joined export, a clock stepping
    back) is still scored and learned, as if it arrived one microsecond after the
    previous point: nothing is dropped or merged, and the detector's clock never
    runs backwards. ``NaN`` values are missing points: reported with a ``NaN``
    p-value (and score) and not learned. Results do not depend on how the stream
    is cut into batches.
    """

    _BUF = 16384  # samples of history kept (a week of 1-minute data and more)

    def __init__(self, config: DetectorConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        wbuf = 1
        while wbuf < config.pattern_memory + config.window_length + 1:
            wbuf *= 2
        buf = max(self._BUF, wbuf)
        self._ci = config._ints()
        self._cf = config._floats()
        self._ring_ts = np.zeros(buf, dtype=np.int64)
        self._ring_x = np.zeros(buf, dtype=np.float64)
        self._ring_w = np.zeros((wbuf, config.window_blocks), dtype=np.float64)
        self._steps = np.zeros(STEPS, dtype=np.int64)
        self._acc = np.zeros(config.accumulate, dtype=np.float64)
        # count, index of the last alert, last timestamp
        self._ctr = np.array([0, -(10**12), 0], dtype=np.int64)
        h = config.calib_memory
        self._cal_ring = np.zeros((N_FEATURES, h), dtype=np.float64)
        self._cal_srt = np.zeros((N_FEATURES, h), dtype=np.float64)
        self._cal_ist = np.zeros((N_FEATURES, N_ISTATE), dtype=np.int64)
        self._cal_fst = np.zeros((N_FEATURES, N_FSTATE), dtype=np.float64)

    @property
    def n_seen(self) -> int:
        """Points learned so far (missing values excluded)."""
        return int(self._ctr[0])

    def update_many(self, ts_us: npt.ArrayLike, values: npt.ArrayLike) -> Verdicts:
        """Score and learn a batch; ``ts_us`` are epoch microseconds in arrival order."""
        ts = np.ascontiguousarray(ts_us, dtype=np.int64)
        xs = np.ascontiguousarray(values, dtype=np.float64)
        if ts.shape != xs.shape or ts.ndim != 1:
            raise ValueError("timestamps and values must be 1-D arrays of the same length")
        if np.isinf(xs).any():
            raise ValueError(f"value at position {int(np.flatnonzero(np.isinf(xs))[0])} "
                             "is infinite")
        p = np.empty(ts.size, dtype=np.float64)
        alert = np.empty(ts.size, dtype=np.bool_)
        driver = np.empty(ts.size, dtype=np.int8)
        process(self._ci, self._cf, self._ring_ts, self._ring_x, self._ring_w, self._steps,
                 self._acc, self._ctr, self._cal_ring, self._cal_srt, self._cal_ist,
                 self._cal_fst, ts, xs, p, alert, driver)
        return Verdicts(p_value=p, alert=alert, driver=driver)

    def update(self, ts: datetime | int, value: float) -> Verdict:
        """Score and learn one point (``ts`` an aware datetime or epoch microseconds)."""
        us = epoch_us(ts) if isinstance(ts, datetime) else int(ts)
        v = self.update_many(np.array([us]), np.array([value], dtype=np.float64))
        d = int(v.driver[0])
        # a missing value comes back with NaN score and p-value
        return Verdict(score=float(1.0 - v.p_value[0]), p_value=float(v.p_value[0]),
                       alert=bool(v.alert[0]), driver=FEATURES[d] if d >= 0 else None)
