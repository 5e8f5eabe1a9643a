"""Numenta Anomaly Benchmark (NAB v1.1) scoring, re-implemented from its published rules.

NAB (Lavin and Ahmad, 2015) scores a streaming detector on labelled *windows*
rather than points, because an operator cares about being told early, once, per
incident, and about not being woken for nothing:

* the first ``min(floor(0.15 n), 750)`` rows of a series are a probationary
  period (NAB's ``probationPercent * min(n, 5000)``): nothing there is scored;
* inside a window only the earliest detection counts, weighted by the scaled
  sigmoid of its relative position, ``2 sigmoid(-5 y) - 1`` with ``y = -1`` at
  the window's first row and ``y -> 0`` at its last: ``+A_tp`` for a detection
  at the start, about 0 at the end; a window with no detection costs ``-A_fn``;
* a detection outside every window costs ``A_fp`` times the same sigmoid of its
  distance after the end of the previous window, in units of that window's
  width (nearly free just after a window, the full ``-A_fp`` from three widths
  on, and ``-A_fp`` before the first window);
* the raw score ``S`` of a corpus is the sum over its files, normalised as
  ``100 (S - S_null) / (S_perfect - S_null)`` where the null detector never
  fires (``S_null = -A_fn`` per window) and the perfect one fires at the first
  row of every window (``S_perfect = A_tp`` per window).

NAB's leaderboard picks, per detector, the one threshold on its anomaly score
that maximises the corpus score (:func:`best_threshold`); a deployable detector
must instead live with a threshold fixed in advance (:func:`score_detections`).

Everything here is a pure function over NumPy arrays of one series' rows, so the
scorer can be checked on hand-made cases and reused on any labelled series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Row label for rows outside every window.
OUTSIDE = -1
#: Row label for rows in the probationary period (never scored).
PROBATIONARY = -2

PROBATION_FRACTION = 0.15
#: NAB caps the probationary period at 15% of 5000 rows.
PROBATION_CAP_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Profile:
    """An application profile: weights of a true positive, a false negative, a false positive."""

    name: str
    tp: float
    fn: float
    fp: float


STANDARD = Profile("standard", tp=1.0, fn=1.0, fp=0.11)
REWARD_LOW_FP = Profile("reward_low_FP_rate", tp=1.0, fn=1.0, fp=0.22)
REWARD_LOW_FN = Profile("reward_low_FN_rate", tp=1.0, fn=2.0, fp=0.11)
PROFILES: tuple[Profile, ...] = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def probationary_length(n_rows: int) -> int:
    """Rows at the start of a series that NAB never scores."""
    cap = PROBATION_FRACTION * PROBATION_CAP_ROWS
    return int(min(math.floor(PROBATION_FRACTION * n_rows), cap))


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """NAB's ``2 sigmoid(-5 y) - 1``, clamped to ``-1`` beyond three window widths."""
    y = np.asarray(position, dtype=np.float64)
    val = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, val)


_MAX_TP = float(scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True, slots=True)
class Labelled:
    """One series' rows prepared for scoring under one profile.

    ``weight[i]`` is what a detection at row ``i`` would be worth (positive in a
    window, negative outside); ``label[i]`` is the window index, :data:`OUTSIDE`
    or :data:`PROBATIONARY`.
    """

    weight: FloatArray
    label: IntArray
    n_windows: int
    profile: Profile


def window_rows(timestamps: npt.NDArray[np.datetime64],
                windows: Sequence[tuple[np.datetime64, np.datetime64]]) -> list[tuple[int, int]]:
    """Row indices ``(first, last)`` of each window given by its first and last timestamps.

    NAB windows start and end on timestamps present in the series; anything else
    is a labelling error and raises :class:`ValueError` naming the timestamp.
    """
    ts = np.asarray(timestamps)
    out: list[tuple[int, int]] = []
    for start, end in windows:
        idx = []
        for t in (start, end):
            hit = np.flatnonzero(ts == np.asarray(t, dtype="datetime64[us]"))
            if hit.size == 0:
                raise ValueError(f"window bound {t} is not a timestamp of the series")
            idx.append(int(hit[0]))
        if idx[1] < idx[0]:
            raise ValueError(f"window ({start}, {end}) ends before it starts")
        out.append((idx[0], idx[1]))
    return out


def label_rows(n_rows: int, windows: Sequence[tuple[int, int]], profile: Profile) -> Labelled:
    """Per-row detection weights and window labels (NAB's ``calcSweepScore``)."""
    weight = np.empty(n_rows, dtype=np.float64)
    label = np.full(n_rows, OUTSIDE, dtype=np.int64)
    rows = np.arange(n_rows, dtype=np.float64)
    ordered = sorted(windows)
    # Before the first window: every detection is a full false positive.
    first = ordered[0][0] if ordered else n_rows
    weight[:first] = -1.0 * profile.fp
    for k, (a, b) in enumerate(ordered):
        if a < (ordered[k - 1][1] + 1 if k else 0):
            raise ValueError(f"windows overlap at row {a}")
        width = float(b - a + 1)
        pos = -(b - rows[a : b + 1] + 1.0) / width
        weight[a : b + 1] = scaled_sigmoid(pos) * profile.tp / _MAX_TP
        label[a : b + 1] = k
        stop = ordered[k + 1][0] if k + 1 < len(ordered) else n_rows
        if b + 1 < stop:
            # NAB divides by (width - 1); a one-row window would divide by zero there too.
            past = np.abs(b - rows[b + 1 : stop]) / (width - 1.0) if width > 1 else np.full(
                stop - b - 1, np.inf
            )
            weight[b + 1 : stop] = scaled_sigmoid(past) * profile.fp
    label[: probationary_length(n_rows)] = PROBATIONARY
    return Labelled(weight=weight, label=label, n_windows=len(ordered), profile=profile)


