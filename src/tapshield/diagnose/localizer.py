"""Which combinations of dimensions explain a failure wave.

The method ("likelihood localisation") treats localisation as model
selection on the leaves of the cube:

* **Null model.** Every leaf fails at its baseline ratio ``p0`` (see
  :mod:`tapshield.diagnose.baseline`), judged with an over-dispersed
  (quasi-)binomial likelihood, so big slices are allowed their normal wander
  and small slices their binomial noise.
* **A root cause** is a combination ``P`` (``{channel: nfc, region: CN-GD}``,
  any depth up to ``max_depth``) that adds an extra, independent failure
  probability ``delta_P`` to every attempt inside it:
  ``q = 1 - (1 - p0) (1 - delta_P)``. One parameter per cause, fitted by
  maximum likelihood. A combination that mixes broken and healthy leaves fits
  badly (the healthy leaves refuse the common ``delta``), so the likelihood
  itself prefers the combination that is broken *everywhere inside* and
  *nowhere outside*: that is the succinctness criterion, not a tuned weight.
* **Forward selection.** Add the cause with the largest likelihood gain while
  it is (a) *significant*: its deviance gain beats the chi-square quantile at
  family-wise false-alarm rate ``alpha`` Bonferroni-corrected over every
  combination in the lattice (so scanning ten thousand merchants does not
  invent one), and (b) *material*: it adds at least ``materiality`` of the
  wave's excess failures (a slice behind fewer than 1 in 20 of the extra
  failures is not where an on-call engineer should look first). Between a
  combination and a more general one that fits as well (deviance difference
  below the chi-square quantile at ``alpha``), the more general one wins.
  Then a backward pass drops any cause that stopped earning its place once the
  others were in.

Against the published anchors: Adtributor looks at one dimension at a time
(no deep causes); HotSpot, Squeeze and RiskLoc score deviations of raw
counts or ratios without weighing how many attempts stand behind them, so a
slice of three attempts with two failures looks as broken as one of three
thousand. Here every leaf speaks with the weight of its evidence and every
threshold is a stated error rate. Comparisons: ``benchmarks/localize_*.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import chi2, norm

from tapshield.diagnose.baseline import Baseline, estimate
from tapshield.diagnose.cube import Cube, cube_from_table
from tapshield.diagnose.lattice import Cuboid, Lattice

DELTA_MAX = 1.0 - 1e-9

MAX_ALTERNATIVES = 200
"""Candidates (best first) looked at for a shorter name of the chosen traffic."""

ATTRIBUTABLE = 0.5
"""Smallest attributable fraction of a root cause: more likely than not, a failure
inside it is the wave's (its failure ratio at least doubled). Below that the slice
is mostly failing as usual and naming it sends the on-call engineer the wrong way."""


@dataclass(frozen=True, slots=True)
class LocalizeConfig:
    alpha: float = 0.01
    """Family-wise probability of naming a combination that is only noise."""
    materiality: float = 0.02
    """Smallest share of the wave's excess failures a root cause must add (a slice
    behind fewer than 1 in 50 extra failures is not where to look first). Chosen
    among 0.02 / 0.05 / 0.10 by the rule checked with nested leave-one-out
    (``benchmarks/localize_generalise.py``: mean F1 on the development cases and
    on synthetic families; the rule picked 0.02 in all 35 folds). Incident
    diagnosis uses 5% (:data:`tapshield.diagnose.diagnosis.PIPELINE_CONFIG`)."""
    max_depth: int = 4
    """Deepest combination considered (dimensions per root cause)."""
    max_causes: int = 8
    """At most this many root causes (more is a flood, not a diagnosis)."""
    attributable: float = ATTRIBUTABLE
    """Smallest attributable fraction of a root cause (see :data:`ATTRIBUTABLE`)."""
    burst_cleaning: bool = True
    """Set aside history cells that are earlier bursts of the wave (baseline step 4)."""
    prior_conflict: bool = True
    """Let a leaf whose history conflicts with its prior keep its own ratio (baseline step 2)."""
    overdispersion: bool = True
    """Weigh leaves by binomial / predictive variance (baseline step 3); off = plain binomial."""
    occam: bool = True
    """Take the most general of the statistically indistinguishable nested candidates."""
    split: bool = True
    """Replace a cause mostly made of healthy parts by its broken part."""
    widen: bool = True
    """Replace a cause by a parent whose added part is broken too."""
    slivers: bool = True
    """Prefer a shorter name covering (nearly) the same attempts."""
    slice_dispersion: str = "phi"
    """Judge slices against how much slices (not only leaves) wander between history
    buckets: ``"phi"`` scales every critical value by the slices' dispersion
    (:func:`slice_dispersion`), ``"drift"`` adds a relative wander ``tau2`` to each
    slice's variance (:func:`slice_drift`), ``"off"`` uses the leaf model alone."""

    def __post_init__(self) -> None:
        if self.slice_dispersion not in ("phi", "drift", "off"):
            raise ValueError(f"slice_dispersion must be phi, drift or off, not "
                             f"{self.slice_dispersion!r}")


