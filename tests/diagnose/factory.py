"""Hand-built canonical event sets, one fault at a time, for diagnosis tests.

A steady background flow (every channel, region, carrier, version) with
realistic background rates: 0.5% technical failures (91/96), 2% business
declines (51/05), 0.4% risk declines (59). Faults rewrite the outcome of a
share of the attempts inside their slice after the wave starts, or add
attack traffic. Everything is vectorised and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import polars as pl

from tapshield.events.changes import CHANGES
from tapshield.events.schema import CANONICAL_SCHEMA

T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
BASELINE = timedelta(minutes=30)
WAVE = timedelta(minutes=5)
START = T0 + BASELINE
NOW = START + WAVE

VOCAB: dict[str, list[str]] = {
    "channel": ["nfc", "qr", "wallet", "debit_card"],
    "region": ["CN-GD", "CN-SH", "CN-BJ", "CN-JS", "CN-ZJ", "CN-SC"],
    "carrier": ["china_mobile", "china_unicom", "china_telecom"],
    "os": ["android", "ios", "harmonyos"],
    "app_version": ["8.0.1", "8.1.0"],
    "device_model": ["HW-1", "HW-2", "HW-6", "AP-1", "AP-2", "XM-1", "OP-3"],
    "server_version": ["gw-2026.11.1", "gw-2026.10.2"],
    "merchant_category": ["5812", "5411", "5999", "4121"],
}


@cache
def _background(rate_per_min: float, seed: int) -> pl.DataFrame:
    """The steady flow (cached: frames are immutable, faults build new ones)."""
    rng = np.random.default_rng(seed)
    minutes = (BASELINE + WAVE).total_seconds() / 60
    n = int(rate_per_min * minutes)
    offset_us = np.sort(rng.random(n) * (BASELINE + WAVE).total_seconds() * 1e6).astype(np.int64)
    cols: dict[str, object] = {}
    merchants = rng.integers(0, 3000, n)
    for dim, values in VOCAB.items():
        if dim == "merchant_category":
            continue
        w = np.linspace(2.0, 1.0, len(values))
        cols[dim] = np.asarray(values)[rng.choice(len(values), n, p=w / w.sum())]
    u = rng.random(n)
    outcome = np.where(u < 0.005, "failed", np.where(u < 0.029, "declined", "approved"))
    code = np.where(u < 0.0025, "96", np.where(u < 0.005, "91",
                    np.where(u < 0.025, "51", np.where(u < 0.029, "59", "00"))))
    risk = np.where((u >= 0.025) & (u < 0.029), "decline", "approve")
    users = rng.integers(0, 200_000, n)
    idx = pl.int_range(n, eager=True).cast(pl.String)
    return pl.DataFrame({
        "event_id": "e" + idx,
        "ts": pl.Series(offset_us).cast(pl.Duration("us")) + T0,
        "payment_id": "p" + idx,
        "user_id": "u" + pl.Series(users).cast(pl.String),
        "device_id": "d" + pl.Series(users).cast(pl.String),
        "merchant_id": "m" + pl.Series(merchants).cast(pl.String),
        **cols,
        "merchant_category": _category(merchants),
        "amount_fen": rng.integers(500, 50_000, n),
        "outcome": outcome,
        "response_code": code,
        "latency_ms": rng.gamma(4.0, 60.0, n),
        "risk_decision": risk,
    })


def _category(merchants: np.ndarray) -> np.ndarray:
    """Each merchant has one category."""
    return np.asarray(VOCAB["merchant_category"])[merchants % len(VOCAB["merchant_category"])]


@dataclass
class Flow:
    """The background flow plus the faults applied to it."""

    rate_per_min: float = 600.0
    seed: int = 7
    frame: pl.DataFrame = field(init=False)
    changes: list[dict[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.frame = _background(self.rate_per_min, self.seed)

    # -- faults -------------------------------------------------------------

    def _inside(self, scope: dict[str, str], since: datetime = START) -> pl.Expr:
        e = pl.col("ts") >= since
        for k, v in scope.items():
            e = e & (pl.col(k) == v)
        return e

    def technical(self, scope: dict[str, str], rate: float, codes: list[str],
                  timeout: bool = False, latency: float = 1.0, seed: int = 1,
                  since: datetime = START) -> Flow:
        """A share ``rate`` of the slice's attempts fail with ``codes`` from ``since``."""
        rng = np.random.default_rng(seed)
        hit = self.frame.select(self._inside(scope, since)).to_series().to_numpy()
        hit &= rng.random(hit.size) < rate
        code = np.asarray(codes)[rng.integers(0, len(codes), hit.size)]
        self.frame = self.frame.with_columns(
            pl.when(pl.Series(hit)).then(pl.lit("timeout" if timeout else "failed"))
            .otherwise(pl.col("outcome")).alias("outcome"),
            pl.when(pl.Series(hit)).then(pl.Series(code)).otherwise(pl.col("response_code"))
            .alias("response_code"),
            pl.when(pl.Series(hit)).then(pl.col("latency_ms") * latency)
            .otherwise(pl.col("latency_ms")).alias("latency_ms"),
        )
        return self

    def risk(self, scope: dict[str, str], rate: float, seed: int = 2) -> Flow:
        """The risk engine declines (59) a share of ordinary customers in the slice."""
        rng = np.random.default_rng(seed)
        hit = self.frame.select(self._inside(scope) & (pl.col("outcome") == "approved")
                                ).to_series().to_numpy()
        hit &= rng.random(hit.size) < rate
        s = pl.Series(hit)
        self.frame = self.frame.with_columns(
            pl.when(s).then(pl.lit("declined")).otherwise(pl.col("outcome")).alias("outcome"),
            pl.when(s).then(pl.lit("59")).otherwise(pl.col("response_code"))
            .alias("response_code"),
            pl.when(s).then(pl.lit("decline")).otherwise(pl.col("risk_decision"))
            .alias("risk_decision"),
        )
        return self

    def attack(self, taps: int, devices: int, accounts: int, merchant: str | None = None,
               region: str | None = None, tiny: bool = False, seed: int = 3) -> Flow:
        """Attack traffic from a few new devices, rightly declined (95%)."""
        rng = np.random.default_rng(seed)
        ts = [START + timedelta(seconds=float(s))
              for s in np.sort(rng.random(taps)) * WAVE.total_seconds()]
        blocked = rng.random(taps) < 0.95
        shops = (np.full(taps, int(merchant[1:])) if merchant
                 else rng.integers(0, 3000, taps))
        rows = pl.DataFrame({
            "event_id": [f"a{i}" for i in range(taps)],
            "ts": ts,
            "payment_id": [f"pa{i}" for i in range(taps)],
            "user_id": [f"fraud-u{x}" for x in rng.integers(0, accounts, taps)],
            "device_id": [f"fraud-d{x}" for x in rng.integers(0, devices, taps)],
            "merchant_id": [f"m{x}" for x in shops],
            "channel": np.asarray(VOCAB["channel"])[rng.integers(0, 2, taps)],
            "region": region or "CN-GD", "carrier": "china_mobile",
            "os": "android", "app_version": "8.1.0", "device_model": "HW-6",
            "server_version": np.asarray(VOCAB["server_version"])[rng.integers(0, 2, taps)],
            "merchant_category": _category(shops),
            "amount_fen": (rng.integers(1, 200, taps) if tiny
                           else rng.integers(10_000, 40_000, taps)),
            "outcome": np.where(blocked, "declined", "approved"),
            "response_code": np.where(blocked, "59", "00"),
            "latency_ms": rng.gamma(4.0, 60.0, taps),
            "risk_decision": np.where(blocked, "decline", "approve"),
        })
        self.frame = pl.concat([self.frame, rows.select(self.frame.columns)],
                               how="vertical_relaxed")
        return self

    def change(self, ts: datetime, kind: str, component: str,
               version: str | None = None) -> Flow:
        self.changes.append({"ts": ts.isoformat(), "kind": kind, "component": component,
                             "version": version, "end_ts": None, "note": None})
        return self

    # -- outputs ------------------------------------------------------------

    def events(self) -> pl.DataFrame:
        return self.frame.sort("ts").select(
            [pl.col(c).cast(t) for c, t in CANONICAL_SCHEMA.items()]
        )

    def changes_frame(self) -> pl.DataFrame:
        if not self.changes:
            return CHANGES.empty()
        raw = pl.DataFrame(self.changes, schema=dict.fromkeys(
            ("ts", "kind", "component", "version", "end_ts", "note"), pl.String))
        result = CHANGES.validate(raw)
        assert result.rejects.height == 0, result.rejects
        return result.valid.sort("ts")
