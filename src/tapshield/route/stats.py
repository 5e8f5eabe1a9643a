"""The statistics behind elimination, readmission and scores.

Every routing threshold in tapshield comes from here, from a stated error rate:

* **Elimination** is a Bernoulli CUSUM (Page 1954) of the log-likelihood ratio
  between "the channel fails at its normal rate ``p0``" and "the channel is
  down: it fails at ``p1``". A failure adds ``ln(p1/p0)``, a success adds
  ``ln((1-p1)/(1-p0))`` (negative), the sum is floored at zero and the channel
  is eliminated when it reaches ``h = ln(ARL0)``. For this statistic the
  average number of attempts on a healthy channel before a false elimination
  is at least ``e^h`` (the CUSUM is a sequence of Wald SPRTs restarted at
  zero; each false crossing has probability at most ``e^-h``), so ``h`` is
  read off the false-elimination rate the operator accepts, never tuned.

  With ``p0 = 0.2 %`` (a channel that almost never fails), ``p1 = 50 %`` and
  one false elimination per million attempts, a failure is worth
  ``ln(250) = 5.52`` and ``h = ln(10^6) = 13.8``: three failures in a row
  eliminate, two do not. A channel that normally fails 2 % of the time needs
  five. The "about three" of the issue falls out of the arithmetic.

* **Readmission** is the mirrored CUSUM on probe results: a success adds
  ``ln((1-p0)/(1-p1))``, a failure ``ln(p0/p1)`` (floored at zero); the
  channel comes back when the sum reaches ``ln(1/alpha)``. By the same bound,
  a channel that is still down (failing at ``p1``) is falsely readmitted on
  average no more often than once every ``1/alpha`` probes; a channel that
  is fully dead never is.

* After readmission the CUSUM restarts at ``h/2``, the "fast initial
  response" of Lucas and Crosier (1982): a channel that is in fact still
  broken is caught again after fewer failures, at the price of a slightly
  higher false-alarm chance in the first few attempts, when suspicion is
  justified anyway.

* **Evidence decays** with a half-life: the CUSUM and the success counts are
  multiplied by ``2^(-dt/half_life)`` before each update. Decay only lowers
  the CUSUM (the update ``max(0, S + x)`` is monotone in ``S``), so the
  false-elimination bound above still holds; what it buys is that three
  failures spread over a day on a quiet channel never add up to an
  elimination, and a channel without traffic drifts back to its prior instead
  of keeping a stale score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _check_rates(p0: float, p1: float) -> None:
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"normal failure rate must be in (0, 1), got {p0}")
    if not p0 < p1 < 1.0:
        raise ValueError(f"outage failure rate must be in ({p0}, 1), got {p1}")


@dataclass(frozen=True, slots=True)
class Cusum:
    """Increments and threshold of the elimination CUSUM for one channel."""

    on_failure: float
    """``ln(p1/p0)`` > 0."""
    on_success: float
    """``ln((1-p1)/(1-p0))`` < 0."""
    threshold: float
    """``h = ln(ARL0)``."""

    @property
    def failures_in_a_row(self) -> int:
        """Consecutive failures (from a clean state) that eliminate."""
        return max(1, math.ceil(self.threshold / self.on_failure - 1e-12))


def elimination_cusum(p0: float, p1: float, false_elimination_every: float) -> Cusum:
    """CUSUM for "normal rate ``p0``" against "down at ``p1``".

    ``false_elimination_every`` is the accepted average number of attempts on
    a healthy channel between two false eliminations (ARL0).
    """
    _check_rates(p0, p1)
    if false_elimination_every <= 1.0:
        raise ValueError("false_elimination_every must be > 1 attempt")
    return Cusum(
        on_failure=math.log(p1 / p0),
        on_success=math.log((1.0 - p1) / (1.0 - p0)),
        threshold=math.log(false_elimination_every),
    )


def failures_to_eliminate(p0: float, p1: float, false_elimination_every: float) -> int:
    """How many technical failures in a row eliminate a channel (see module doc)."""
    return elimination_cusum(p0, p1, false_elimination_every).failures_in_a_row


@dataclass(frozen=True, slots=True)
class Readmission:
    """Increments and threshold of the probe test that brings a channel back."""

    on_success: float
    """``ln((1-p0)/(1-p1))`` > 0."""
    on_failure: float
    """``ln(p0/p1)`` < 0."""
    threshold: float
    """``ln(1/alpha)``."""

    @property
    def successes_in_a_row(self) -> int:
        return max(1, math.ceil(self.threshold / self.on_success - 1e-12))


def readmission_test(p0: float, p1: float, false_readmission: float) -> Readmission:
    """CUSUM bringing a channel back once probes say it is healthy again.

    ``false_readmission`` is the accepted rate, per probe, of readmitting a
    channel that still fails at the outage rate ``p1`` (mean number of probes
    between false readmissions >= ``1/false_readmission``).
    """
    _check_rates(p0, p1)
    if not 0.0 < false_readmission < 1.0:
        raise ValueError("false_readmission must be in (0, 1)")
    return Readmission(
        on_success=math.log((1.0 - p0) / (1.0 - p1)),
        on_failure=math.log(p0 / p1),
        threshold=math.log(1.0 / false_readmission),
    )


def decay_factor(dt_s: float, half_life_s: float) -> float:
    """Weight left to evidence ``dt_s`` seconds old (1 for ``dt_s <= 0``)."""
    if dt_s <= 0.0:
        return 1.0
    return math.exp(-dt_s * math.log(2.0) / half_life_s)
