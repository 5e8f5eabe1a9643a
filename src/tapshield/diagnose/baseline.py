"""What each leaf's failure ratio should have been, and how much it wanders.

A localiser is only as good as its idea of *normal*. Real failure counts are
sparse (most combinations see a handful of attempts a minute) and
over-dispersed (a big slice's ratio moves minute to minute far more than the
binomial law allows). Three estimates, all from the history buckets alone:

1. **Main effects.** The ratio each leaf would have if every dimension value
   acted on its own: ``p_global * prod_d a[d, value]``, fitted by iterative
   proportional fitting so each value's expected failures match its observed
   ones. Each factor carries a weak Gamma prior worth :data:`FACTOR_PRIOR`
   failures, so a merchant seen twice keeps a factor near 1.
2. **Empirical-Bayes leaf ratio.** The leaf's own history, shrunk towards its
   main-effects ratio with a prior strength ``kappa`` estimated by the method of
   moments from how far leaves actually stray from their main effects
   (beta-binomial). A leaf with years of traffic keeps its own ratio; a new
   leaf inherits its neighbours'.
3. **Over-dispersion.** ``rho``, the beta-binomial intra-bucket correlation,
   estimated by the method of moments from how much each leaf's ratio moves
   between history buckets. Variance of a leaf's failures is
   ``n p (1 - p) (1 + (n - 1) rho)``: binomial for small slices, a wandering
   ratio for big ones.

The anomalous bucket is then judged with a quasi-likelihood: each leaf's
binomial log-likelihood is scaled by ``weight = binomial variance / predictive
variance``, where the predictive variance adds the over-dispersion and the
uncertainty of the baseline itself. Small, noisy, or newly seen slices speak
with the weight their evidence deserves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc
from scipy.stats import chi2

from tapshield.diagnose.cube import Cube

FACTOR_PRIOR = 5.0
"""Pseudo-failures behind each main-effect factor's prior (Gamma(5, 5), mean 1):
a value needs about five failures of its own before its factor moves far from 1."""

RATE_FLOOR = 1e-6
"""Smallest baseline ratio: a slice never seen failing is not impossible to fail."""

CLEAN_PASSES = 2
"""Passes of setting aside bursts in the history (the second catches what the first masked)."""

BURST_P = 0.001
"""A history cell whose failures are above its leaf's normal (leave-one-bucket-out)
with upper-tail probability below 0.1% (exact beta-binomial tail, so a single failure
among four attempts is not a burst) is an earlier burst of the wave, not baseline.
Without bursts one cell in a thousand is set aside: a negligible loss of history."""

CONFLICT_P = 0.001
"""Prior-data conflict: a leaf whose own history lies in either 0.1% tail of what its
prior (Beta around the main effects, strength ``kappa``) predicts keeps its own ratio
(a :data:`CONFLICT_PRIOR`-attempt prior only). One strength fits the typical leaf; a
leaf that always fails 12 of 12, or a client that fails 40% on one bitrate, is not
typical, and shrinking it towards its main effects would make its usual behaviour look
like a wave (and its every history bucket like a burst). Wrongly flagging one ordinary
leaf in a thousand only costs it its shrinkage: its own ratio is still unbiased."""

CONFLICT_PRIOR = 1.0
"""Attempts' worth of the main-effects ratio left behind a conflicting leaf (a unit
information prior: it keeps a leaf seen 0 times in 1,000 off an exact zero)."""

IPF_SWEEPS = 4
"""Proportional-fitting sweeps; the factors change by < 1% after three on every cube tried."""


@dataclass(frozen=True, slots=True)
class Baseline:
    p0: np.ndarray
    """Expected failure ratio of each leaf."""
    weight: np.ndarray
    """Quasi-likelihood weight of each leaf in the anomalous bucket (0, 1]."""
    kappa: float
    """Prior strength (attempts) pulling a leaf's ratio towards its main effects."""
    rho: float
    """Over-dispersion of a leaf's ratio between buckets (0 = binomial)."""
    global_ratio: float
    set_aside: int = 0
    """History cells (leaf x bucket) set aside as earlier bursts of the wave."""
    own_ratio: int = 0
    """Leaves whose history conflicts with their prior (they keep their own ratio)."""
    usable: np.ndarray | None = None
    """History cells (leaf x bucket) kept as baseline (``None``: all of them)."""


