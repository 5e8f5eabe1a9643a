"""A small events file with one interface outage, built directly (no simulator run)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.events.write import write_events

START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
REGIONS = ["CN-GD", "CN-GX", "CN-ZJ", "CN-JS", "CN-BJ", "CN-SH"]
CHANNELS = ["nfc", "qr", "debit_card", "wallet"]


def outage_events(minutes: int = 60, rate: float = 8.0, seed: int = 7,
                  outage: tuple[int, int] = (40, 52)) -> pl.DataFrame:
    """``rate`` attempts/s for ``minutes``; NFC in CN-GD fails 80 % during ``outage``."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * rate)
    t = np.sort(rng.uniform(0, minutes * 60, n))
    # a little disorder, well inside the 60 s lateness: mobile clients buffer
    t = t + rng.exponential(0.5, n) * (rng.random(n) < 0.1)
    users = rng.integers(0, 4000, n)
    channel = rng.choice(CHANNELS, n, p=[0.4, 0.3, 0.2, 0.1])
    region = rng.choice(REGIONS, n)
    outcome = np.where(rng.random(n) < 0.02, "declined", "approved").astype(object)
    code = np.where(outcome == "declined", "51", "00").astype(object)
    hit = ((channel == "nfc") & (region == "CN-GD") & (t >= outage[0] * 60)
           & (t < outage[1] * 60) & (rng.random(n) < 0.8))
    outcome[hit] = "failed"
    code[hit] = "96"
    ts = pl.Series((t * 1e6).astype(np.int64) + int(START.timestamp() * 1e6))
    frame = pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "ts": ts.cast(pl.Datetime("us", "UTC")),
        "payment_id": [f"p{i}" for i in range(n)],
        "user_id": [f"u{u}" for u in users],
        "device_id": [f"d{u}" for u in users],
        "merchant_id": [f"m{u % 300}" for u in users],
        "channel": channel, "region": region,
        "amount_fen": rng.integers(100, 50_000, n),
        "outcome": outcome.tolist(), "response_code": code.tolist(),
        "latency_ms": np.round(rng.gamma(4, 100, n), 1),
        "carrier": rng.choice(["china_mobile", "china_unicom", "china_telecom"], n),
        "os": rng.choice(["android", "ios", "harmonyos"], n),
        "app_version": "7.9.4", "device_model": rng.choice(["XM-1", "HW-7", "OP-3"], n),
        "server_version": "gw-2026.11.1", "merchant_category": "5999",
        "risk_decision": np.where(outcome == "declined", None, "approve").tolist(),
    })
    return frame.with_columns(pl.col(c).cast(d) for c, d in CANONICAL_SCHEMA.items())


def write_outage(path: Path, **kw: object) -> Path:
    return write_events(outage_events(**kw), path)  # type: ignore[arg-type]
