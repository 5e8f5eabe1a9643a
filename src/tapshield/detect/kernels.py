"""The compiled kernels of the generic detector: tail p-values and the per-point step.

They live in one module on purpose: Numba's on-disk cache is invalidated by
changes to the file that defines a function, not to the files of the functions
it calls, so a kernel split across modules could run stale code after an edit.

**Tail p-values.** Tail probabilities of a feature against its own recent past (compiled kernels).

Every feature the generic detector computes (a seasonal residual, a pattern
distance, ...) lives on its own scale: CPU percent, bytes, milliseconds, a
distance between windows. Rather than one threshold per feature and per metric,
each feature value is turned into a *p-value*: the probability, under the
feature's own recent history, of a value at least this large. That makes one
threshold meaningful for every metric.

Two regimes:

* inside the observed range the p-value is the conformal rank
  ``(#{past >= v} + 1) / (n + 1)``: exact under exchangeability, no
  distributional assumption, robust to heavy tails, ties and flat lines;
* beyond the top ``k = max(10, 2% n)`` values the tail is extrapolated with a
  generalised Pareto distribution (the peaks-over-threshold result of extreme
  value theory, as in Siffer et al., "Anomaly detection in streams with extreme
  value theory", KDD 2017), fitted by probability-weighted moments (Hosking and
  Wallis, 1987). The shape is clamped to ``[0, 0.5]``: never a bounded tail
  from a finite sample (a bounded fit would call any value past its endpoint
  impossible), never an infinite-variance one. The extrapolated value never
  goes above the empirical one (``p`` stays monotone) nor below the share of
  past values that were at least as large.

The history is the last ``memory`` values (a sliding window kept sorted, so
ranks are exact and the cost per point is one binary search and one
``memmove``); the tail fit is refreshed every ``refit`` values.

State layout (so a detector can hold several calibrators in 2-D arrays):
``ring[memory]`` values in arrival order, ``srt[memory]`` the same sorted,
``ist[4]`` = (count, next ring slot, values since refit, k),
``fst[3]`` = (u, sigma, xi).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# indices into the integer / float state of one calibrator
I_COUNT, I_POS, I_SINCE, I_K = 0, 1, 2, 3
F_U, F_SIGMA, F_XI = 0, 1, 2
N_ISTATE, N_FSTATE = 4, 3

#: the smallest p-value reported (keeps ``-log p`` finite)
P_FLOOR = 1e-300


@njit(cache=True, nogil=True)
def tail_p(v: float, srt: np.ndarray, ist: np.ndarray, fst: np.ndarray,
           min_count: int) -> float:
    """P-value of ``v`` against the calibrator's history; 1 while it knows too little."""
    n = ist[I_COUNT]
    if n < min_count or math.isnan(v):
        return 1.0
    lo = np.searchsorted(srt[:n], v)  # first index with srt >= v
    c = n - lo
    pe = (c + 1.0) / (n + 1.0)
    k = ist[I_K]
    u = fst[F_U]
    if v > u and c < k:
        sigma = fst[F_SIGMA]
        xi = fst[F_XI]
        if sigma > 0.0:
            y = (v - u) / sigma
            ph = (k / n) * (math.exp(-y) if xi < 1e-9 else (1.0 + xi * y) ** (-1.0 / xi))
        else:
            # every top value tied: anything above them has never been seen
            ph = 0.0
        p = min(pe, max(ph, c / (n + 1.0)))
        return float(max(p, P_FLOOR))
    return float(pe)


@njit(cache=True, nogil=True)
def _refit(srt: np.ndarray, ist: np.ndarray, fst: np.ndarray,
           tail_fraction: float, tail_min: int, xi_max: float) -> None:
    n = ist[I_COUNT]
    k = max(tail_min, int(tail_fraction * n))
    k = min(k, n - 1)
    ist[I_K] = k
    if k < 2:
        fst[F_U] = np.inf
        return
    u = srt[n - k - 1]
    fst[F_U] = u
    a0 = 0.0
    a1 = 0.0
    for i in range(k):
        e = srt[n - k + i] - u
        a0 += e
        a1 += e * (1.0 - (i + 1 - 0.35) / k)
    a0 /= k
    a1 /= k
    if a0 <= 0.0:
        fst[F_SIGMA] = 0.0
        fst[F_XI] = 0.0
        return
    d = a0 - 2.0 * a1
    xi = 2.0 - a0 / d if d > 0.0 else xi_max
    # one standard error above the estimate (PWM at xi = 0: sqrt(4 / (3 k))):
    # a tail fitted on few exceedances is taken as heavier, so its p-values stay honest
    xi = min(max(xi, 0.0) + math.sqrt(4.0 / (3.0 * k)), xi_max)
    fst[F_XI] = xi
    fst[F_SIGMA] = a0 * (1.0 - xi)