def estimate(cube: Cube, *, burst_cleaning: bool = True, prior_conflict: bool = True,
             overdispersion: bool = True) -> Baseline:
    """Baseline ratio, quasi-likelihood weight and dispersion for every leaf.

    The keyword switches turn single steps of the method off, so each can be
    checked by leave-one-out (``benchmarks/localize_generalise.py``).
    """
    hf = cube.hf.sum(axis=1)
    hn = cube.hn.sum(axis=1)
    total_n = float(hn.sum())
    if total_n <= 0:
        # No history attempts at all: the best guess of normal is the current
        # overall ratio, with no confidence in it (weights reflect that).
        g = float(cube.f.sum() / max(cube.n.sum(), 1.0))
        p0 = np.full(cube.leaves, min(max(g, RATE_FLOOR), 1 - RATE_FLOOR))
        return Baseline(p0=p0, weight=np.full(cube.leaves, 1e-3), kappa=0.0, rho=0.0,
                        global_ratio=g)
    usable = cube.hn > 0
    rho = _dispersion(cube.hf, cube.hn) if overdispersion else 0.0
    hf_u, hn_u = cube.hf * usable, cube.hn * usable
    m, kappa = _prior(cube, hf_u, hn_u)
    for _ in range(CLEAN_PASSES if burst_cleaning else 0):
        # Leave-one-bucket-out baseline, so a burst cannot hide behind itself.
        tf, tn = hf_u.sum(axis=1, keepdims=True), hn_u.sum(axis=1, keepdims=True)
        lf, ln = tf - hf_u, tn - hn_u
        k_loo = _leaf_strength(lf, ln, m[:, None], kappa, prior_conflict)
        p_loo = np.clip((lf + k_loo * m[:, None]) / (ln + k_loo), RATE_FLOOR, 1 - RATE_FLOOR)
        tail = _upper_tail(cube.hf, cube.hn, p_loo, rho)
        kept = (cube.hn > 0) & (tail > BURST_P)
        if np.array_equal(kept, usable):
            break  # nothing (more) set aside: the prior already fits this history
        usable = kept
        rho = _dispersion(cube.hf * usable, cube.hn * usable) if overdispersion else 0.0
        hf_u, hn_u = cube.hf * usable, cube.hn * usable
        m, kappa = _prior(cube, hf_u, hn_u)
    hf, hn = hf_u.sum(axis=1), hn_u.sum(axis=1)
    g = float(hf.sum() / max(hn.sum(), 1.0))
    k_leaf = _leaf_strength(hf, hn, m, kappa, prior_conflict)
    p0 = np.clip((hf + k_leaf * m) / (hn + k_leaf), RATE_FLOOR, 1 - RATE_FLOOR)
    buckets = np.maximum(usable.sum(axis=1), 1)
    per_bucket = hn / buckets
    n = cube.n
    own = 1.0 + np.maximum(n - 1.0, 0.0) * rho
    base_unc = n * (1.0 + np.maximum(per_bucket - 1.0, 0.0) * rho) / (hn + k_leaf)
    weight = 1.0 / (own + base_unc)
    set_aside = int(((cube.hn > 0) & ~usable).sum())
    return Baseline(p0=p0, weight=weight, kappa=kappa, rho=rho, global_ratio=g,
                    set_aside=set_aside, own_ratio=int((k_leaf < kappa).sum()), usable=usable)


def _leaf_strength(f: np.ndarray, n: np.ndarray, m: np.ndarray, kappa: float,
                   conflict: bool = True) -> np.ndarray:
    """Prior strength behind each leaf: ``kappa``, or :data:`CONFLICT_PRIOR` on conflict.

    The prior predictive of a leaf's ``f`` failures in ``n`` history attempts is
    beta-binomial with mean ``n m`` and variance ``n m (1 - m) (n + kappa) / (1 +
    kappa)``; its tails are taken as binomial tails of counts divided by that design
    effect (the approximation :func:`_upper_tail` uses), both sides: a leaf far above
    its main effects and one far below them are both not the typical leaf.
    """
    out = np.full(np.shape(f), kappa, dtype=float)
    if not conflict or kappa <= CONFLICT_PRIOR:
        return out
    m = np.broadcast_to(m, out.shape)
    deff = (n + kappa) / (1.0 + kappa)
    sd = np.sqrt(np.maximum(n * m * (1 - m) * deff, 1e-12))
    # Only leaves already far out on the normal scale need the exact tail.
    far = (n > 0) & (np.abs(f - n * m) > 3.0 * sd)
    if not far.any():
        return out
    k, nn, mm = f[far] / deff[far], n[far] / deff[far], m[far]
    upper = np.where(k > 0, betainc(np.maximum(k, 1e-12), np.maximum(nn - k, 0.0) + 1.0, mm),
                     1.0)
    lower = np.where(nn - k > 0, betainc(np.maximum(nn - k, 1e-12), k + 1.0, 1.0 - mm), 1.0)
    tail = np.minimum(upper, lower)
    out[far] = np.where(tail < CONFLICT_P, CONFLICT_PRIOR, kappa)
    return out


def _prior(cube: Cube, hf_cells: np.ndarray, hn_cells: np.ndarray) -> tuple[np.ndarray, float]:
    """Main-effects ratio of every leaf and the prior strength around it."""
    hf, hn = hf_cells.sum(axis=1), hn_cells.sum(axis=1)
    g = float(hf.sum() / max(hn.sum(), 1.0))
    g = min(max(g, RATE_FLOOR), 1 - RATE_FLOOR)
    m = _main_effects(cube, hf, hn, g)
    return m, _prior_strength(hf, hn, m)