@dataclass(frozen=True, slots=True)
class RootCause:
    combination: dict[str, str]
    failures: float
    total: float
    baseline_ratio: float
    excess: float
    """Failures above what the baseline expects inside the combination."""
    share: float
    """``excess`` over the excess of the whole cube."""
    delta: float
    """Fitted extra failure probability inside the combination."""
    surprise: float
    """Deviance lost if this cause is removed (chi-square units)."""

    @property
    def ratio(self) -> float:
        return self.failures / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "combination": dict(self.combination),
            "failures": _num(self.failures),
            "total": _num(self.total),
            "ratio": round(self.ratio, 6),
            "baseline_ratio": round(self.baseline_ratio, 6),
            "excess_failures": round(self.excess, 2),
            "share": round(self.share, 4),
            "delta": round(self.delta, 6),
            "surprise": round(self.surprise, 2),
        }


@dataclass(frozen=True, slots=True)
class Localization:
    root_causes: list[RootCause]
    explained_share: float
    """Share of the wave's excess failures inside the root causes (0..1)."""
    failures: float
    total: float
    baseline_ratio: float
    excess: float
    method: str = "likelihood"
    notes: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def combinations(self) -> list[dict[str, str]]:
        return [rc.combination for rc in self.root_causes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root_causes": self.combinations,
            "explained_share": round(self.explained_share, 4),
            "failures": _num(self.failures),
            "total": _num(self.total),
            "ratio": round(self.failures / self.total, 6) if self.total else 0.0,
            "baseline_ratio": round(self.baseline_ratio, 6),
            "excess_failures": round(self.excess, 2),
            "details": [rc.to_dict() for rc in self.root_causes],
            "method": self.method,
            "notes": list(self.notes),
            "model": {k: round(v, 6) for k, v in self.stats.items()},
        }


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(float(x), 4)


def localize(
    frame: pl.DataFrame,
    dims: Sequence[str],
    *,
    at: Any,
    time_col: str = "bucket",
    failures: str = "failures",
    total: str = "total",
    history: int = 4,
    config: LocalizeConfig | None = None,
) -> Localization:
    """Root causes of the failure wave in bucket ``at`` of a long count table.

    ``frame`` has one row per time bucket and combination of ``dims``, with
    ``failures`` and ``total`` counts; the baseline is the ``history`` buckets
    before ``at``. Raises :class:`~tapshield.errors.ContractError` on bad input.
    """
    cube = cube_from_table(frame, dims, time_col=time_col, failures=failures, total=total,
                           at=at, history=history)
    return localize_cube(cube, config)