@dataclass(frozen=True, slots=True)
class FileScore:
    """Raw NAB score of one series at one decision rule, with its confusion counts."""

    score: float
    tp: int  # windows with at least one detection
    fn: int  # windows with none
    fp: int  # detections outside every window (after probation)


def score_detections(detected: BoolArray, labelled: Labelled) -> FileScore:
    """Raw score of a fixed set of detections (e.g. a detector's ``alert`` column)."""
    det = np.asarray(detected, dtype=bool)
    if det.shape != labelled.weight.shape:
        raise ValueError("detections and labelled rows differ in length")
    scored = det & (labelled.label != PROBATIONARY)
    outside = scored & (labelled.label == OUTSIDE)
    fp_score = float(labelled.weight[outside].sum())
    total = fp_score
    tp = 0
    scorable = np.unique(labelled.label[labelled.label >= 0])
    for k in scorable:
        hits = scored & (labelled.label == k)
        if hits.any():
            tp += 1
            # weights fall through a window, so the best hit is the first one.
            total += max(-labelled.profile.fn, float(labelled.weight[hits].max()))
        else:
            total -= labelled.profile.fn
    return FileScore(score=total, tp=tp, fn=int(scorable.size) - tp, fp=int(outside.sum()))


def null_score(n_windows: int, profile: Profile) -> float:
    return -profile.fn * n_windows


def perfect_score(n_windows: int, profile: Profile) -> float:
    return profile.tp * n_windows


def normalise(raw: float, n_windows: int, profile: Profile) -> float:
    """NAB's normalised score: 100 for the perfect detector, 0 for the null detector."""
    lo = null_score(n_windows, profile)
    hi = perfect_score(n_windows, profile)
    return 100.0 * (raw - lo) / (hi - lo)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Corpus raw score for every candidate threshold (detect when ``score >= threshold``)."""

    thresholds: FloatArray  # descending
    raw: FloatArray

    def best(self) -> tuple[float, float]:
        """``(threshold, raw score)`` of the best threshold; the highest on ties, like NAB."""
        i = int(np.argmax(self.raw))
        return float(self.thresholds[i]), float(self.raw[i])


def sweep_thresholds(series: Sequence[tuple[FloatArray, Labelled]]) -> Sweep:
    """Corpus score at every distinct anomaly-score threshold (NAB's ``calcScoreByThreshold``).

    Rows are visited from the highest score down; at each new threshold the
    corpus score is the sum of false-positive weights of the rows above it plus,
    per window, the best weight among its rows above it (or ``-A_fn``). Window
    labels are made unique across series so the windows of different files
    never merge.
    """
    scores_l, weight_l, label_l = [], [], []
    offset = 0
    n_windows = 0
    fn = series[0][1].profile.fn if series else 1.0
    for scores, lab in series:
        keep = lab.label != PROBATIONARY
        s = np.asarray(scores, dtype=np.float64)[keep]
        if np.isnan(s).any():
            raise ValueError("anomaly scores contain NaN")
        scores_l.append(s)
        weight_l.append(lab.weight[keep])
        lb = lab.label[keep].copy()
        lb[lb >= 0] += offset
        label_l.append(lb)
        n_scorable = int(np.unique(lb[lb >= 0]).size)
        n_windows += n_scorable
        offset += lab.n_windows
    if not scores_l:
        return Sweep(np.array([1.1]), np.array([0.0]))
    scores = np.concatenate(scores_l)
    weight = np.concatenate(weight_l)
    label = np.concatenate(label_l)
    order = np.argsort(-scores, kind="stable")
    scores, weight, label = scores[order], weight[order], label[order]

    delta = np.where(label == OUTSIDE, weight, 0.0)
    in_win = label >= 0
    if in_win.any():
        idx = np.flatnonzero(in_win)
        lw = label[idx]
        ww = weight[idx]
        # running max per window, in visiting order
        o = np.argsort(lw, kind="stable")
        lw_s, ww_s = lw[o], ww[o]
        starts = np.r_[0, np.flatnonzero(np.diff(lw_s)) + 1]
        run = np.empty_like(ww_s)
        for a, b in zip(starts, np.r_[starts[1:], lw_s.size], strict=True):
            run[a:b] = np.maximum.accumulate(np.maximum(ww_s[a:b], -fn))
        prev = np.empty_like(run)
        prev[:] = -fn
        for a, b in zip(starts, np.r_[starts[1:], lw_s.size], strict=True):
            prev[a + 1 : b] = run[a : b - 1]
        gain = np.empty_like(run)
        gain[o] = run - prev
        delta[idx] = gain
    total = -fn * n_windows + np.cumsum(delta)
    # the score at threshold t counts every row with score >= t: take the last row of each tie
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    thresholds = np.r_[1.1 if scores[0] < 1.1 else np.inf, scores[last]]
    raw = np.r_[-fn * n_windows, total[last]]
    return Sweep(thresholds=thresholds, raw=raw)


def best_threshold(series: Sequence[tuple[FloatArray, Labelled]]) -> tuple[float, float]:
    """NAB's leaderboard protocol: the one threshold that maximises the corpus score."""
    return sweep_thresholds(series).best()
