"""A mergeable latency sketch: counts in logarithmic bins (relative accuracy 2 %).

Like DDSketch or a Prometheus native histogram: bin ``b`` holds latencies in
``[L * g**b, L * g**(b+1))`` with ``g = 1.04``, so any quantile read from it
is within 2 % of the true value, and two sketches merge by adding counts.
That is what lets per-bucket, per-slice latency distributions be combined
over any window, and lets the streaming code count a whole batch with one
vectorised binning.
"""

from __future__ import annotations

import math

import numpy as np

GAMMA = 1.04
LOW_MS = 1.0
"""Everything at or below 1 ms lands in the first bin."""
BINS = 300
"""``1.04 ** 300`` ms is about 2.5 minutes: longer latencies go in the last bin."""
EDGES: np.ndarray = LOW_MS * GAMMA ** np.arange(BINS + 1, dtype=np.float64)
"""``EDGES[b]``, ``EDGES[b+1]``: the bounds of bin ``b``."""
_LOG_G = math.log(GAMMA)


def bin_of(latency_ms: np.ndarray) -> np.ndarray:
    """Bin index of each latency; -1 for missing (NaN) values."""
    x = np.asarray(latency_ms, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.floor(np.log(np.maximum(x, LOW_MS) / LOW_MS) / _LOG_G)
    b = np.clip(b, 0, BINS - 1)
    return np.where(np.isnan(x), -1, b).astype(np.int16)


def quantiles(counts: np.ndarray, qs: tuple[float, ...]) -> list[float | None]:
    """Quantiles of a sketch (geometric midpoint of the bin; ``None`` if empty)."""
    total = float(counts.sum())
    if total <= 0:
        return [None for _ in qs]
    cum = np.cumsum(counts)
    out: list[float | None] = []
    for q in qs:
        b = int(np.searchsorted(cum, q * total, side="left"))
        b = min(b, BINS - 1)
        out.append(float(math.sqrt(EDGES[b] * EDGES[b + 1])))
    return out


def prometheus_bounds() -> list[tuple[float, int]]:
    """Histogram ``le`` bounds for /metrics: about every doubling, as bin edges.

    Returns ``(le_ms, number_of_bins_below)`` pairs so cumulative counts come
    straight from the sketch.
    """
    out: list[tuple[float, int]] = []
    for target in (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000,
                   15000, 30000):
        b = round(math.log(target / LOW_MS) / _LOG_G)
        b = min(max(b, 1), BINS)
        out.append((float(EDGES[b]), b))
    return out