@njit(cache=True, nogil=True)
def tail_learn(v: float, ring: np.ndarray, srt: np.ndarray, ist: np.ndarray, fst: np.ndarray,
               min_count: int, refit: int, tail_fraction: float, tail_min: int,
               xi_max: float) -> None:
    """Add ``v`` to the history (evicting the oldest value once full)."""
    if math.isnan(v):
        return
    memory = ring.shape[0]
    n = ist[I_COUNT]
    pos = ist[I_POS]
    if n == memory:
        old = ring[pos]
        j = np.searchsorted(srt[:n], old)
        # remove srt[j] (== old) by shifting the tail left
        srt[j : n - 1] = srt[j + 1 : n].copy()
        n -= 1
    ring[pos] = v
    ist[I_POS] = (pos + 1) % memory
    i = np.searchsorted(srt[:n], v)
    srt[i + 1 : n + 1] = srt[i:n].copy()
    srt[i] = v
    n += 1
    ist[I_COUNT] = n
    ist[I_SINCE] += 1
    if n >= min_count and (ist[I_SINCE] >= refit or ist[I_K] == 0):
        ist[I_SINCE] = 0
        _refit(srt, ist, fst, tail_fraction, tail_min, xi_max)


#: features per point: seasonal, pattern, pattern accumulated, level (cold start)
N_FEATURES = 4
STEPS = 16  # recent sampling intervals kept to judge "within one sample"
_RESOLUTION = 1e-9  # relative differences below this are rounding, not signal
_RECENT = 21  # samples whose median is the expectation before a day of history exists


@njit(cache=True, nogil=True)
def _find_ge(ring_ts: np.ndarray, lo: int, hi: int, target: int) -> int:
    """First logical index in ``[lo, hi)`` whose timestamp is ``>= target`` (``hi`` if none)."""
    buf = ring_ts.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if ring_ts[mid % buf] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _resolved(diff: float, magnitude: float) -> float:
    """``diff``, or 0 when it is below float resolution of the values compared.

    Without this, rounding noise (1e-14 of a perfectly periodic or flat metric)
    would be ranked like real deviations and its records would alert.
    """
    return 0.0 if diff <= _RESOLUTION * magnitude else diff


