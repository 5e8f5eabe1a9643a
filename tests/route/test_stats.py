"""The thresholds come from stated error rates, and the rates hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapshield.route.stats import (
    elimination_cusum,
    failures_to_eliminate,
    readmission_test,
)


def test_about_three_failures_for_a_channel_that_almost_never_fails() -> None:
    assert failures_to_eliminate(0.002, 0.5, 1e6) == 3


def test_noisier_channels_need_more_evidence() -> None:
    assert failures_to_eliminate(0.02, 0.5, 1e6) == 5
    assert failures_to_eliminate(0.0001, 0.5, 1e6) == 2


@given(
    p0=st.floats(1e-5, 0.2),
    p1=st.floats(0.3, 0.99),
    arl=st.floats(10.0, 1e9),
)
def test_k_is_monotone_in_what_it_should_be(p0: float, p1: float, arl: float) -> None:
    k = failures_to_eliminate(p0, p1, arl)
    assert k >= 1
    assert failures_to_eliminate(p0, p1, arl * 10) >= k
    assert failures_to_eliminate(min(p0 * 2, 0.25), p1, arl) >= k
    # k consecutive failures do cross the threshold, k-1 do not
    c = elimination_cusum(p0, p1, arl)
    assert k * c.on_failure >= c.threshold - 1e-9
    assert (k - 1) * c.on_failure < c.threshold


def test_rejects_rates_that_make_no_sense() -> None:
    with pytest.raises(ValueError):
        failures_to_eliminate(0.5, 0.4, 1e6)
    with pytest.raises(ValueError):
        failures_to_eliminate(0.0, 0.5, 1e6)
    with pytest.raises(ValueError):
        readmission_test(0.01, 0.5, 1.5)


def _run_length(rng: np.random.Generator, p: float, p0: float, p1: float, arl: float,
                cap: int) -> int:
    c = elimination_cusum(p0, p1, arl)
    fails = rng.random(cap) < p
    s = 0.0
    for n, f in enumerate(fails, start=1):
        s = max(0.0, s + (c.on_failure if f else c.on_success))
        if s >= c.threshold:
            return n
    return cap


def test_false_elimination_rate_on_a_healthy_channel_is_within_the_stated_bound() -> None:
    # A stated ARL0 of 200 attempts on a channel failing 5 % of the time:
    # the mean run length to a (false) elimination must be at least 200.
    rng = np.random.default_rng(3)
    runs = [_run_length(rng, 0.05, 0.05, 0.5, 200.0, 20_000) for _ in range(300)]
    assert np.mean(runs) >= 200.0


def test_a_dead_channel_is_caught_in_the_predicted_number_of_attempts() -> None:
    rng = np.random.default_rng(4)
    k = failures_to_eliminate(0.002, 0.5, 1e6)
    runs = [_run_length(rng, 1.0, 0.002, 0.5, 1e6, 100) for _ in range(20)]
    assert runs == [k] * 20


def test_readmission_needs_a_run_of_good_probes() -> None:
    r = readmission_test(0.002, 0.5, 0.001)
    assert r.successes_in_a_row == math.ceil(math.log(1000) / math.log(0.998 / 0.5))
    assert r.successes_in_a_row == 10


def test_false_readmission_rate_of_a_channel_still_down_is_within_the_stated_bound() -> None:
    # alpha = 0.05: on a channel still failing half the time, at least 20
    # probes on average between (false) readmissions.
    r = readmission_test(0.002, 0.5, 0.05)
    rng = np.random.default_rng(5)
    lengths = []
    for _ in range(400):
        s, n = 0.0, 0
        while s < r.threshold and n < 100_000:
            n += 1
            ok = rng.random() >= 0.5
            s = max(0.0, s + (r.on_success if ok else r.on_failure))
        lengths.append(n)
    assert np.mean(lengths) >= 20.0