def localize_cube(cube: Cube, config: LocalizeConfig | None = None,
                  baseline: Baseline | None = None) -> Localization:
    """Root causes of the wave in ``cube`` (see the module docstring for the method)."""
    cfg = config or LocalizeConfig()
    base = baseline or estimate(cube, burst_cleaning=cfg.burst_cleaning,
                                prior_conflict=cfg.prior_conflict,
                                overdispersion=cfg.overdispersion)
    live = cube.n > 0
    f, n = cube.f[live], cube.n[live]
    p0, w = base.p0[live], base.weight[live]
    sub = _subset(cube, live)
    failures, total = float(f.sum()), float(n.sum())
    expected = float((n * p0).sum())
    excess = failures - expected
    stats = {"kappa": base.kappa, "rho": base.rho, "leaves": float(sub.leaves),
             "history_buckets": float(cube.hf.shape[1])}
    baseline_ratio = expected / total if total else base.global_ratio
    empty = Localization([], 0.0, failures, total, baseline_ratio, excess, stats=stats)
    if total <= 0:
        empty.notes.append("no attempts in the anomalous bucket")
        return empty
    if excess <= 0:
        empty.notes.append("no failures above the baseline: nothing to localise")
        return empty
    lattice = Lattice(sub, cfg.max_depth, score=np.maximum(f - n * p0, 0.0),
                      floor=cfg.materiality * excess)
    tau2, phi = 0.0, 1.0
    usable = base.usable[live] if base.usable is not None else None
    if cfg.slice_dispersion == "drift":
        tau2 = slice_drift(sub, p0, base.rho, usable)
    elif cfg.slice_dispersion == "phi":
        phi = slice_dispersion(sub, p0, base.rho, usable)
    search = _Search(sub, lattice, f, n, p0, w, min_excess=cfg.materiality * excess,
                     materiality=cfg.materiality, alpha=cfg.alpha, config=cfg, tau2=tau2,
                     phi=phi)
    stats.update(combinations=float(lattice.space), evaluated=float(lattice.total_groups),
                 critical_deviance=search.crit, slice_drift=float(np.sqrt(tau2)),
                 slice_dispersion=phi,
                 history_cells_set_aside=float(base.set_aside))
    chosen = search.run(cfg.max_causes)
    causes: list[RootCause] = []
    union = np.zeros(sub.leaves, dtype=bool)
    for cause in chosen:
        m = cause.members
        union |= m
        exp_in = float((n[m] * p0[m]).sum())
        causes.append(RootCause(
            combination=cause.combination,
            failures=float(f[m].sum()),
            total=float(n[m].sum()),
            baseline_ratio=exp_in / float(n[m].sum()) if n[m].sum() else 0.0,
            excess=float(f[m].sum()) - exp_in,
            share=(float(f[m].sum()) - exp_in) / excess,
            delta=cause.delta,
            surprise=cause.surprise,
        ))
    causes.sort(key=lambda c: -c.excess)
    inside = float(f[union].sum() - (n[union] * p0[union]).sum())
    share = float(np.clip(inside / excess, 0.0, 1.0)) if causes else 0.0
    notes = []
    if cube.hf.shape[1] < 2:
        notes.append("one history bucket: over-dispersion cannot be estimated, "
                     "binomial noise assumed")
    if not causes:
        notes.append("no combination is both significant and material")
    return Localization(causes, share, failures, total, baseline_ratio, excess,
                        notes=notes, stats=stats)


