"""NAB scoring on hand-made cases whose scores are known from the rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.detect import nab

N = 2000
WINDOWS = [(800, 899), (1500, 1599)]


def _labelled(profile: nab.Profile = nab.STANDARD, n: int = N,
              windows: list[tuple[int, int]] | None = None) -> nab.Labelled:
    return nab.label_rows(n, WINDOWS if windows is None else windows, profile)


def _norm(detected: np.ndarray, profile: nab.Profile = nab.STANDARD) -> float:
    res = nab.score_detections(detected, _labelled(profile))
    return nab.normalise(res.score, len(WINDOWS), profile)


def _at(*rows: int) -> np.ndarray:
    d = np.zeros(N, dtype=bool)
    d[list(rows)] = True
    return d


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probationary_length(4032) == 604
    assert nab.probationary_length(1000) == 150
    assert nab.probationary_length(22695) == 750


@pytest.mark.parametrize("profile", nab.PROFILES, ids=lambda p: p.name)
def test_perfect_null_and_window_start_detectors(profile: nab.Profile) -> None:
    assert _norm(_at(800, 1500), profile) == pytest.approx(100.0)
    assert _norm(np.zeros(N, dtype=bool), profile) == pytest.approx(0.0)
    # firing a little after each window start is still close to perfect
    assert 95.0 < _norm(_at(805, 1505), profile) < 100.0


def test_only_the_first_detection_in_a_window_counts() -> None:
    once = _norm(_at(800, 1500))
    assert _norm(_at(800, 801, 850, 899, 1500, 1550)) == pytest.approx(once)
    # a late first detection earns less, and a later second one does not help
    late = _norm(_at(890, 1500))
    assert late < once
    assert _norm(_at(890, 895, 1500)) == pytest.approx(late)


def test_window_weight_follows_the_scaled_sigmoid() -> None:
    lab = _labelled()
    # first row of a window: the full TP weight; last row: 2 sigmoid(-5 * -1/100) - 1 scaled
    assert lab.weight[800] == pytest.approx(1.0)
    end = (2 / (1 + math.exp(5 * (-1 / 100))) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert lab.weight[899] == pytest.approx(end)
    # the middle of the window (the labelled point) earns about 0.86
    assert lab.weight[850] == pytest.approx(0.86, abs=0.01)
    assert np.all(np.diff(lab.weight[800:900]) < 0), "earlier is better"


def test_false_positive_weights() -> None:
    lab = _labelled()
    # before the first window: the full FP cost
    assert lab.weight[700] == pytest.approx(-0.11)
    # just after a window: nearly free, growing with the distance, full from 3 widths on
    assert -0.01 < lab.weight[900] < 0.0
    assert lab.weight[950] < lab.weight[910] < lab.weight[900]
    assert lab.weight[899 + 3 * 99 + 1] == pytest.approx(-0.11)
    res = nab.score_detections(_at(700), lab)
    assert res.fp == 1 and res.tp == 0 and res.fn == 2
    assert res.score == pytest.approx(-0.11 - 2.0)


def test_probationary_detections_are_ignored() -> None:
    assert _norm(_at(10, 200, 299)) == pytest.approx(0.0)  # 300 rows of probation
    windows = [(250, 349), (1500, 1599)]
    lab = _labelled(windows=windows)
    # rows of a window inside the probation are not scored; later rows of it are
    early = np.zeros(N, dtype=bool)
    early[260] = True
    assert nab.score_detections(early, lab).tp == 0
    early[320] = True
    assert nab.score_detections(early, lab).tp == 1


def test_profiles_change_the_costs() -> None:
    det = _at(100, 200, 800)  # 2 FP (one in probation: ignored), one TP, one miss
    std = nab.score_detections(det, _labelled(nab.STANDARD)).score
    low_fp = nab.score_detections(det, _labelled(nab.REWARD_LOW_FP)).score
    low_fn = nab.score_detections(det, _labelled(nab.REWARD_LOW_FN)).score
    # 100 and 200 are both in the probation (300 rows): only the miss differs
    assert std == pytest.approx(1.0 - 1.0)
    assert low_fp == pytest.approx(std)
    assert low_fn == pytest.approx(1.0 - 2.0)
    det = _at(400, 800)
    assert nab.score_detections(det, _labelled(nab.REWARD_LOW_FP)).score == pytest.approx(
        -0.22 + 1.0 - 1.0)


def test_window_rows_from_timestamps() -> None:
    ts = np.arange("2024-01-01T00:00", "2024-01-02T00:00", np.timedelta64(5, "m"),
                   dtype="datetime64[us]")
    rows = nab.window_rows(ts, [(ts[10], ts[20])])
    assert rows == [(10, 20)]
    with pytest.raises(ValueError, match="not a timestamp of the series"):
        nab.window_rows(ts, [(np.datetime64("2030-01-01T00:00", "us"), ts[20])])


def _brute_force(scores: list[np.ndarray], labs: list[nab.Labelled], thr: float) -> float:
    return sum(nab.score_detections(s >= thr, lab).score for s, lab in zip(scores, labs,
                                                                            strict=True))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), levels=st.integers(2, 30))
def test_threshold_sweep_equals_scoring_each_threshold(seed: int, levels: int) -> None:
    """The vectorised sweep gives, at every threshold, the score of thresholding by hand."""
    rng = np.random.default_rng(seed)
    scores, labs = [], []
    for n, wins in ((600, [(200, 259), (400, 459)]), (500, [(300, 349)]), (400, [])):
        scores.append(rng.integers(0, levels, n) / levels)  # many ties
        labs.append(nab.label_rows(n, wins, nab.STANDARD))
    sweep = nab.sweep_thresholds(list(zip(scores, labs, strict=True)))
    for thr, raw in zip(sweep.thresholds, sweep.raw, strict=True):
        assert raw == pytest.approx(_brute_force(scores, labs, thr))
    _, best_raw = sweep.best()
    candidates = [*np.unique(np.concatenate(scores)).tolist(), 1.1]
    assert best_raw == pytest.approx(max(_brute_force(scores, labs, t) for t in candidates))