def _upper_tail(f: np.ndarray, n: np.ndarray, p: np.ndarray, rho: float) -> np.ndarray:
    """``P(X >= f)`` for failures over-dispersed by ``rho`` (binomial when ``rho = 0``).

    The binomial tail is the regularised incomplete beta function
    ``I_p(f, n - f + 1)``, which is continuous in ``f`` and ``n``; over-dispersion
    enters through the design effect ``1 + (n - 1) rho`` (counts divided by it,
    the standard effective-sample-size approximation of the beta-binomial),
    so the whole computation stays vectorised.
    """
    out = np.ones_like(f)
    # Tails only where the normal approximation already looks extreme: for
    # counts the right tail is never lighter than the normal one below p = 1/2.
    deff = 1.0 + np.maximum(n - 1.0, 0.0) * rho
    sd = np.sqrt(np.maximum(n * p * (1 - p) * deff, 1e-12))
    cell = (n > 0) & (f > 0) & ((f - n * p) > 2.5 * sd)
    if not cell.any():
        return out
    k = f[cell] / deff[cell]
    nn = n[cell] / deff[cell]
    out[cell] = betainc(k, np.maximum(nn - k, 0.0) + 1.0, p[cell])
    return out


def _main_effects(cube: Cube, hf: np.ndarray, hn: np.ndarray, g: float) -> np.ndarray:
    m = np.full(cube.leaves, g)
    for _ in range(IPF_SWEEPS):
        for d in range(len(cube.dims)):
            codes = cube.codes[:, d]
            k = len(cube.labels[d])
            obs = np.bincount(codes, weights=hf, minlength=k)
            exp = np.bincount(codes, weights=hn * m, minlength=k)
            factor = (obs + FACTOR_PRIOR) / (exp + FACTOR_PRIOR)
            m = m * factor[codes]
        m = np.clip(m, RATE_FLOOR, 1 - RATE_FLOOR)
    return m


def _prior_strength(hf: np.ndarray, hn: np.ndarray, m: np.ndarray) -> float:
    """Beta-binomial prior strength from the spread of leaves around their main effects.

    Under ``p_leaf ~ Beta(kappa m, kappa (1 - m))`` the Pearson statistic of a
    leaf has expectation ``1 + (hn - 1) / (kappa + 1)``; solving the summed
    moment equation gives ``kappa``.
    """
    ok = hn > 1
    if not ok.any():
        return 1.0
    x2 = ((hf[ok] - hn[ok] * m[ok]) ** 2 / (hn[ok] * m[ok] * (1 - m[ok]))).sum()
    excess = x2 - ok.sum()
    denom = (hn[ok] - 1).sum()
    icc = float(np.clip(excess / denom, 1e-9, 1.0)) if denom > 0 else 1.0
    return float(np.clip(1.0 / icc - 1.0, 1.0, 1e9))


def _dispersion(hf: np.ndarray, hn: np.ndarray) -> float:
    """Beta-binomial intra-bucket correlation ``rho`` from history buckets.

    For a leaf with pooled ratio ``p`` over its buckets, the Pearson statistic ``sum_t (f_t
    - n_t p)^2 / (n_t p (1 - p))`` has expectation ``sum_t (1 - n_t / N) (1 + (n_t - 1)
    rho)``; the moment equation summed over leaves gives ``rho``. Only cells of at least two
    attempts carry information about spread (a single attempt is Bernoulli whatever ``rho``
    is); a thousand one-attempt cells would only add noise. Over-dispersion is assumed only
    when the history shows it: the Pearson statistic must exceed its chi-square 99%
    quantile, else ``rho = 0``. One history bucket gives no information: ``rho = 0``.
    """
    if hf.shape[1] < 2:
        return 0.0
    tot_f = hf.sum(axis=1, keepdims=True)
    tot_n = hn.sum(axis=1, keepdims=True)
    p = np.divide(tot_f, tot_n, out=np.zeros_like(tot_f), where=tot_n > 0)
    live = (p > 0) & (p < 1) & ((hn > 0).sum(axis=1, keepdims=True) >= 2)
    cell = live & (hn >= 2)
    if not cell.any():
        return 0.0
    var = hn * p * (1 - p)
    x2 = np.divide((hf - hn * p) ** 2, var, out=np.zeros_like(hf), where=cell).sum()
    share = np.divide(hn, tot_n, out=np.zeros_like(hn), where=tot_n > 0)
    a = ((1 - share) * cell).sum()
    b = ((1 - share) * np.maximum(hn - 1, 0) * cell).sum()
    if b <= 0 or a <= 0 or x2 <= chi2.isf(0.01, a):
        return 0.0
    return float(np.clip((x2 - a) / b, 0.0, 0.99))

