"""What the pipeline asks diagnosis, and what it answers.

Diagnosis runs the moment an alert fires (and again when it escalates): it
gets the recent events (baseline and anomalous period), the changes file and
where monitoring fired, and must answer within a second with the scope, the
cause and the evidence a person can check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import polars as pl

from tapshield.signals import Signal

Cause = Literal["interface", "network", "risk_control", "fraud_attack", "release", "unknown"]
Failure = Literal["technical", "decline", "risk_decline"]


@dataclass(slots=True)
class DiagnosisRequest:
    events: pl.DataFrame
    """Canonical events from ``baseline_start`` to ``now`` (time-ordered)."""
    changes: pl.DataFrame
    """Canonical changes frame (may be empty)."""
    baseline_start: datetime
    start: datetime
    """Estimated start of the wave; events before it are the baseline."""
    now: datetime
    fired_slice: dict[str, str]
    """Where monitoring fired (``{}`` = the whole flow)."""
    signal: Signal
    """The monitor's signal (:data:`tapshield.signals.SIGNALS`)."""


@dataclass(slots=True)
class Diagnosis:
    scope: list[dict[str, str]]
    """Smallest set of combinations explaining the wave; ``[]`` = everything."""
    cause: Cause
    confidence: float
    evidence: list[str] = field(default_factory=list)
    failure: Failure = "technical"
    """Which attempts count as failed for this incident's figures."""
