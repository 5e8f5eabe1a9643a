"""A small vectorised generator of canonical events with injected faults.

Independent of the simulator on purpose: each detector test states exactly
what changed, where and when, so a test can check the detector against that
and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from tapshield.events.schema import CANONICAL_SCHEMA

T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)
CHANNELS = {"nfc": 0.5, "qr": 0.3, "debit_card": 0.1, "wallet": 0.1}
REGIONS = {"CN-GD": 0.2, "CN-JS": 0.15, "CN-ZJ": 0.15, "CN-SH": 0.1, "CN-BJ": 0.1,
           "CN-SC": 0.1, "CN-HB": 0.1, "CN-XZ": 0.1}
CARRIERS = {"china_mobile": 0.6, "china_unicom": 0.25, "china_telecom": 0.15}


@dataclass
class Fault:
    """From ``start`` to ``end`` seconds, in ``scope``: what changes."""

    start: float
    end: float
    scope: dict[str, str] = field(default_factory=dict)
    kind: str = "technical"  # technical | decline | risk | latency | silence
    rate: float = 0.8
    """Failure (or decline) probability in the scope during the fault; for
    latency the multiplier; for silence the share of events dropped."""
    flap_period: float | None = None
    """On for the first half of every period (a flapping link)."""


def _pick(rng: np.random.Generator, table: dict[str, float], n: int) -> np.ndarray:
    keys = np.array(list(table))
    p = np.array(list(table.values()), dtype=float)
    return keys[rng.choice(len(keys), size=n, p=p / p.sum())]


def events(seconds: float, rate: float = 50.0, faults: tuple[Fault, ...] = (), seed: int = 1,
           start: datetime = T0, tech_rate: float = 0.005, decline_rate: float = 0.03,
           risk_rate: float = 0.003, users: int = 20000) -> pl.DataFrame:
    """``seconds`` of traffic at ``rate`` events/s (Poisson), time-ordered."""
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * seconds))
    t = np.sort(rng.uniform(0, seconds, n))
    dims = {
        "channel": _pick(rng, CHANNELS, n),
        "region": _pick(rng, REGIONS, n),
        "carrier": _pick(rng, CARRIERS, n),
        "os": _pick(rng, {"android": 0.6, "ios": 0.4}, n),
        "app_version": _pick(rng, {"8.1.0": 0.6, "8.0.1": 0.4}, n),
        "device_model": _pick(rng, {"XM-1": 0.3, "HW-4": 0.4, "AP-3": 0.3}, n),
        "server_version": _pick(rng, {"gw-1": 0.5, "gw-2": 0.5}, n),
        "merchant_category": _pick(rng, {"5812": 0.5, "5411": 0.5}, n),
    }
    user = rng.integers(0, users, n)
    u = rng.uniform(size=n)
    outcome = np.where(u < tech_rate, "failed",
                       np.where(u < tech_rate + risk_rate, "risk",
                                np.where(u < tech_rate + risk_rate + decline_rate, "declined",
                                         "approved")))
    latency = rng.lognormal(np.log(300), 0.4, n)
    keep = np.ones(n, dtype=bool)
    for f in faults:
        on = (t >= f.start) & (t < f.end)
        if f.flap_period:
            on &= ((t - f.start) % f.flap_period) < f.flap_period / 2
        for k, v in f.scope.items():
            on &= dims[k] == v
        hit = on & (rng.uniform(size=n) < (f.rate if f.kind != "latency" else 1.0))
        if f.kind == "technical":
            outcome = np.where(hit, "failed", outcome)
        elif f.kind == "decline":
            outcome = np.where(hit, "declined", outcome)
        elif f.kind == "risk":
            outcome = np.where(hit, "risk", outcome)
        elif f.kind == "latency":
            latency = np.where(hit, latency * f.rate, latency)
        elif f.kind == "silence":
            keep &= ~hit
    code = np.select([outcome == "approved", outcome == "failed", outcome == "risk"],
                     ["00", "96", "59"], "51")
    decision = np.where(outcome == "risk", "decline", "approve")
    outcome = np.where(outcome == "risk", "declined", outcome)
    ts_us = (int(start.timestamp() * 1_000_000) + (t * 1e6).astype(np.int64))
    frame = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "ts": ts_us,
        "payment_id": [f"p{i}" for i in range(n)],
        "user_id": [f"u{x}" for x in user],
        "device_id": [f"d{x}" for x in user],
        "merchant_id": [f"m{x}" for x in rng.integers(0, 200, n)],
        **{k: v for k, v in dims.items() if k != "merchant_category"},
        "merchant_category": dims["merchant_category"],
        "amount_fen": rng.integers(100, 50000, n),
        "outcome": outcome,
        "response_code": code,
        "latency_ms": np.round(latency, 1),
        "risk_decision": decision,
    })
    frame = frame.filter(pl.Series(keep))
    return frame.with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")),
        pl.col("outcome").cast(CANONICAL_SCHEMA["outcome"]),
        pl.col("risk_decision").cast(CANONICAL_SCHEMA["risk_decision"]),
    ).select(list(CANONICAL_SCHEMA))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
