"""From canonical events to a failure cube: buckets, failure signatures, screening.

Diagnosis receives raw events (the recent window); localisation wants a cube.
Three decisions are made here, each for a stated reason:

* **Buckets.** The anomalous bucket is ``[start, now]``; the baseline is cut
  into buckets of the same length before ``start`` (at most
  :data:`MAX_HISTORY`), so the localiser sees how much a slice's ratio moves
  between periods as long as the one it judges.
* **Failure signature.** What counts as failed depends on the signal: technical
  failures, business declines, risk declines, slow attempts (latency) or
  missing attempts (traffic drop). Each is a Polars expression over the
  canonical columns.
* **Screening.** Nine dimensions with tens of thousands of merchants make one
  leaf per event; the lattice over them would be slow and its multiple-testing
  bar needlessly high. Each dimension is screened first on its own (one-sided
  binomial log-likelihood ratio of its worst value, Bonferroni over all values
  at a lenient ``SCREEN_ALPHA``); only dimensions that show something, plus the
  ones monitoring fired on, enter the cube. A cause in ``{channel: nfc,
  region: CN-GD}`` lifts both marginals, so it survives screening.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from scipy.stats import chi2

from tapshield.diagnose.cube import Cube, cube_from_leaves
from tapshield.events.codes import business_decline_expr, risk_decline_expr, technical_expr
from tapshield.events.schema import DIMENSIONS

MAX_HISTORY = 30
"""History buckets at most: enough to estimate dispersion, few enough to stay fast."""

MIN_BUCKET = timedelta(minutes=1)
"""Shortest bucket: under a minute most slices see no attempt at all."""

SCREEN_ALPHA = 0.05
"""Family-wise level of the per-dimension screen. Lenient on purpose: screening
only decides which dimensions the (strict) localiser may use; dropping a real
dimension here would be unrecoverable, keeping a useless one only costs time."""

MAX_DIMS = 5
"""At most this many screened dimensions enter the cube (strongest first): causes
deeper than four dimensions are not actionable, and five keep it under a second."""

SCREEN_PRIOR = 20.0
"""Attempts' worth of the global ratio behind each value's baseline in the screen,
so a value never seen before is judged against the flow, not against zero."""

MATERIAL = 0.05
"""The screen counts a value only if it holds this share of the excess (the
localiser's materiality: a dimension cannot matter through an immaterial value)."""

SLOW_QUANTILE = 0.95
"""A latency incident counts an attempt as failed when slower than this quantile
of the baseline's latencies (so the baseline "failure" ratio is 5% by design)."""


def signature_expr(kind: str, slow_ms: float | None = None) -> pl.Expr:
    """True where an attempt counts as failed for ``kind``."""
    if kind == "technical":
        return technical_expr()
    if kind == "decline":
        return business_decline_expr() & ~risk_decline_expr()
    if kind == "risk_decline":
        return risk_decline_expr()
    if kind == "any_decline":
        return business_decline_expr()
    if kind == "slow":
        limit = float("inf") if slow_ms is None else slow_ms
        return (pl.col("latency_ms") > limit).fill_null(False) | technical_expr()
    raise ValueError(f"unknown failure signature {kind!r}")


def slow_threshold(events: pl.DataFrame, start: datetime) -> float | None:
    base = events.filter(pl.col("ts") < start).get_column("latency_ms").drop_nulls()
    if base.len() < 20:
        return None
    q = base.quantile(SLOW_QUANTILE)
    return float(q) if q is not None else None


def bucketed(events: pl.DataFrame, start: datetime, now: datetime,
             baseline_start: datetime) -> tuple[pl.DataFrame, int]:
    """Events with a ``_bucket`` column: ``0`` = ``[start, now]``, ``-k`` = k-th before."""
    width = max(now - start, MIN_BUCKET)
    history = int((start - baseline_start) / width) if start > baseline_start else 0
    history = max(1, min(history, MAX_HISTORY))
    w_us = int(width.total_seconds() * 1_000_000)
    start_us = int(start.timestamp() * 1_000_000)
    now_us = int(now.timestamp() * 1_000_000)
    ts = pl.col("ts").cast(pl.Int64)
    bucket = pl.when(ts >= start_us).then(0).otherwise((ts - start_us) // w_us)
    out = events.filter(ts <= now_us).with_columns(bucket.cast(pl.Int64).alias("_bucket"))
    out = out.filter(pl.col("_bucket") >= -history)
    return out, history


def screen_dims(frame: pl.DataFrame, failed: str, dims: Sequence[str],
                keep: Sequence[str] = ()) -> list[str]:
    """Dimensions whose worst value breaks away (see module docstring), strongest first."""
    cur_f = frame.filter(pl.col("_bucket") == 0)
    f_tot = float(cur_f.get_column(failed).sum())
    n_tot = cur_f.height
    base = frame.filter(pl.col("_bucket") < 0)
    fb, nb = float(base.get_column(failed).sum()), max(base.height, 1)
    g = (fb + 1.0) / (nb + 2.0)
    excess_total = f_tot - n_tot * g
    lazy = frame.lazy()
    tables = pl.collect_all([
        lazy.group_by(d).agg(
            pl.col(failed).filter(pl.col("_bucket") == 0).sum().alias("f"),
            (pl.col("_bucket") == 0).sum().alias("n"),
            pl.col(failed).filter(pl.col("_bucket") < 0).sum().alias("fb"),
            (pl.col("_bucket") < 0).sum().alias("nb"),
        )
        for d in dims
    ])
    scores: dict[str, float] = {}
    tests = 0
    for d, t in zip(dims, tables, strict=True):
        tests += t.height
        f = t.get_column("f").cast(pl.Float64).to_numpy()
        n = t.get_column("n").cast(pl.Float64).to_numpy()
        fb_v = t.get_column("fb").cast(pl.Float64).to_numpy()
        nb_v = t.get_column("nb").cast(pl.Float64).to_numpy()
        p = np.clip((fb_v + SCREEN_PRIOR * g) / (nb_v + SCREEN_PRIOR), 1e-6, 1 - 1e-6)
        q = np.clip(f / np.maximum(n, 1), 1e-9, 1 - 1e-9)
        llr = np.where(
            f > n * p,
            f * np.log(q / p) + (n - f) * np.log((1 - q) / (1 - p)),
            0.0,
        )
        material = (f - n * p) >= MATERIAL * max(excess_total, 1.0)
        scores[d] = float((llr * material).max()) if llr.size else 0.0
    crit = float(chi2.isf(SCREEN_ALPHA / max(tests, 1), 1)) / 2.0
    chosen = [d for d in sorted(scores, key=lambda k: -scores[k]) if scores[d] >= crit]
    chosen = chosen[:MAX_DIMS]
    for d in keep:
        if d not in chosen and d in dims:
            chosen.append(d)
    return chosen


def event_cube(frame: pl.DataFrame, failed: str, dims: Sequence[str]) -> Cube:
    """Cube of ``frame`` (bucketed, with a boolean ``failed`` column) over ``dims``.

    Rows are grouped on a 64-bit hash of the combination (about three times
    faster than grouping on several text columns); two of the ~1e5 combinations
    of a window sharing a hash has a probability below 1e-9.
    """
    dims = list(dims)
    agg = (
        frame.lazy()
        .with_columns(pl.struct(dims).hash().alias("_key"))
        .group_by("_key", "_bucket")
        .agg(pl.col(failed).sum().alias("failures"), pl.len().alias("total"),
             *[pl.col(d).first() for d in dims])
        .drop("_key")
        .collect()
    )
    current = agg.filter(pl.col("_bucket") == 0)
    history = agg.filter(pl.col("_bucket") < 0)
    return cube_from_leaves(current, history, dims, bucket="_bucket")


def volume_cube(frame: pl.DataFrame, dims: Sequence[str], history: int) -> Cube:
    """Missing attempts as failures, for traffic drops.

    Each leaf's expected volume is its mean over the history buckets; the
    bucket's ``total`` is the larger of expected and observed, its ``failures``
    the attempts that did not come. The history buckets are treated the same
    way against the same mean, so ordinary wander is the baseline.
    """
    agg = frame.group_by([*dims, "_bucket"]).agg(pl.len().alias("obs"))
    mean = (
        agg.filter(pl.col("_bucket") < 0)
        .group_by(dims)
        .agg((pl.col("obs").sum() / history).alias("exp"))
    )
    buckets = pl.DataFrame({"_bucket": list(range(-history, 1))}, schema={"_bucket": pl.Int64})
    grid = mean.join(buckets, how="cross")
    full = grid.join(agg, on=[*dims, "_bucket"], how="left", nulls_equal=True).with_columns(
        pl.col("obs").fill_null(0).cast(pl.Float64)
    )
    full = full.with_columns(
        pl.max_horizontal(pl.col("exp").round(0), pl.col("obs")).alias("total")
    ).with_columns((pl.col("total") - pl.col("obs")).alias("failures"))
    current = full.filter(pl.col("_bucket") == 0)
    past = full.filter(pl.col("_bucket") < 0)
    return cube_from_leaves(current, past, dims, bucket="_bucket")


FailureFn = Callable[[pl.DataFrame], pl.Series]

ALL_DIMS: tuple[str, ...] = DIMENSIONS
