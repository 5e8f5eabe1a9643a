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

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from scipy.stats import chi2

from tapshield.diagnose.cube import NULL_VALUE, Cube, cube_from_leaves
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
                keep: Sequence[str] = (), coded: DimCodes | None = None) -> list[str]:
    """Dimensions that break away, chosen greedily and conditionally, strongest first.

    The first dimension is the one whose worst value breaks away most from its own baseline
    (one-sided Poisson log-likelihood ratio). The others are judged twice: *outside* the
    first dimension's broken values against their own baseline (an unrelated second cause:
    one carrier in one region, while the wallet channel is down), and *inside* them against
    the current lift of the rest of their cell (the region of an NFC outage; the one
    merchant behind a region's card testing), so values that merely ride on the main cause
    (every app version is up because the wallet channel is down) do not count. A dimension
    enters if its worst material value passes the Bonferroni bar at ``SCREEN_ALPHA``; at
    most ``MAX_DIMS``, strongest first.
    """
    dims = list(dims)
    if frame.height == 0 or not dims:
        return list(keep)
    now = (frame.get_column("_bucket") == 0).to_numpy()
    fail = frame.get_column(failed).cast(pl.Boolean).fill_null(False).to_numpy()
    codes, cards = (coded or DimCodes(frame)).codes(dims)
    f_now, f_base = (fail & now).astype(float), (fail & ~now).astype(float)
    n_now, n_base = now.astype(float), (~now).astype(float)
    g = (f_base.sum() + 1.0) / (n_base.sum() + 2.0)
    excess_total = max(f_now.sum() - n_now.sum() * g, 1.0)
    crit = float(chi2.isf(SCREEN_ALPHA / max(int(sum(cards.values())), 1), 1)) / 2.0
    cell = np.zeros(frame.height, dtype=np.int64)
    cells = 1
    everywhere = np.ones(frame.height, dtype=bool)

    def scores(exclude: str | None, rows: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
        """Per dimension: worst material value's LLR, and which values broke away."""
        out: dict[str, tuple[float, np.ndarray]] = {}
        w = rows.astype(float)
        for d in dims:
            if d == exclude:
                continue
            key, space, cell_of, value_of = _pairs(cell, cells, codes[d], cards[d])
            fn = np.bincount(key, weights=f_now * w, minlength=space)
            nn = np.bincount(key, weights=n_now * w, minlength=space)
            fb = np.bincount(key, weights=f_base * w, minlength=space)
            nb = np.bincount(key, weights=n_base * w, minlength=space)
            p = (fb + SCREEN_PRIOR * g) / (nb + SCREEN_PRIOR)
            if cells == 1:
                expected = nn * p
            else:
                # Lift of the rest of the value's cell (leave-one-out): a value
                # that *is* its cell's failure must not explain itself away.
                cf, cn = np.bincount(cell_of, fn, cells), np.bincount(cell_of, nn, cells)
                cfb, cnb = np.bincount(cell_of, fb, cells), np.bincount(cell_of, nb, cells)
                rest_now = ((cf[cell_of] - fn + SCREEN_PRIOR * g)
                            / (cn[cell_of] - nn + SCREEN_PRIOR))
                rest_base = ((cfb[cell_of] - fb + SCREEN_PRIOR * g)
                             / (cnb[cell_of] - nb + SCREEN_PRIOR))
                expected = nn * p * rest_now / rest_base
            fv = np.bincount(value_of, weights=fn, minlength=cards[d])
            ev = np.bincount(value_of, weights=expected, minlength=cards[d])
            llr = np.where(fv > ev, fv * np.log(np.maximum(fv, 1e-12) / np.maximum(ev, 1e-12))
                           - (fv - ev), 0.0)
            up = (fv - ev >= MATERIAL * excess_total) & (llr >= crit)
            if up.any():
                out[d] = (float(llr[up].max()), np.flatnonzero(up))
        return out

    first = scores(None, everywhere)
    if not first:
        return [d for d in keep if d in dims]
    top = max(first, key=lambda k: first[k][0])
    broken = np.isin(codes[top], first[top][1])
    # Outside the main cause's values: plain screen (finds unrelated causes).
    outside = scores(top, ~broken)
    # Inside them: each value expected at its baseline times the current lift
    # of the rest of its cell of ``top`` (finds the other dimensions of a deep
    # cause, not the values that merely ride on it).
    cell, cells, _, _ = _pairs(cell, cells, codes[top], cards[top])
    inside = scores(top, broken)
    rest = {d: max(outside.get(d, (0.0,))[0], inside.get(d, (0.0,))[0])
            for d in dims if d in outside or d in inside}  # in dims order: ties break alike
    chosen = [top, *sorted(rest, key=lambda k: -rest[k])][:MAX_DIMS]
    for d in keep:
        if d not in chosen and d in dims:
            chosen.append(d)
    return chosen


def _codes(frame: pl.DataFrame, dims: Sequence[str]) -> tuple[dict[str, np.ndarray],
                                                            dict[str, int]]:
    """Dense integer codes of each dimension (nulls are a value of their own)."""
    phys = frame.select([pl.col(d).cast(pl.String).fill_null(NULL_VALUE)
                         .cast(pl.Categorical).to_physical().alias(d) for d in dims])
    codes: dict[str, np.ndarray] = {}
    cards: dict[str, int] = {}
    for d in dims:
        raw = phys.get_column(d).to_numpy().astype(np.int64)
        dense, k = _dense(raw, int(raw.max()) + 1 if raw.size else 1)
        codes[d], cards[d] = dense, k
    return codes, cards


class DimCodes:
    """Dense codes of a frame's dimensions, each computed once (see :func:`_codes`).

    A diagnosis screens and cubes the same window up to twice (an attack is
    localised again on the dimensions that say where it hits): the codes of a
    dimension depend only on its column, so they are computed once for the
    frame and shared, and so are the sorted labels the cube names leaves by.
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self._codes: dict[str, np.ndarray] = {}
        self._cards: dict[str, int] = {}
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def codes(self, dims: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        missing = [d for d in dims if d not in self._codes]
        if missing:
            codes, cards = _codes(self.frame, missing)
            self._codes.update(codes)
            self._cards.update(cards)
        return {d: self._codes[d] for d in dims}, {d: self._cards[d] for d in dims}

    def sorted_labels(self, dim: str) -> tuple[np.ndarray, np.ndarray]:
        """(the dimension's values in sorted order, each dense code's place in it).

        Python orders ``str`` by code point, which for UTF-8 text is the byte
        order Polars sorts by, so the labels are those of ``unique().sort()``.
        """
        got = self._sorted.get(dim)
        if got is None:
            codes, cards = self.codes([dim])
            code, card = codes[dim], cards[dim]
            _, first = np.unique(code, return_index=True)  # first row of each code 0..card-1
            text = self.frame.get_column(dim).cast(pl.String).gather(first).to_list()
            values = np.asarray([NULL_VALUE if v is None else v for v in text], dtype=object)
            order = np.argsort(values, kind="stable")
            place = np.empty(card, dtype=np.int64)
            place[order] = np.arange(card)
            got = (values[order], place)
            self._sorted[dim] = got
        return got


def _pairs(cell: np.ndarray, cells: int, code: np.ndarray,
           card: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Dense ids of (cell, value) pairs, their count, and each pair's cell and value."""
    raw = cell * card + code
    space = cells * card
    if space <= max(4 * raw.size, 1 << 16):
        ids = np.arange(space)
        return raw, space, ids // card, ids % card
    uniq, inv = np.unique(raw, return_inverse=True)
    return inv.astype(np.int64).reshape(-1), int(uniq.size), uniq // card, uniq % card


def _dense(key: np.ndarray, space: int) -> tuple[np.ndarray, int]:
    """Renumber ``key`` to ``0..k-1`` (direct addressing when the space is small)."""
    if space <= max(4 * key.size, 1 << 16):
        present = np.zeros(space, dtype=bool)
        present[key] = True
        index = np.cumsum(present) - 1
        return index[key].astype(np.int64), int(present.sum())
    uniq, inv = np.unique(key, return_inverse=True)
    return inv.astype(np.int64).reshape(-1), int(uniq.size)


def event_cube(frame: pl.DataFrame, failed: str, dims: Sequence[str],
               coded: DimCodes | None = None) -> Cube:
    """Cube of ``frame`` (bucketed, with a boolean ``failed`` column) over ``dims``.

    Built from the dimensions' dense codes (:class:`DimCodes`, shared with the
    screen) in NumPy: the labels are each dimension's values sorted, the
    leaves come in order of first appearance (the anomalous bucket's rows
    first, then the history's, as
    :func:`~tapshield.diagnose.cube.cube_from_leaves` orders them) and the
    counts are integer sums. An incident's diagnosis builds one or two cubes
    of a window of tens of thousands of events; the group-by, joins and
    look-ups this replaces were a quarter of its time.
    :func:`event_cube_frames` builds the same cube the long way (group-by,
    then ``cube_from_leaves``); ``tests/diagnose/test_fast_paths.py`` checks
    that both give identical cubes.
    """
    dims = list(dims)
    if not dims or frame.height == 0:
        return event_cube_frames(frame, failed, dims)
    coded = coded or DimCodes(frame)
    dense, _ = coded.codes(dims)
    labels: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for d in dims:
        lab, place = coded.sorted_labels(d)
        labels.append(lab)
        codes.append(place[dense[d]])
    fail = frame.get_column(failed).cast(pl.Boolean).fill_null(False).to_numpy()
    bucket = frame.get_column("_bucket").cast(pl.Int64).to_numpy()
    key, space = codes[0], len(labels[0])
    for c, lab in zip(codes[1:], labels[1:], strict=True):
        key, space = _dense(key * len(lab) + c, space * len(lab))
    now = bucket == 0
    # Leaves in order of first appearance: anomalous-bucket rows first, then history rows.
    order = np.concatenate([np.flatnonzero(now), np.flatnonzero(~now)])
    uniq, first, inv = np.unique(key[order], return_index=True, return_inverse=True)
    rank_of = np.empty(uniq.size, dtype=np.int64)
    rank_of[np.argsort(first, kind="stable")] = np.arange(uniq.size)
    leaf = np.empty(frame.height, dtype=np.int64)
    leaf[order] = rank_of[inv.reshape(-1)]
    n_leaves = int(uniq.size)
    first_row = np.empty(n_leaves, dtype=np.int64)
    first_row[rank_of] = order[first]
    cube_codes = np.column_stack([c[first_row] for c in codes])
    # (``astype``: NumPy's bincount of nothing is int64 even with float weights)
    f = np.bincount(leaf[now], weights=fail[now].astype(float), minlength=n_leaves).astype(float)
    n = np.bincount(leaf[now], minlength=n_leaves).astype(float)
    past = ~now
    buckets = np.unique(bucket[past])
    hf = np.zeros((n_leaves, buckets.size))
    hn = np.zeros((n_leaves, buckets.size))
    if buckets.size:
        cell = leaf[past] * buckets.size + np.searchsorted(buckets, bucket[past])
        size = n_leaves * buckets.size
        hf = np.bincount(cell, weights=fail[past].astype(float), minlength=size).astype(
            float).reshape(n_leaves, buckets.size)
        hn = np.bincount(cell, minlength=size).astype(float).reshape(n_leaves, buckets.size)
    return Cube(dims=tuple(dims), labels=tuple(labels), codes=cube_codes, f=f, n=n, hf=hf,
                hn=hn, history=tuple(int(b) for b in buckets))


def event_cube_frames(frame: pl.DataFrame, failed: str, dims: Sequence[str]) -> Cube:
    """:func:`event_cube` the long way: group-by, then ``cube_from_leaves``.

    Rows are grouped on a 64-bit hash of the combination (about three times
    faster than grouping on several text columns); two of the ~1e5 combinations
    of a window sharing a hash has a probability below 1e-9.
    """
    dims = list(dims)
    agg = (
        frame.lazy()
        .with_columns(pl.struct(dims).hash().alias("_key"))
        .group_by("_key", "_bucket", maintain_order=True)
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
    agg = frame.group_by([*dims, "_bucket"], maintain_order=True).agg(pl.len().alias("obs"))
    mean = (
        agg.filter(pl.col("_bucket") < 0)
        .group_by(dims, maintain_order=True)
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


ALL_DIMS: tuple[str, ...] = DIMENSIONS
