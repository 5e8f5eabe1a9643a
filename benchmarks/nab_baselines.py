"""Published NAB baselines, re-implemented to be measured in the same run as tapshield.

* **Windowed Gaussian** (NAB's ``windowedGaussian`` detector): the mean and
  standard deviation of the last 6400 values, refreshed every 100 values once
  the window is full; the score of a value is ``1 - Q(|z|)``, Q the Gaussian
  tail probability. Published NAB v1.1 scores 39.6 / 20.9 / 47.4.
* **Rolling z-score**: the textbook operations rule, ``|x - mean| / std`` over
  the previous 288 values (a day of 5-minute data), alert at ``|z| > 3``.
* **Rolling robust z-score**: ``|x - median| / (1.4826 MAD)`` over the previous
  ``window`` values (the operations textbook's outlier rule, robust to the
  outliers themselves), alert at ``|z| > k``.
* **EWMA**: exponentially weighted mean and variance (weight ``lam`` on the
  newest value), ``|x - mean| / sd`` against the values before, alert at ``> k``.
* **Random**: uniform scores (NAB's ``random`` detector), several seeds.
* **Null**: never fires (0 by definition of the normalised score).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit


@njit(cache=True)
def windowed_gaussian(x: npt.NDArray[np.float64], window: int = 6400,
                      step: int = 100) -> npt.NDArray[np.float64]:
    n = len(x)
    out = np.zeros(n)
    buf = np.empty(window)
    cnt = 0
    pending = np.empty(step)
    npend = 0
    mean = 0.0
    std = 1.0
    for i in range(n):
        v = x[i]
        if cnt > 0:
            z = abs(v - mean) / std
            out[i] = 1.0 - 0.5 * math.erfc(z / 1.4142)
        if cnt < window:
            buf[cnt] = v
            cnt += 1
            mean = buf[:cnt].mean()
            sd = buf[:cnt].std()
            std = sd if sd > 0 else 1e-6
        else:
            pending[npend] = v
            npend += 1
            if npend == step:
                buf[: window - step] = buf[step:].copy()
                buf[window - step :] = pending
                npend = 0
                mean = buf.mean()
                sd = buf.std()
                std = sd if sd > 0 else 1e-6
    return out


@njit(cache=True)
def rolling_z(x: npt.NDArray[np.float64], window: int = 288) -> npt.NDArray[np.float64]:
    """``|z|`` of each value against the previous ``window`` values (0 before two values)."""
    n = len(x)
    out = np.zeros(n)
    for i in range(2, n):
        w = x[max(0, i - window) : i]
        mean = w.mean()
        sd = w.std()
        if sd > 0:
            out[i] = abs(x[i] - mean) / sd
        elif x[i] != mean:
            out[i] = np.inf
    return out


@njit(cache=True)
def rolling_robust_z(x: npt.NDArray[np.float64], window: int = 288) -> npt.NDArray[np.float64]:
    """``|x - median| / (1.4826 MAD)`` of each value against the previous ``window`` values.

    0 before ten values; ``inf`` when the window has no spread (MAD 0) and the value
    differs from its median; NaN values are skipped (scored 0, not learned).
    """
    n = len(x)
    out = np.zeros(n)
    buf = np.empty(window)
    cnt = 0
    pos = 0
    for i in range(n):
        v = x[i]
        if math.isnan(v):
            continue
        if cnt >= 10:
            w = buf[:cnt]
            med = np.median(w)
            mad = 1.4826 * np.median(np.abs(w - med))
            if mad > 0:
                out[i] = abs(v - med) / mad
            elif v != med:
                out[i] = np.inf
        buf[pos] = v
        pos = (pos + 1) % window
        cnt = min(cnt + 1, window)
    return out


@njit(cache=True)
def ewma_z(x: npt.NDArray[np.float64], lam: float = 0.1) -> npt.NDArray[np.float64]:
    """``|x - m| / s`` with ``m``, ``s**2`` the EWMA mean and variance of the values before."""
    n = len(x)
    out = np.zeros(n)
    m = 0.0
    var = 0.0
    cnt = 0
    for i in range(n):
        v = x[i]
        if math.isnan(v):
            continue
        if cnt >= 10:
            sd = math.sqrt(var)
            if sd > 0:
                out[i] = abs(v - m) / sd
            elif v != m:
                out[i] = np.inf
        if cnt == 0:
            m = v
        else:
            d = v - m
            m += lam * d
            var = (1.0 - lam) * (var + lam * d * d)
        cnt += 1
    return out


def random_scores(n: int, seed: int) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).random(n)
