"""Quality measures a fraud-strategy team reads: precision-recall and recall at a budget.

Area under the precision-recall curve is computed as average precision (the
step-wise sum LightGBM, scikit-learn and the handbooks report); recall at a
false-decline rate is the share of frauds scored strictly above the score that
declines that share of genuine payments.
"""

from __future__ import annotations

import math

import numpy as np


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision; ties as one step)."""
    y = np.asarray(y, np.int64)
    s = np.asarray(score, np.float64)
    pos = int(y.sum())
    if pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    k = np.arange(1, ys.size + 1)
    last = np.r_[ss[1:] != ss[:-1], True]  # the end of each tie group
    tp_g, k_g = tp[last], k[last]
    prec = tp_g / k_g
    rec = tp_g / pos
    drec = np.diff(np.r_[0.0, rec])
    return float(np.sum(prec * drec))


def threshold_at(genuine_scores: np.ndarray, rate: float) -> float:
    """The lowest score ``t`` such that at most ``rate`` of genuine scores are ``> t``."""
    g = np.sort(np.asarray(genuine_scores, np.float64))[::-1]
    if g.size == 0:
        return float("inf")
    k = math.floor(rate * g.size + 1e-9)
    if k >= g.size:
        return float("-inf")
    return float(g[k])


def recall_at(y: np.ndarray, score: np.ndarray, false_decline_rate: float) -> float:
    """Share of frauds caught while at most ``false_decline_rate`` of genuine is declined."""
    y = np.asarray(y)
    s = np.asarray(score, np.float64)
    if (y == 1).sum() == 0:
        return float("nan")
    t = threshold_at(s[y == 0], false_decline_rate)
    return float((s[y == 1] > t).mean())


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a rate ``k / n`` (a budget measured on few rows is uncertain)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, (c - h) / d), min(1.0, (c + h) / d))
