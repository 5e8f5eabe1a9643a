"""Builders of small, fully known event streams for the impact tests.

``regular_events`` lays down the same taps every day (so every week's
hour-of-week is identical and the counterfactual is exact), then an outage
that fails a share of one channel's taps and a share of those failures
recaptured on another channel a few minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.incident import Incident

T0 = datetime(2026, 10, 5, 16, 0, tzinfo=UTC)  # 2026-10-06 00:00 +08:00, a Tuesday


@dataclass
class Outage:
    start: datetime
    end: datetime
    channel: str = "nfc"
    fail_every: int = 1
    """Fail every n-th tap of the channel inside the outage (1 = all)."""
    recapture_every: int | None = None
    """Of the failed taps, every n-th is recaptured (None = none)."""
    recapture_share: tuple[int, int] | None = None
    """Alternatively: recapture ``a`` of every ``b`` failed taps."""
    recapture_channel: str = "qr"
    code: str = "96"


@dataclass
class Merchant:
    merchant_id: str
    region: str = "CN-GD"
    taps_per_day: dict[str, int] = field(default_factory=lambda: {"nfc": 35, "qr": 65})
    amount_fen: int = 100_000  # 1,000.00 yuan
    category: str = "5812"


def _tap(i: int, ts: datetime, m: Merchant, channel: str, outcome: str, code: str,
         user: str, payment: str, amount: int) -> dict[str, object]:
    return {
        "event_id": f"e{i}", "ts": ts, "payment_id": payment, "user_id": user,
        "device_id": f"d-{user}", "merchant_id": m.merchant_id, "channel": channel,
        "region": m.region, "amount_fen": amount, "outcome": outcome, "response_code": code,
        "latency_ms": 200.0, "carrier": "china_mobile", "os": "android", "app_version": "8.1.0",
        "device_model": "HW-1", "server_version": "gw-1", "merchant_category": m.category,
        "risk_decision": "approve",
    }


def regular_events(
    merchants: list[Merchant],
    *,
    start: datetime = T0,
    days: int = 35,
    outages: list[Outage] = (),  # type: ignore[assignment]
) -> pl.DataFrame:
    """Identical days of taps (between 08:00 and 22:00 local), with outages applied."""
    rows: list[dict[str, object]] = []
    seq = iter(range(10**9))
    for d in range(days):
        day0 = start + timedelta(days=d)
        for m in merchants:
            for channel, n in m.taps_per_day.items():
                for k in range(n):
                    # n taps spread over 14 hours from 08:00 local, at the same times every day
                    ts = day0 + timedelta(hours=8, seconds=(k * 14 * 3600) // n + 7)
                    outcome, code = "approved", "00"
                    user = f"u-{m.merchant_id}-{channel}-{d}-{k}"
                    tap_no = next(seq)
                    for o in outages:
                        if o.channel != channel or not o.start <= ts <= o.end:
                            continue
                        if k % o.fail_every != 0:
                            continue
                        outcome, code = "failed", o.code
                        failed_no = k // o.fail_every
                        recaptured = (
                            o.recapture_every is not None and failed_no % o.recapture_every == 0
                        ) or (
                            o.recapture_share is not None
                            and failed_no % o.recapture_share[1] < o.recapture_share[0]
                        )
                        if recaptured:
                            r = next(seq)
                            rows.append(_tap(r, ts + timedelta(minutes=3), m,
                                             o.recapture_channel, "approved", "00", user,
                                             f"p{r}", m.amount_fen))
                    rows.append(_tap(tap_no, ts, m, channel, outcome, code, user, f"p{tap_no}",
                                     m.amount_fen))
    frame = pl.DataFrame(rows, schema=CANONICAL_SCHEMA, orient="row") if rows else pl.DataFrame(
        schema=CANONICAL_SCHEMA)
    return frame.sort("ts")


def incident(start: datetime, end: datetime | None, scope: list[dict[str, str]],
             cause: str = "interface", id: str = "inc-1") -> Incident:
    return Incident(id=id, start=start, detected_at=start + timedelta(minutes=2), level=1,
                    end=end, scope=scope, cause=cause)
