"""The generic detector on hand-built series: what it must flag, and what it must not."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.detect import DEFAULT_CONFIG, GenericDetector, Verdicts
from tapshield.detect.kernels import N_FSTATE, N_ISTATE, alert_rule, tail_learn, tail_p

STEP_US = 300_000_000  # 5 minutes
DAY = 288
T0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1_000_000)


def _ts(n: int) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * STEP_US


def _daily(days: int, seed: int = 0, noise: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    return 100 + 40 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, noise, t.size)


def _run(x: np.ndarray) -> Verdicts:
    return GenericDetector().update_many(_ts(x.size), x)


def _alerts(v: Verdicts) -> np.ndarray:
    return np.flatnonzero(v.alert)


def test_quiet_on_a_seasonal_series_without_anomaly() -> None:
    x = _daily(21)
    v = _run(x)
    # the stated rate: at most alpha false alerts per point (6 here)
    assert len(_alerts(v)) <= DEFAULT_CONFIG.alpha * x.size
    # a noise-free rhythm is perfectly predictable: not a single alert
    clean = 100 + 40 * np.sin(2 * np.pi * np.arange(21 * DAY) / DAY)
    assert len(_alerts(_run(clean))) == 0


def test_quiet_on_a_flat_line_and_alerts_when_it_moves() -> None:
    x = np.full(6 * DAY, 7.0)
    assert len(_alerts(_run(x))) == 0
    x[5 * DAY :] = 8.0
    hits = _alerts(_run(x))
    assert hits.size >= 1 and hits[0] == 5 * DAY, "the first changed point"


def _first_after(hits: np.ndarray, start: int) -> int:
    after = hits[hits >= start]
    assert after.size, "the anomaly was not flagged"
    return int(after[0])


def test_level_shift_is_flagged_at_its_start() -> None:
    x = _daily(14, seed=1)
    start = 10 * DAY + 100
    x[start:] += 60  # a sustained step of 30 noise sigmas
    hits = _alerts(_run(x))
    assert _first_after(hits, start) <= start + 2
    # false alerts before it stay within the stated rate
    assert hits[hits < start].size <= DEFAULT_CONFIG.alpha * start


def test_small_sustained_shift_is_flagged_within_the_pattern_window() -> None:
    """A shift of two noise sigmas: no single point is extreme, the shape of the last hours is.

    The pattern window (32 samples, 8 means of 4) fills with the new level
    within 32 samples, so the accumulated pattern evidence crosses the bar
    well inside it; the former 64-sample window took up to 18 samples here.
    """
    delays = []
    false_alerts = 0
    start = 9 * DAY + 60
    for seed in range(8):
        x = _daily(12, seed=20 + seed)
        x[start:] += 4.0  # noise sigma is 2.0
        hits = _alerts(_run(x))
        delays.append(_first_after(hits, start) - start)
        false_alerts += hits[hits < start].size
    # the stated rate over the 8 x 2652 points before the shift
    assert false_alerts <= DEFAULT_CONFIG.alpha * 8 * start
    assert max(delays) <= 16, delays  # within 80 minutes of 5-minute data
    assert float(np.median(delays)) <= 12, delays


def test_spike_is_flagged_immediately() -> None:
    x = _daily(10, seed=2)
    x[8 * DAY + 37] += 50
    hits = _alerts(_run(x))
    assert 8 * DAY + 37 in hits


def test_missing_daily_peak_is_a_pattern_anomaly() -> None:
    """A day whose peak never comes: every value is in range, only the rhythm is wrong."""
    x = _daily(14, seed=3)
    day = 11 * DAY
    x[day : day + DAY // 2] = 100 + np.random.default_rng(9).normal(0, 2.0, DAY // 2)
    v = _run(x)
    hits = _alerts(v)
    inside = hits[(hits >= day) & (hits < day + DAY // 2)]
    assert inside.size >= 1
    assert inside[0] < day + DAY // 4, "within the first quarter of the missing peak"


def test_silence_of_a_dead_channel_is_flagged() -> None:
    rng = np.random.default_rng(4)
    x = rng.poisson(50 + 30 * np.sin(2 * np.pi * np.arange(12 * DAY) / DAY)).astype(float)
    start = 9 * DAY + 150
    x[start:] = 0.0  # the channel dies: silence, not errors
    hits = _alerts(_run(x))
    assert _first_after(hits, start) <= start + 2
    assert hits[hits < start].size <= DEFAULT_CONFIG.alpha * start


def test_score_is_a_probability_and_alerts_follow_the_rule() -> None:
    x = _daily(10, seed=5)
    x[7 * DAY :] *= 1.8
    v = _run(x)
    assert np.all((v.score >= 0) & (v.score <= 1))
    assert np.array_equal(v.alert, alert_rule(v.p_value, DEFAULT_CONFIG.alpha,
                                              DEFAULT_CONFIG.refractory))
    gaps = np.diff(_alerts(v))
    assert np.all(gaps > DEFAULT_CONFIG.refractory), "one alert per episode"


def test_deterministic() -> None:
    x = _daily(8, seed=6)
    x[6 * DAY] += 30
    a, b = _run(x), _run(x)
    assert np.array_equal(a.p_value, b.p_value)
    assert np.array_equal(a.alert, b.alert)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 4 * DAY - 1), max_size=8, unique=True))
def test_results_do_not_depend_on_batching(cuts: list[int]) -> None:
    x = _daily(4, seed=7)
    x[3 * DAY + 5] -= 40
    x[3 * DAY + 50] = np.nan
    whole = _run(x)
    det = GenericDetector()
    bounds = [0, *sorted(cuts), x.size]
    parts = [det.update_many(_ts(x.size)[a:b], x[a:b]) for a, b in itertools.pairwise(bounds)]
    p = np.concatenate([q.p_value for q in parts])
    assert np.array_equal(p, whole.p_value, equal_nan=True)
    assert np.array_equal(np.concatenate([q.alert for q in parts]), whole.alert)


def test_point_by_point_matches_batch() -> None:
    x = _daily(3, seed=8)
    det = GenericDetector()
    one = [det.update(int(t), float(v)) for t, v in zip(_ts(x.size), x, strict=True)]
    batch = _run(x)
    assert np.array_equal(np.array([o.p_value for o in one]), batch.p_value)
    aware = GenericDetector().update(datetime(2026, 11, 2, tzinfo=UTC), 1.0)
    assert aware.score == 0.0 and not aware.alert and aware.driver is None


def test_scale_and_offset_do_not_matter() -> None:
    x = _daily(10, seed=9)
    x[8 * DAY + 10] += 25
    a = _run(x)
    b = _run(x * 1024.0 - 5e6)
    assert np.array_equal(a.alert, b.alert)
    np.testing.assert_allclose(a.p_value, b.p_value, rtol=1e-6)


def test_missing_values_are_neither_scored_nor_learned() -> None:
    x = _daily(3, seed=10)
    y = x.copy()
    y[500:520] = np.nan
    v = _run(y)
    assert np.isnan(v.p_value[500:520]).all() and not v.alert[500:520].any()
    # a gap in time (missing stretch) is handled by the time-of-day lookup
    keep = np.r_[0:400, 600:x.size]
    g = GenericDetector().update_many(_ts(x.size)[keep], x[keep])
    assert np.isfinite(g.p_value).all()


def test_repeated_and_earlier_timestamps_are_scored_as_just_after_the_previous_point() -> None:
    """Nothing is dropped: a row that does not advance in time is the next point."""
    x = _daily(3, seed=13)
    ts = _ts(x.size)
    bumped = ts.copy()
    bumped[400] = ts[399]  # repeats the previous timestamp
    bumped[500:512] = ts[488:500]  # the clock steps back an hour
    v = GenericDetector().update_many(bumped, x)
    assert v.p_value.shape == x.shape and np.isfinite(v.p_value).all()
    clean = _run(x)
    np.testing.assert_array_equal(v.p_value[:400], clean.p_value[:400])
    # the late rows raise nothing on a series without anomaly
    assert not v.alert[400:600].any()
    # fed one by one, the same answers (the clock is part of the streaming state)
    det = GenericDetector()
    one = [det.update(int(t), float(val)).p_value for t, val in zip(bumped, x, strict=True)]
    np.testing.assert_array_equal(np.array(one), v.p_value)


def test_bad_calls_are_refused() -> None:
    det = GenericDetector()
    with pytest.raises(ValueError, match="infinite"):
        det.update_many(np.array([20]), np.array([np.inf]))
    with pytest.raises(ValueError, match="same length"):
        det.update_many(np.array([30, 40]), np.array([1.0]))


def _calibrator(memory: int = 2000) -> tuple[np.ndarray, ...]:
    return (np.zeros(memory), np.zeros(memory), np.zeros(N_ISTATE, dtype=np.int64),
            np.zeros(N_FSTATE))


def test_tail_p_values_are_calibrated_on_exchangeable_data() -> None:
    rng = np.random.default_rng(11)
    ring, srt, ist, fst = _calibrator()
    ps = []
    for v in rng.exponential(1.0, 20_000):
        ps.append(tail_p(v, srt, ist, fst, 100))
        tail_learn(v, ring, srt, ist, fst, 100, 25, 0.02, 10, 0.5)
    p = np.array(ps[200:])
    for level in (0.2, 0.05, 0.01, 0.002):
        assert np.mean(p <= level) == pytest.approx(level, rel=0.35, abs=3e-4)
    assert np.all(np.sort(srt[: ist[0]]) == srt[: ist[0]]), "the window stays sorted"


def test_tail_extrapolates_beyond_the_largest_value_seen() -> None:
    rng = np.random.default_rng(12)
    ring, srt, ist, fst = _calibrator()
    for v in rng.normal(0, 1, 3000) ** 2:
        tail_learn(v, ring, srt, ist, fst, 100, 25, 0.02, 10, 0.5)
    top = srt[ist[0] - 1]
    assert tail_p(top * 0.5, srt, ist, fst, 100) > 1 / 2001
    assert tail_p(top * 3, srt, ist, fst, 100) < 1e-4
    assert tail_p(top * 10, srt, ist, fst, 100) < tail_p(top * 3, srt, ist, fst, 100)
