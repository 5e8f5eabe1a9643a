"""Detector thresholds, each derived from a stated false-alarm rate.

**Firing.** For a CUSUM on log-likelihood ratios with threshold ``h``,
Lorden (1971) gives ``E_inf[tau] >= e^h`` observations between false alarms,
whatever the distribution, and the bound holds for independent,
non-identically distributed observations too (the Shiryaev-Roberts statistic
minus the observation count is a martingale under no change). With ``T``
tests each seeing ``n`` observations a week, ``h = ln(T * n / a)`` keeps the
family's false alarms at most ``a`` a week (Bonferroni). The bound is
conservative (the true run length is longer by the overshoot), which is the
safe side: it pays for the expectation being estimated.

**Recovery.** The reverse test (back to normal against the fault's rate) is
itself a CUSUM: it restarts after every failure, so by the same bound it
declares a false recovery about once per ``e^h`` observations. Over a wave of
``n`` observations, ``h = ln(n / e)`` keeps the chance of a false recovery at
most ``e`` (Wald's single-test ``ln(1/e)`` would not: seven successes in a row
inside a 50 % outage would end it).

The national rate test is a CUSUM on inter-arrival times (the Poisson
process' likelihood ratio ``ln(rho) + lambda (1 - rho) dt`` per event), so its
observations are events too.

**Hold.** After a wave resolves its slice is watched with a lower threshold
for the hold period: one known slice, one signal, a short time, so no
family-wise correction is due.
"""

from __future__ import annotations

import math

SECONDS_PER_WEEK = 7 * 24 * 3600


def cusum_threshold(tests: float, observations_per_week: float, false_per_week: float) -> float:
    """``h = ln(tests x observations per week / false alarms per week)`` (at least 1 nat)."""
    n = max(observations_per_week, 1.0) * max(tests, 1.0)
    return max(math.log(n / false_per_week), 1.0)


def recovery_threshold(error: float, observations: float = 1.0) -> float:
    """P(declare recovery within ``observations`` of a wave still going on) <= ``error``."""
    return math.log(max(observations, 1.0) / error)


def hold_threshold(designs: int, observations: float, false_rate: float) -> float:
    """Re-fire threshold of one slice during its hold period."""
    return max(math.log(max(designs, 1) * max(observations, 1.0) / false_rate), 1.0)

