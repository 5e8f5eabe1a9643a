"""Builders for contract test rows."""

from __future__ import annotations

from typing import Any

import polars as pl

from tapshield.events.schema import WIRE_NAMES

GOOD: dict[str, str] = {
    "event_id": "e1",
    "ts": "2026-11-11T20:00:00.250+08:00",
    "payment_id": "p1",
    "user_id": "u1",
    "device_id": "d1",
    "merchant_id": "m1",
    "channel": "nfc",
    "region": "CN-GD",
    "amount": "12.50",
    "outcome": "approved",
    "response_code": "00",
    "latency_ms": "230.5",
    "carrier": "china_mobile",
    "os": "android",
    "app_version": "8.1.0",
    "device_model": "HW-1",
    "server_version": "gw-2026.11.1",
    "merchant_category": "5812",
    "risk_decision": "approve",
}


def rows(*changes: dict[str, Any]) -> pl.DataFrame:
    """One row per ``changes`` dict applied over the GOOD row (unique event ids)."""
    out = []
    for i, ch in enumerate(changes):
        r = dict(GOOD)
        r["event_id"] = f"e{i + 1}"
        r["payment_id"] = f"p{i + 1}"
        r.update(ch)
        out.append(r)
    return pl.DataFrame(out, schema=dict.fromkeys(WIRE_NAMES, pl.String()))
