"""Labelled operational metric series from the simulator, for the generic detector's benchmarks.

The generic detector was designed on NAB only. The simulator (``tapshield.simulate``)
is the project's own model of tap-to-pay traffic, with a ground truth of every fault,
so it yields labelled operational metrics the detector never saw: per-minute
approval rates and latency, with the fault windows as labels.

Each seed draws a multi-day scenario (so the time-of-day features have history)
with several faults of the library's kinds at random times, shapes and strengths,
some of them mild; nothing is chosen by looking at any detector's output. The
series of one scenario (all per minute, local time):

* ``approval/national`` and ``approval/<channel>`` for the four channels: share
  of attempts approved (failures, timeouts and declines all lower it); a fault is
  a label on the national series and on every channel it reaches (an interface
  fault on its channel, a regional network fault, a gateway release and a
  mis-firing risk rule on all of them);
* ``latency_p50/national``: median latency of the minute's attempts; labelled
  with the network faults (the ones that slow answers down).

A minute with no attempt in a slice is a missing value (empty), as an exporter
would write it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tapshield.simulate.model import Scenario
from tapshield.simulate.run import generate

CHANNELS = ("nfc", "qr", "debit_card", "wallet")
BIG_REGIONS = ("CN-GD", "CN-JS", "CN-ZJ", "CN-SD", "CN-HA", "CN-SC")
MINUTE_US = 60_000_000

#: seeds whose series were used while writing this benchmark (to check it runs and
#: that faults are visible); the figures that count are on the others
DEV_SEEDS = (1, 2, 3, 4)
HELD_OUT_SEEDS = (101, 102, 103, 104, 105, 106)


@dataclass(frozen=True)
class SimSeries:
    name: str  # seed/metric/slice
    ts_us: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    windows: list[tuple[int, int]]  # row ranges (inclusive) of the labelled faults


def draw_scenario(seed: int, days: int = 4, scale: float = 0.25, n_faults: int = 5) -> Scenario:
    """A ``days``-day scenario with ``n_faults`` random faults after the first 1.5 days."""
    rng = np.random.default_rng(seed)
    start_day = int(rng.integers(1, 28))
    start = f"2026-10-{start_day:02d}T00:00:00+08:00"
    total_min = days * 1440
    # fault starts at least 3 h apart, from 36 h on, ending 2 h before the end
    slots = np.arange(36 * 60, total_min - 3 * 60, 180)
    starts = np.sort(rng.choice(slots, size=n_faults, replace=False)
                     + rng.integers(0, 120, size=n_faults))
    faults: list[dict[str, Any]] = []
    for i, s in enumerate(starts.tolist()):
        dur = int(rng.integers(10, 61))
        kind = str(rng.choice(["interface", "network", "release", "risk_control"]))
        f: dict[str, Any] = {"id": f"f{i + 1}", "kind": kind, "start": f"+{s}m",
                             "duration": f"{dur}m"}
        if kind == "interface":
            f["channel"] = str(rng.choice(CHANNELS))
            f["failure_rate"] = round(float(rng.uniform(0.1, 0.8)), 2)
        elif kind == "network":
            f["region"] = str(rng.choice(BIG_REGIONS))
            f["timeout_rate"] = round(float(rng.uniform(0.2, 0.6)), 2)
            f["latency_factor"] = round(float(rng.uniform(2.0, 6.0)), 1)
        elif kind == "release":
            f["target"] = "gateway"
            f["version"] = f"gw-canary-{i + 1}"
            f["share"] = round(float(rng.uniform(0.1, 0.5)), 2)
            f["failure_rate"] = round(float(rng.uniform(0.2, 0.6)), 2)
        else:
            f["segment"] = {"carrier": str(rng.choice(["china_unicom", "china_telecom"]))}
            f["decline_rate"] = round(float(rng.uniform(0.3, 0.8)), 2)
        if rng.random() < 0.3:
            f["ramp_up"] = f"{int(rng.integers(3, 10))}m"
        faults.append(f)
    return Scenario.model_validate({
        "name": f"detect-bench-{seed}", "start": start, "duration": timedelta(days=days),
        "seed": seed, "scale": scale, "faults": faults})


def _reaches(fault: Any, channel: str | None) -> bool:
    if channel is None:
        return True
    return bool(fault.kind != "interface" or fault.channel == channel)


def scenario_series(seed: int) -> list[SimSeries]:
    sc = draw_scenario(seed)
    t0 = int(sc.start_ts.timestamp()) * 1_000_000
    n = int(sc.duration.total_seconds() // 60)
    minute = (pl.col("ts").dt.epoch("us") - t0) // MINUTE_US
    parts = []
    for fr in generate(sc):
        parts.append(fr.select(
            minute.alias("m"), "channel",
            (pl.col("outcome") == "approved").alias("ok"), "latency_ms"))
    ev = pl.concat(parts)
    ts = t0 + np.arange(n, dtype=np.int64) * MINUTE_US

    def fault_rows(kinds: tuple[str, ...] | None, channel: str | None) -> list[tuple[int, int]]:
        out = []
        for f in sc.faults:
            if kinds is not None and f.kind not in kinds:
                continue
            if not _reaches(f, channel):
                continue
            a, b = sc.window(f)
            lo = int((a - sc.start_ts).total_seconds() // 60)
            hi = int(np.ceil((b - sc.start_ts).total_seconds() / 60)) - 1
            out.append((lo, min(hi, n - 1)))
        return out

    def per_minute(df: pl.DataFrame, expr: pl.Expr) -> npt.NDArray[np.float64]:
        agg = df.group_by("m").agg(expr.alias("v"))
        full = np.full(n, np.nan)
        m = agg["m"].to_numpy()
        keep = (m >= 0) & (m < n)
        full[m[keep]] = agg["v"].cast(pl.Float64).to_numpy()[keep]
        return full

    series = [
        SimSeries(f"{seed}/approval/national", ts, per_minute(ev, pl.col("ok").mean()),
                  fault_rows(None, None)),
        SimSeries(f"{seed}/latency_p50/national", ts,
                  per_minute(ev, pl.col("latency_ms").median()), fault_rows(("network",), None)),
    ]
    for ch in CHANNELS:
        sub = ev.filter(pl.col("channel") == ch)
        series.append(SimSeries(f"{seed}/approval/{ch}", ts, per_minute(sub, pl.col("ok").mean()),
                                fault_rows(None, ch)))
    return series