def _history_sums(cube: Cube, p0: np.ndarray, rho: float, usable: np.ndarray | None,
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per dimension, per value and history bucket: observed failures, failures
    expected by the leaf model (leaf rates ``p0``, within-leaf correlation ``rho``)
    and their variance (each ``buckets x values``), and each value's own level
    (observed / expected over the history, 1 where none is expected). Cells set
    aside as earlier bursts (``usable`` 0) are left out. Shared by the dispersion
    and drift estimates, which read the same sums differently."""
    hf, hn = cube.hf, cube.hn
    if usable is not None:
        hf, hn = hf * usable, hn * usable
    pp = p0[:, None]
    expect = hn * pp
    var = expect * (1.0 - pp) * (1.0 + np.maximum(hn - 1.0, 0.0) * rho)
    buckets = hf.shape[1]
    for d in range(len(cube.dims)):
        codes = cube.codes[:, d]
        k = len(cube.labels[d])
        obs = np.stack([np.bincount(codes, weights=hf[:, t], minlength=k)
                        for t in range(buckets)])
        exp = np.stack([np.bincount(codes, weights=expect[:, t], minlength=k)
                        for t in range(buckets)])
        v = np.stack([np.bincount(codes, weights=var[:, t], minlength=k)
                      for t in range(buckets)])
        level = np.divide(obs.sum(axis=0), exp.sum(axis=0), out=np.ones(k),
                          where=exp.sum(axis=0) > 0)
        yield obs, exp, v, level


def slice_dispersion(cube: Cube, p0: np.ndarray, rho: float,
                     usable: np.ndarray | None = None) -> float:
    """How much more one-dimension slices wander between history buckets than the leaf model says.

    The quasi-likelihood alternative to :func:`slice_drift`: the Pearson
    statistic of every value of every dimension across the history buckets
    (each slice's own level factored out) over its degrees of freedom, pooled,
    at least 1; every critical value of the search is then scaled by it. One
    factor for all slice sizes (a multiplicative dispersion), where
    :func:`slice_drift` lets the wander grow with the slice. From the history
    alone, never from labels; cells set aside as earlier bursts are left out.
    """
    if cube.hf.shape[1] < 2:
        return 1.0
    x2, dof = 0.0, 0
    for obs, exp, v, level in _history_sums(cube, p0, rho, usable):
        scale = np.maximum(level, 1e-9)
        ok = v > 0
        resid = np.divide((obs - scale * exp) ** 2, scale * v, out=np.zeros_like(v), where=ok)
        x2 += float(resid.sum())
        dof += int(np.maximum(ok.sum(axis=0) - 1, 0).sum())
    if dof <= 0:
        return 1.0
    return max(1.0, x2 / dof)


def slice_drift(cube: Cube, p0: np.ndarray, rho: float,
                usable: np.ndarray | None = None) -> float:
    """Variance ``tau2`` of a slice's failure ratio, relative to its level, between buckets.

    The leaf model treats leaves as independent, so a slice's predicted variance
    is the sum of its leaves' and shrinks, relative to its size, as the slice
    grows. On real traffic the leaves of a slice move together (a CDN node's or
    a bitrate's whole ratio shifts from minute to minute), so a big slice
    wanders far beyond the binomial spread of its counts, and a test that
    ignores it names slices at a much higher rate than the stated ``alpha``
    (on the development cases' pre-wave buckets a cause was named in 16 of
    101). Here the slice's failures vary as
    ``binomial-and-leaf variance + tau2 * expected^2`` (a common multiplicative
    wander of the slice's ratio with relative variance ``tau2``), and ``tau2``
    is the method-of-moments estimate over every value of every dimension and
    every history bucket, each slice's own level factored out (a slice that is
    always worse is not wandering), unbiased for the fitted level (``T / (T -
    1)``). History cells set aside as earlier bursts are left out. It comes from
    the history alone, never from labels; 0 when slices move no more than their
    leaves say.
    """
    buckets = cube.hf.shape[1]
    if buckets < 2:
        return 0.0
    num, den = 0.0, 0.0
    for obs, exp, v, level in _history_sums(cube, p0, rho, usable):
        live = (exp > 0).sum(axis=0) >= 2
        if not live.any():
            continue
        t_live = (exp > 0).sum(axis=0)[live]
        correction = t_live / (t_live - 1.0)
        e = level[live] * exp[:, live]
        num += float(((correction * ((obs[:, live] - e) ** 2 - level[live] * v[:, live]))).sum())
        den += float((e**2).sum())
    if den <= 0:
        return 0.0
    return max(0.0, num / den)


def _subset(cube: Cube, mask: np.ndarray) -> Cube:
    return Cube(dims=cube.dims, labels=cube.labels, codes=cube.codes[mask], f=cube.f[mask],
                n=cube.n[mask], hf=cube.hf[mask], hn=cube.hn[mask], at=cube.at,
                history=cube.history)


@dataclass(slots=True)
class _Cause:
    cuboid: Cuboid
    group: int
    combination: dict[str, str]
    members: np.ndarray
    delta: float = 0.0
    surprise: float = 0.0
    gain: float = 0.0


@dataclass(frozen=True, slots=True)
class _Found:
    gain: float
    cuboid: Cuboid
    group: int
    delta: float


class _Search:
    """Forward selection with a backward pass over the lattice (vectorised per cuboid).

    A candidate is eligible when it is neither inside nor around a chosen
    cause (a nested combination adds no new scope: ``bitrate=2500`` then
    ``bitrate=2500, device=C1`` is one cause described twice), and the failures
    it adds outside the chosen causes are both material and beyond the normal
    wander of a slice that size (binomial noise, leaf over-dispersion and the
    common drift ``tau2``) at the Bonferroni-corrected level.
    """

    def __init__(self, cube: Cube, lattice: Lattice, f: np.ndarray, n: np.ndarray,
                 p0: np.ndarray, w: np.ndarray, *, min_excess: float, materiality: float,
                 alpha: float, config: LocalizeConfig | None = None,
                 tau2: float = 0.0, phi: float = 1.0) -> None:
        self.cfg = config or LocalizeConfig(alpha=alpha, materiality=materiality)
        self.attributable = self.cfg.attributable
        self.cube, self.lattice = cube, lattice
        self.f, self.n, self.p0, self.w = f, n, p0, w
        self.min_excess = min_excess
        self.materiality = materiality
        m = max(lattice.space, 1)
        self.tau2 = tau2
        # Quasi-likelihood: deviances are in units of the slices' dispersion phi,
        # so every critical value scales by phi (z-values by its square root).
        self.crit = phi * float(chi2.isf(alpha / m, 1))
        self.z_crit = float(np.sqrt(phi) * norm.isf(alpha / m))
        self.z_one = float(np.sqrt(phi) * norm.isf(alpha))
        self.near = phi * float(chi2.isf(alpha, 1))

    # -- model ---------------------------------------------------------------

    def _rates(self, causes: list[_Cause], skip: int | None = None) -> np.ndarray:
        keep = np.ones_like(self.p0)
        for i, c in enumerate(causes):
            if i != skip:
                keep[c.members] *= 1.0 - c.delta
        return np.asarray(1.0 - (1.0 - self.p0) * keep)

    def _loglik(self, q: np.ndarray) -> float:
        f, n, w = self.f, self.n, self.w
        return float((w * (f * np.log(q) + (n - f) * np.log1p(-q))).sum())

    def _refit(self, causes: list[_Cause], sweeps: int = 3) -> None:
        for _ in range(sweeps if len(causes) > 1 else 1):
            for i, c in enumerate(causes):
                b = self._rates(causes, skip=i)[c.members]
                d, _ = _fit_groups(np.zeros(int(c.members.sum()), dtype=np.int64), 1,
                                   self.f[c.members], self.n[c.members], b,
                                   self.w[c.members])
                c.delta = float(d[0])

    def _variance(self, q: np.ndarray) -> np.ndarray:
        """Predictive variance of each leaf's failures (binomial x over-dispersion)."""
        return np.asarray(self.n * q * (1.0 - q) / self.w)

    # -- selection -----------------------------------------------------------

    def run(self, max_causes: int) -> list[_Cause]:
        causes: list[_Cause] = []
        q = self.p0.copy()
        while len(causes) < max_causes:
            pick = self._best(q, causes)
            if pick is None:
                break
            causes.append(pick)
            self._refit(causes)
            q = self._rates(causes)
        causes = self._prune(causes)
        if self.cfg.widen:
            causes = self._prune(self._widen(causes))
        return causes

    def _blocked(self, cub: Cuboid, causes: list[_Cause]) -> np.ndarray:
        """Groups of ``cub`` nested in or around a chosen cause."""
        out = np.zeros(cub.groups, dtype=bool)
        dims = set(cub.dims)
        for c in causes:
            other = set(c.cuboid.dims)
            if dims <= other or other <= dims:
                hit = np.unique(cub.gid[c.members])
                out[hit[hit >= 0]] = True
        return out

    def _best(self, q: np.ndarray, causes: list[_Cause]) -> _Cause | None:
        covered = np.zeros(self.cube.leaves, dtype=bool)
        for c in causes:
            covered |= c.members
        free = ~covered
        nq = self.n * q
        f_free, nq_free = self.f * free, nq * free
        var_free = self._variance(q) * free
        found: list[_Found] = []
        everyone = np.arange(self.cube.leaves)
        for cub in self.lattice:
            if cub.groups == 0 or (causes and not cub.dims):
                continue  # pruned away; "everything" cannot join specific causes
            rows = everyone if cub.live is None else cub.live
            g = cub.gid[rows]
            fails = np.bincount(g, weights=f_free[rows], minlength=cub.groups)
            new = fails - np.bincount(g, weights=nq_free[rows], minlength=cub.groups)
            cand = new >= self.min_excess
            if not cand.any():
                continue
            # More likely than not, a failure in the new part is the wave's:
            # attributable fraction >= 1/2, i.e. the ratio at least doubled.
            cand &= new >= self.attributable * fails
            spread = np.sqrt(np.bincount(g, weights=var_free[rows], minlength=cub.groups)
                             + self.tau2 * (fails - new) ** 2)
            cand &= new >= self.z_crit * spread
            if causes and cand.any():
                cand &= ~self._blocked(cub, causes)
            idx = np.flatnonzero(cand)
            if idx.size == 0:
                continue
            compact = np.full(cub.groups, -1, dtype=np.int64)
            compact[idx] = np.arange(idx.size)
            sel = compact[g]
            inside = rows[sel >= 0]
            delta, gain = _fit_groups(sel[sel >= 0], idx.size, self.f[inside], self.n[inside],
                                      q[inside], self.w[inside])
            for k in np.flatnonzero(2.0 * gain >= self.crit):
                found.append(_Found(float(gain[k]), cub, int(idx[k]), float(delta[k])))
        if not found:
            return None
        found.sort(key=lambda t: (-t.gain, len(t.cuboid.dims)))
        if self.cfg.occam:
            pick = self._occam(found, q, free)
        else:
            top = found[0]
            pick = _Cause(top.cuboid, top.group, self.lattice.combination(top.cuboid, top.group),
                          top.cuboid.gid == top.group, delta=top.delta, gain=top.gain)
        for _ in range(len(self.cube.dims) if self.cfg.split else 0):
            finer = self._split(pick, q)
            if finer is None:
                break
            pick = finer
        return pick

    def _occam(self, found: list[_Found], q: np.ndarray, free: np.ndarray) -> _Cause:
        """The best combination, or a nested one the data cannot tell apart from it.

        Candidates nested with the best one whose fit is statistically
        indistinguishable (deviance within the chi-square(1 - alpha) quantile)
        form a chain; the data cannot tell them apart, so the most general is
        taken unless, against some more specific member, the part it adds is
        material, not broken (see :meth:`_prefer_wider`) and significantly
        healthier than that member would make it (:meth:`_consistent`):
        generalise where the rest fails too, however unevenly, where it is too
        small to matter, and where it is too small to show it does not fail (no
        failure in 21 attempts next to five in 27 does not carve a gateway
        version out of a carrier's fault).

        The result is then offered to :meth:`_split` and :meth:`_generalise`.
        """
        top = found[0]
        combo = self.lattice.combination(top.cuboid, top.group)
        chain = [(top, combo)]
        for c in found[1:]:
            if 2.0 * (top.gain - c.gain) >= self.near:
                break
            other = self.lattice.combination(c.cuboid, c.group)
            if _nested(other, combo) or _nested(combo, other):
                chain.append((c, other))
        chain.sort(key=lambda t: len(t[1]))
        masks = [t[0].cuboid.gid == t[0].group for t in chain]
        for i, (cand, combo_i) in enumerate(chain):
            ok = True
            if i == len(chain) - 1 and self.cfg.slivers:
                wider = self._immaterial_ancestor(found, cand, combo_i, masks[i])
                if wider is not None:
                    return wider
            for j in range(i + 1, len(chain)):
                inner = chain[j]
                if not _nested(combo_i, inner[1]):
                    continue
                rest = masks[i] & ~masks[j] & free
                if not (self._prefer_wider(masks[i], masks[j], q, free)
                        or self._consistent(rest, inner[0].delta, q)):
                    ok = False
                    break
            if ok:
                return _Cause(cand.cuboid, cand.group, combo_i, masks[i], delta=cand.delta,
                              gain=cand.gain)
        cand, combo_i = chain[-1]
        return _Cause(cand.cuboid, cand.group, combo_i, masks[-1], delta=cand.delta,
                      gain=cand.gain)

    def _split(self, cause: _Cause, q: np.ndarray) -> _Cause | None:
        """A broken part of ``cause`` if the cause is really several (or one) of its parts.

        Along each further dimension, the cause's values are fitted separately.
        The cause is split when (a) most of its attempts (for "everything": a
        material share) sit in values that are not broken (ratio not doubled,
        or not significant), and (b) the broken values, each with its own extra
        probability, fit better than the single cause by more than the
        Bonferroni penalty for each part (the split is one of many that could
        be tried, so a few early failures must not carve a version out of a
        region). Then the best broken value becomes the cause; its broken
        siblings are found by the next rounds of the forward selection. This is
        how ``{channel: nfc}`` becomes nfc in three regions, and "everything"
        becomes two bitrates, while a cause broken everywhere inside, however
        unevenly, stays whole.
        """
        m = cause.members
        n_in = float(self.n[m].sum())
        if n_in <= 0:
            return None
        f, n, w, qm = self.f[m], self.n[m], self.w[m], q[m]
        best: tuple[float, Cuboid, int, float, float] | None = None
        for d in range(len(self.cube.dims)):
            if d in cause.cuboid.dims:
                continue
            dims = tuple(sorted((*cause.cuboid.dims, d)))
            cub = self.lattice.by_dims.get(dims)
            if cub is None:
                continue
            values, local = np.unique(self.cube.codes[m, d], return_inverse=True)
            k = values.size
            if k < 2:
                continue
            delta, gain = _fit_groups(local, k, f, n, qm, w)
            fails = np.bincount(local, weights=f, minlength=k)
            exc = fails - np.bincount(local, weights=n * qm, minlength=k)
            attempts = np.bincount(local, weights=n, minlength=k)
            broken = ((exc >= self.attributable * fails) & (2.0 * gain >= self.crit)
                      & (exc >= self.min_excess))
            if not broken.any():
                continue
            # "Everything" must be broken nearly everywhere (a material healthy part
            # refutes it); a named combination only needs most of its attempts in
            # broken parts (more likely than not, an attempt in it is affected).
            healthy_max = self.materiality if not cause.combination else 1.0 - self.attributable
            if attempts[~broken].sum() < healthy_max * n_in:
                continue  # broken (almost) everywhere inside along d
            parts = int(broken.sum())
            score = float(gain[broken].sum()) - parts * self.crit / 2.0 - cause.gain
            if score <= 0:
                continue
            j = int(np.flatnonzero(broken)[np.argmax(gain[broken])])
            # A broken part adds >= min_excess failures, so the pruned lattice kept it.
            leaf = int(np.flatnonzero(m)[np.flatnonzero(local == j)[0]])
            group = int(cub.gid[leaf])
            if group >= 0 and (best is None or score > best[0]):
                best = (score, cub, group, float(delta[j]), float(gain[j]))
        if best is None:
            return None
        _, cub, group, delta_j, gain_j = best
        combo = self.lattice.combination(cub, group)
        return _Cause(cub, group, combo, cub.gid == group, delta=delta_j, gain=gain_j)

    def _immaterial_ancestor(self, found: list[_Found], cand: _Found, combo: dict[str, str],
                             mask: np.ndarray) -> _Cause | None:
        """A shorter candidate naming (nearly) the same traffic as ``combo``.

        If two combinations differ by less than ``materiality`` of the attempts
        they cover together, they name the same traffic and the one with fewer
        conditions wins: card testing "at merchant m77", not "at merchant m77
        over QR" because of three ordinary QR taps there, nor "in region CN-SD,
        category 5814" when m77 is that region's only 5814 merchant.
        """
        best: tuple[int, float, _Found, dict[str, str], np.ndarray] | None = None
        for c in found[:MAX_ALTERNATIVES]:
            if len(c.cuboid.dims) >= len(combo):
                continue
            wide = c.cuboid.gid == c.group
            both = float(self.n[wide | mask].sum())
            differ = float(self.n[wide ^ mask].sum())
            if differ < self.materiality * both:
                key = (len(c.cuboid.dims), -c.gain)
                if best is None or key < (best[0], best[1]):
                    best = (key[0], key[1], c, self.lattice.combination(c.cuboid, c.group), wide)
        if best is None:
            return None
        _, _, c, other, wide = best
        return _Cause(c.cuboid, c.group, other, wide, delta=c.delta, gain=c.gain)

    def _prefer_wider(self, wide: np.ndarray, narrow: np.ndarray, q: np.ndarray,
                      free: np.ndarray) -> bool:
        """Is ``wide`` a better name than the ``narrow`` combination nested in it?

        A root cause is broken everywhere inside and nowhere outside. So the wider
        name wins when the part it adds (``rest``) is too small to matter (under
        ``materiality`` of its attempts: the two name the same traffic) or is
        itself broken: its ratio at least doubled (attributable fraction >= 1/2)
        and its new failures beyond the normal spread at the family-wise level.
        A fault rarely hurts every client alike (an interface failing 30% on
        Android and 8% on iOS is one broken interface, not an Android fault), so
        "fails exactly like the narrow cause" is not asked. The narrower name
        wins when the rest is material and not broken: the failure stops at its
        border. Attempts already explained by earlier causes are left out.
        """
        rest = wide & ~narrow & free
        if self.n[rest].sum() < self.materiality * self.n[wide & free].sum():
            return True
        return self._broken(rest, q)

    def _consistent(self, rest: np.ndarray, delta: float, q: np.ndarray) -> bool:
        """Could ``rest`` fail like a cause with extra probability ``delta``?

        One-sided at the family-wise level: ``rest`` is not significantly
        healthier than the cause would make it.
        """
        if not rest.any() or self.n[rest].sum() <= 0:
            return True
        r = q[rest] + delta * (1.0 - q[rest])
        mu = float((self.n[rest] * r).sum())
        var = float((self.n[rest] * r * (1 - r) / self.w[rest]).sum())
        shortfall = mu - float(self.f[rest].sum())
        return bool(shortfall < self.z_one * np.sqrt(max(var, 1e-12)))

    def _broken(self, part: np.ndarray, q: np.ndarray) -> bool:
        """Did ``part`` break away: ratio at least doubled and beyond its normal spread?"""
        fails = float(self.f[part].sum())
        new = fails - float((self.n[part] * q[part]).sum())
        spread = float(np.sqrt(self._variance(q)[part].sum()
                               + self.tau2 * (fails - new) ** 2))
        return bool(new > 0 and new >= self.attributable * fails and new >= self.z_crit * spread)

    def _widen(self, causes: list[_Cause]) -> list[_Cause]:
        """Replace a cause by a parent (one condition fewer) that names the failure better.

        Forward selection starts from the candidate with the largest likelihood
        gain, which is often a specific one: a fault hurting Android much more
        than iOS makes ``{bitrate: 500, device: adr}`` fit best though the rest of
        bitrate 500 broke too, and the rest then comes back as further causes
        (``{bitrate: 4500, device: C3}`` after ``C1``). :meth:`_split` refines a
        parent into its broken part; this is the same rule the other way, so the
        answer does not depend on which end the search started from. A parent is
        taken when the part it adds is broken or too small to matter
        (:meth:`_prefer_wider`), judged without the attempts of the other causes
        that are not nested in it (a second, unrelated cause crossing the parent
        does not make its rest broken), it is significant, and :meth:`_split`
        would not send it straight back (most of its attempts sit in broken
        parts). The causes nested in the parent are absorbed by it. "Everything"
        is never reached this way: it must earn its place as a candidate of its own.
        """
        changed = True
        while changed and len(causes) > 0:
            changed = False
            for c in sorted(causes, key=lambda x: -x.gain):
                wider = self._parent(c, causes)
                if wider is None:
                    continue
                causes = [x for x in causes
                          if x is not c and not _nested(wider.combination, x.combination)]
                causes.append(wider)
                self._refit(causes)
                changed = True
                break
        return causes

    def _parent(self, cause: _Cause, causes: list[_Cause]) -> _Cause | None:
        """The best parent of ``cause`` that :meth:`_widen` may take, if any."""
        if len(cause.combination) < 2:
            return None
        best: _Cause | None = None
        dims = cause.cuboid.dims
        leaf = int(np.flatnonzero(cause.members)[0])
        for drop in dims:
            sub = tuple(d for d in dims if d != drop)
            cub = self.lattice.by_dims.get(sub)
            if cub is None or int(cub.gid[leaf]) < 0:
                continue
            group = int(cub.gid[leaf])
            combo = self.lattice.combination(cub, group)
            wide = cub.gid == group
            outside = [x for x in causes if x is not cause and not _nested(combo, x.combination)]
            if any(_nested(x.combination, combo) for x in outside):
                continue  # the parent is nested in another cause
            free = np.ones(self.cube.leaves, dtype=bool)
            for x in outside:
                free &= ~x.members
            q = self._rates(outside)
            if not self._prefer_wider(wide, cause.members, q, free):
                continue
            inside = np.flatnonzero(wide & free)
            delta, gain = _fit_groups(np.zeros(inside.size, dtype=np.int64), 1, self.f[inside],
                                      self.n[inside], q[inside], self.w[inside])
            if 2.0 * float(gain[0]) < self.crit:
                continue
            cand = _Cause(cub, group, combo, wide, delta=float(delta[0]), gain=float(gain[0]))
            if self.cfg.split and self._split(cand, q) is not None:
                continue  # mostly healthy along some dimension: split would undo it
            if best is None or cand.gain > best.gain:
                best = cand
        return best

    def _prune(self, causes: list[_Cause]) -> list[_Cause]:
        while causes:
            full = self._loglik(self._rates(causes))
            worst, worst_loss = -1, np.inf
            for i, c in enumerate(causes):
                rest = [_Cause(x.cuboid, x.group, x.combination, x.members, x.delta)
                        for j, x in enumerate(causes) if j != i]
                self._refit(rest)
                loss = 2.0 * (full - self._loglik(self._rates(rest)))
                c.surprise = loss
                others = np.zeros_like(c.members)
                for x in rest:
                    others |= x.members
                own = c.members & ~others
                unique = float((self.f[own] - self.n[own] * self.p0[own]).sum())
                if (loss < self.crit or unique < self.min_excess) and loss < worst_loss:
                    worst, worst_loss = i, loss
            if worst < 0:
                break
            causes = [c for j, c in enumerate(causes) if j != worst]
            self._refit(causes)
        return causes


def _nested(general: dict[str, str], specific: dict[str, str]) -> bool:
    """True if ``general`` contains ``specific`` (its conditions are a subset)."""
    return all(specific.get(k) == v for k, v in general.items())


def _fit_groups(g: np.ndarray, groups: int, f: np.ndarray, n: np.ndarray, b: np.ndarray,
                w: np.ndarray, iters: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ``delta`` per group and its log-likelihood gain.

    Each leaf ``i`` of group ``g[i]`` fails at ``b + delta (1 - b)``; the
    weighted binomial log-likelihood is concave in ``delta``, so a few
    safeguarded Newton steps from the moment estimate converge.
    """
    fail_gap = w * (f - n * b)
    room = w * n * (1 - b)
    num = np.bincount(g, weights=fail_gap, minlength=groups)
    den = np.bincount(g, weights=room, minlength=groups)
    delta = np.clip(np.divide(num, den, out=np.zeros(groups), where=den > 0), 0.0, DELTA_MAX)
    one_b = 1.0 - b
    nf = n - f
    for _ in range(iters):
        d = delta[g]
        rate = b + d * one_b
        grad = np.bincount(g, weights=w * (f * one_b / rate - nf / (1 - d)), minlength=groups)
        hess = np.bincount(g, weights=w * (f * one_b**2 / rate**2 + nf / (1 - d) ** 2),
                           minlength=groups)
        step = np.divide(grad, hess, out=np.zeros(groups), where=hess > 0)
        delta = np.clip(delta + step, 0.0, DELTA_MAX)
        if np.abs(step).max(initial=0.0) < 1e-5:
            break  # converged: extra precision would not change any decision
    d = delta[g]
    gain_leaf = w * (f * np.log1p(d * one_b / b) + nf * np.log1p(-d))
    gain = np.bincount(g, weights=gain_leaf, minlength=groups)
    return delta, np.maximum(gain, 0.0)
