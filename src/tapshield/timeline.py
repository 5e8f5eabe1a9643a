"""The timeline contract: the national series per bucket that the monitor
produces and the reports draw.

Declared once here and checked on both sides: the monitor checks what it
produces (:meth:`tapshield.monitor.Monitor.timeline`), the report checks what
it reads (:func:`tapshield.report.render_report`), and both name columns
through the constants below. A renamed column is then an error at the
producer's test, not a report that silently stops drawing its charts (which
is what happened when the columns became ``bucket_start``, ``technical_rate``
and ``latency_p50_ms``).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from tapshield.errors import ContractError
from tapshield.timeutil import TS_DTYPE

BUCKET_START: Final = "bucket_start"
ATTEMPTS: Final = "attempts"
TECHNICAL_RATE: Final = "technical_rate"
DECLINE_RATE: Final = "decline_rate"
RISK_DECLINE_RATE: Final = "risk_decline_rate"
LATENCY_P50_MS: Final = "latency_p50_ms"
LATENCY_P95_MS: Final = "latency_p95_ms"
LATENCY_P99_MS: Final = "latency_p99_ms"

TIMELINE_SCHEMA: Final[dict[str, pl.DataType]] = {
    BUCKET_START: TS_DTYPE,
    ATTEMPTS: pl.Int64(),
    "taps": pl.Int64(),
    "approved": pl.Int64(),
    "technical_failures": pl.Int64(),
    "declines": pl.Int64(),
    "risk_declines": pl.Int64(),
    "success_rate": pl.Float64(),
    TECHNICAL_RATE: pl.Float64(),
    DECLINE_RATE: pl.Float64(),
    RISK_DECLINE_RATE: pl.Float64(),
    LATENCY_P50_MS: pl.Float64(),
    LATENCY_P95_MS: pl.Float64(),
    LATENCY_P99_MS: pl.Float64(),
    "expected_technical_rate": pl.Float64(),
    "technical_failed_fen": pl.Int64(),
    "late_events": pl.Int64(),
    "open_alerts": pl.Int64(),
}
"""One row per closed bucket of the whole flow, in time order. Rates are
fractions of ``attempts`` (null where a bucket had none); latencies are in
milliseconds (null without latency data); ``expected_technical_rate`` is the
seasonal expectation (null until the profile is warm)."""


def check_timeline(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    """``frame`` if it has exactly the contract's columns and types, else a
    :class:`ContractError` naming each column that is missing, extra or mistyped."""
    problems = []
    for name, dtype in TIMELINE_SCHEMA.items():
        if name not in frame.schema:
            problems.append(f"missing column {name}")
        elif frame.schema[name] != dtype:
            problems.append(f"column {name} is {frame.schema[name]}, the contract says {dtype}")
    problems += [f"extra column {n}" for n in frame.columns if n not in TIMELINE_SCHEMA]
    if problems:
        raise ContractError(f"{where}: timeline breaks its contract: " + "; ".join(problems))
    return frame


def empty_timeline() -> pl.DataFrame:
    return pl.DataFrame(schema=TIMELINE_SCHEMA)