@njit(cache=True, nogil=True)
def process(ci: np.ndarray, cf: np.ndarray,
             ring_ts: np.ndarray, ring_x: np.ndarray, ring_w: np.ndarray,
             steps: np.ndarray, acc: np.ndarray, ctr: np.ndarray,
             cal_ring: np.ndarray, cal_srt: np.ndarray, cal_ist: np.ndarray, cal_fst: np.ndarray,
             ts: np.ndarray, xs: np.ndarray,
             out_p: np.ndarray, out_alert: np.ndarray, out_driver: np.ndarray) -> None:
    refractory = ci[0]
    season_days = ci[1]
    blocks = ci[2]
    block = ci[3]
    memory = ci[4]
    tol = ci[5]
    n_acc = ci[6]
    cmin = ci[7]
    tmin = ci[8]
    refit = ci[9]
    alpha = cf[0]
    tfrac = cf[1]
    ximax = cf[2]
    wlen = blocks * block
    buf = ring_ts.shape[0]
    wbuf = ring_w.shape[0]
    season = np.empty(3 * season_days)
    win = np.empty(blocks)
    feats = np.empty(4)
    recent = np.empty(_RECENT)

    for r in range(ts.shape[0]):
        tau = ts[r]
        x = xs[r]
        out_alert[r] = False
        out_driver[r] = -1
        if math.isnan(x):  # missing value: neither scored nor learned
            out_p[r] = np.nan
            continue
        t = ctr[0]
        oldest = max(0, t - buf + 1)
        if t > 0 and tau <= ctr[2]:
            # a repeated or earlier timestamp (a joined export, a clock stepping back):
            # the point is still scored and learned, as arriving just after the previous
            # one, so the detector's clock never runs backwards and no row is lost; it
            # says nothing about the sampling step, so the last step is repeated
            tau = ctr[2] + 1
            steps[t % STEPS] = steps[(t - 1) % STEPS]
        elif t > 0:
            steps[t % STEPS] = tau - ring_ts[(t - 1) % buf]
        ring_ts[t % buf] = tau
        ring_x[t % buf] = x

        # 1. seasonal residual against the same time of day on previous days
        if t >= STEPS:
            step = float(np.median(steps.astype(np.float64)))
        elif t > 0:
            step = float(np.median(steps[1 : t + 1].astype(np.float64)))
        else:
            step = 0.0
        m = 0
        for d in range(1, season_days + 1):
            target = tau - d * 86_400_000_000
            if t == 0 or target < ring_ts[oldest % buf] - step:
                break
            j = _find_ge(ring_ts, oldest, t, target)
            best_j = -1
            if j < t and ring_ts[j % buf] - target <= step:
                best_j = j
            if j - 1 >= oldest and target - ring_ts[(j - 1) % buf] <= step and (
                best_j < 0 or target - ring_ts[(j - 1) % buf] < ring_ts[j % buf] - target
            ):
                best_j = j - 1
            if best_j < 0:
                continue
            for dj in range(-1, 2):
                jj = best_j + dj
                if oldest <= jj < t:
                    season[m] = ring_x[jj % buf]
                    m += 1
        feats[0] = np.nan
        if m > 0:
            med = np.median(season[:m])
            feats[0] = _resolved(abs(x - med), abs(x) + abs(med))

        # 2. pattern novelty at this time of day
        feats[1] = np.nan
        if t >= wlen - 1:
            for b in range(blocks):
                s = 0.0
                end = t - (blocks - 1 - b) * block
                for k in range(end - block + 1, end + 1):
                    s += ring_x[k % buf]
                win[b] = s / block
            ring_w[t % wbuf, :] = win
            best = np.inf
            lo = max(wlen - 1, t - memory, oldest)
            for j in range(t - wlen, lo - 1, -1):
                dtau = (tau - ring_ts[j % buf]) % 86_400_000_000
                if min(dtau, 86_400_000_000 - dtau) > tol:
                    continue
                acc_d = 0.0
                for b in range(blocks):
                    diff = win[b] - ring_w[j % wbuf, b]
                    acc_d += diff * diff
                    if acc_d >= best:
                        break
                best = min(best, acc_d)
            if best < np.inf:
                norm = 0.0
                for b in range(blocks):
                    norm += win[b] * win[b]
                feats[1] = _resolved(math.sqrt(best), math.sqrt(norm))

        p0 = tail_p(feats[0], cal_srt[0], cal_ist[0], cal_fst[0], cmin)
        p1 = tail_p(feats[1], cal_srt[1], cal_ist[1], cal_fst[1], cmin)

        # 3. pattern evidence accumulated over the last n_acc samples
        acc[t % n_acc] = -math.log(p1)
        feats[2] = np.nan
        if cal_ist[1, 0] >= cmin + n_acc:  # a full window of calibrated pattern p-values
            s = 0.0
            for k in range(n_acc):
                s += acc[k]
            feats[2] = s
        # a moving sum of n_acc values holds about 1/n_acc as many independent ones:
        # it waits for as many independent values as the other features
        p2 = tail_p(feats[2], cal_srt[2], cal_ist[2], cal_fst[2], cmin)

        # 4. cold start: distance from the recent median, until a day of history exists
        feats[3] = np.nan
        nr = min(t, _RECENT)
        if nr > 0:
            for k in range(nr):
                recent[k] = ring_x[(t - 1 - k) % buf]
            med = np.median(recent[:nr])
            feats[3] = _resolved(abs(x - med), abs(x) + abs(med))
        p3 = tail_p(feats[3], cal_srt[3], cal_ist[3], cal_fst[3], cmin)

        for f in range(N_FEATURES):
            tail_learn(feats[f], cal_ring[f], cal_srt[f], cal_ist[f], cal_fst[f],
                       cmin, refit, tfrac, tmin, ximax)

        if not math.isnan(feats[0]) and cal_ist[0, 0] > cmin:
            # the daily features are calibrated: the cold-start one steps aside
            pmin = p0
            drv = 0
            if p1 < pmin:
                pmin = p1
                drv = 1
            if p2 < pmin:
                pmin = p2
                drv = 2
            # harmonic mean p-value of the three (see the detector's docstring)
            p = min(1.0, 3.0 / (1.0 / p0 + 1.0 / p1 + 1.0 / p2))
        else:
            drv = 3
            p = p3
        out_p[r] = p
        out_driver[r] = drv if p < 1.0 else -1
        if p < alpha and t - ctr[1] > refractory:
            out_alert[r] = True
            ctr[1] = t
        ctr[0] = t + 1
        ctr[2] = tau


@njit(cache=True, nogil=True)
def alert_rule(p: np.ndarray, alpha: float, refractory: int) -> np.ndarray:
    """The detector's decision over a p-value sequence: ``p < alpha``, one alert per episode.

    The same rule the streaming kernel applies point by point (``NaN`` p-values
    are missing points and do not count as samples); exposed so a benchmark can
    re-apply it at other false-alarm rates without re-running the detector.
    """
    out = np.zeros(p.shape[0], dtype=np.bool_)
    last = -(10**12)
    t = 0
    for i in range(p.shape[0]):
        if math.isnan(p[i]):
            continue
        if p[i] < alpha and t - last > refractory:
            out[i] = True
            last = t
        t += 1
    return out
