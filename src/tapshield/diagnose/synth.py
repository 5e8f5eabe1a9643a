"""Synthetic failure cubes with known root causes, for tests and benchmarks.

Real failure counts have properties that break naive localisers, and every one
of them is a knob here so the hard cases can be generated on purpose:

* skewed traffic (log-normal per leaf, Zipf-like popularity of values) and
  sparse combinations (only ``leaves`` of the full product occur);
* per-value baseline ratios (some regions or models always fail more);
* over-dispersion (``rho``: a leaf's ratio wanders between buckets) and a
  common drift of the whole flow (``drift``);
* heterogeneous root causes: inside a cause each leaf's extra failure
  probability is the cause's ``delta`` times a log-normal factor
  (``heterogeneity``), the way a broken interface hurts some devices more;
* several simultaneous causes, deep causes (3-4 dimensions), many dimensions
  with a high-cardinality one (merchants), and tiny slices (``mean_attempts``).

The truth of a case is the list of injected combinations. A cause is only
injected if it is *identifiable*: every one-dimension generalisation of it
holds clearly more traffic (so no other combination has the same leaves), and
its expected excess is at least ``min_excess`` failures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True, slots=True)
class CubeSpec:
    name: str = "base"
    cards: tuple[int, ...] = (6, 10, 5, 4, 8)
    leaves: int = 2000
    history: int = 4
    causes: tuple[int, int] = (1, 1)
    """Inclusive range of the number of root causes."""
    depth: tuple[int, int] = (1, 2)
    """Inclusive range of dimensions per root cause."""
    mean_attempts: float = 60.0
    """Mean attempts per leaf per bucket (log-normal, sigma ``traffic_sigma``)."""
    traffic_sigma: float = 1.2
    base_ratio: float = 0.02
    value_sigma: float = 0.35
    """Log-sd of the per-value factors of the baseline ratio."""
    rho: float = 0.002
    drift: float = 0.04
    delta: tuple[float, float] = (0.05, 0.6)
    heterogeneity: float = 0.35
    min_share: float = 0.01
    max_share: float = 0.35
    """Traffic share range of an injected cause."""
    min_excess: float = 40.0


SPECS: dict[str, CubeSpec] = {
    "base": CubeSpec(),
    "multi": CubeSpec(name="multi", causes=(2, 3), max_share=0.25),
    "deep": CubeSpec(name="deep", cards=(6, 10, 5, 4, 8, 3), leaves=4000, depth=(3, 4),
                     min_share=0.004),
    "wide": CubeSpec(name="wide", cards=(5, 31, 4, 6, 12, 20, 8, 3000), leaves=10_000,
                     depth=(1, 3), causes=(1, 2), min_share=0.004),
    "noisy": CubeSpec(name="noisy", mean_attempts=4.0, leaves=3000, delta=(0.15, 0.7)),
    "mixed": CubeSpec(name="mixed", cards=(5, 31, 4, 6, 12, 20, 8, 2000), leaves=10_000,
                      causes=(1, 3), depth=(1, 4), mean_attempts=20.0, min_share=0.004,
                      max_share=0.25),
}
"""The benchmark families: one easy, one per hard case, and all hard cases at once."""


@dataclass(frozen=True, slots=True)
class SynthCase:
    frame: pl.DataFrame
    """Long table: ``bucket``, the dimensions ``d0..dk``, ``failures``, ``total``."""
    dims: tuple[str, ...]
    at: int
    truth: list[dict[str, str]]
    spec: CubeSpec
    seed: int

    def meta(self) -> dict[str, Any]:
        return {"spec": self.spec.name, "seed": self.seed, "truth": self.truth,
                "rows": self.frame.height}


def generate(spec: CubeSpec, seed: int) -> SynthCase:
    """One case of family ``spec`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    dims = tuple(f"d{i}" for i in range(len(spec.cards)))
    codes = _leaves(rng, spec)
    n_leaves = codes.shape[0]
    traffic = np.asarray(spec.mean_attempts * rng.lognormal(
        -0.5 * spec.traffic_sigma**2, spec.traffic_sigma, n_leaves
    ))
    logit = np.log(spec.base_ratio / (1 - spec.base_ratio)) + rng.normal(0, 0.15, n_leaves)
    for d, card in enumerate(spec.cards):
        logit += rng.normal(0, spec.value_sigma, card)[codes[:, d]]
    p: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
    buckets = spec.history + 1
    k_causes = int(rng.integers(spec.causes[0], spec.causes[1] + 1))
    causes = _pick_causes(rng, spec, codes, traffic, p, k_causes)
    extra = np.zeros(n_leaves)
    for combo, delta in causes:
        inside = _mask(codes, combo)
        d_leaf = np.clip(delta * rng.lognormal(-0.5 * spec.heterogeneity**2,
                                               spec.heterogeneity, int(inside.sum())),
                         0.0, 0.98)
        extra[inside] = 1.0 - (1.0 - extra[inside]) * (1.0 - d_leaf)
    rows_f, rows_n, rows_b, rows_l = [], [], [], []
    for t in range(buckets):
        level = np.exp(rng.normal(0, 0.05))
        n_t = rng.poisson(traffic * level)
        p_t = np.clip(p * np.exp(rng.normal(0, spec.drift)), 1e-6, 0.95)
        if spec.rho > 0:
            a = p_t * (1 / spec.rho - 1)
            b = (1 - p_t) * (1 / spec.rho - 1)
            p_t = rng.beta(a, b)
        if t == buckets - 1:
            p_t = 1.0 - (1.0 - p_t) * (1.0 - extra)
        f_t = rng.binomial(n_t, p_t)
        live = n_t > 0
        rows_f.append(f_t[live])
        rows_n.append(n_t[live])
        rows_b.append(np.full(int(live.sum()), t))
        rows_l.append(np.flatnonzero(live))
    leaf_idx = np.concatenate(rows_l)
    frame = pl.DataFrame({
        "bucket": np.concatenate(rows_b).astype(np.int64),
        **{d: pl.Series([f"v{c}" for c in codes[leaf_idx, i]], dtype=pl.String)
           for i, d in enumerate(dims)},
        "failures": np.concatenate(rows_f).astype(np.int64),
        "total": np.concatenate(rows_n).astype(np.int64),
    })
    truth = [{dims[d]: f"v{v}" for d, v in combo} for combo, _ in causes]
    return SynthCase(frame=frame, dims=dims, at=buckets - 1, truth=truth, spec=spec, seed=seed)


def family(name: str, cases: int, seed: int = 0, **overrides: Any) -> list[SynthCase]:
    """``cases`` cases of a named family (seeds ``seed .. seed + cases - 1``)."""
    spec = replace(SPECS[name], **overrides) if overrides else SPECS[name]
    return [generate(spec, seed + i) for i in range(cases)]


def _leaves(rng: np.random.Generator, spec: CubeSpec) -> np.ndarray:
    """``spec.leaves`` distinct combinations, values drawn with Zipf-like popularity."""
    cols = []
    want = spec.leaves
    for card in spec.cards:
        weights = 1.0 / np.arange(1, card + 1) ** 0.8
        weights = rng.permutation(weights / weights.sum())
        cols.append(rng.choice(card, size=want * 3, p=weights))
    codes = np.unique(np.column_stack(cols), axis=0)
    if codes.shape[0] > want:
        codes = codes[rng.choice(codes.shape[0], want, replace=False)]
    return codes


def _mask(codes: np.ndarray, combo: tuple[tuple[int, int], ...]) -> np.ndarray:
    out = np.ones(codes.shape[0], dtype=bool)
    for d, v in combo:
        out &= codes[:, d] == v
    return out


def _pick_causes(rng: np.random.Generator, spec: CubeSpec, codes: np.ndarray,
                 traffic: np.ndarray, p: np.ndarray,
                 k: int) -> list[tuple[tuple[tuple[int, int], ...], float]]:
    chosen: list[tuple[tuple[tuple[int, int], ...], float]] = []
    used = np.zeros(codes.shape[0], dtype=bool)
    total = traffic.sum()
    n_dims = codes.shape[1]
    for _ in range(2000):
        if len(chosen) == k:
            break
        depth = int(rng.integers(spec.depth[0], min(spec.depth[1], n_dims) + 1))
        leaf = int(rng.choice(codes.shape[0], p=traffic / total))
        dims = sorted(rng.choice(n_dims, size=depth, replace=False).tolist())
        combo = tuple((d, int(codes[leaf, d])) for d in dims)
        inside = _mask(codes, combo)
        share = traffic[inside].sum() / total
        if not spec.min_share <= share <= spec.max_share:
            continue
        if (inside & used).any():
            continue  # causes do not overlap: each leaf has at most one truth
        # Identifiable: dropping any condition adds clearly more traffic.
        ok = True
        for d, _ in combo:
            wider = _mask(codes, tuple(c for c in combo if c[0] != d))
            if traffic[wider].sum() < 1.25 * traffic[inside].sum():
                ok = False
                break
        if not ok:
            continue
        delta = float(rng.uniform(*spec.delta))
        excess = (traffic[inside] * (1 - p[inside]) * delta).sum()
        if excess < spec.min_excess:
            continue
        chosen.append((combo, delta))
        used |= inside
    return chosen
