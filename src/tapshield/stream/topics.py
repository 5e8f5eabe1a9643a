"""Topic names, topic settings and the client settings every process shares.

One input topic ``T`` (the payment events, one JSON event per message, keyed
by ``user_id``) and three topics derived from its name:

``T.canonical``
    validated events, one Arrow IPC micro-batch per message, written to the
    same partition number as the input partition they came from;
``T.aggregates``
    per input partition and commit: bucket counts per (channel, region) and
    the partition's progress (offsets, newest event time);
``T.dead-letter``
    every message the contract refused, byte for byte, with its reason in the
    ``tapshield-reason`` header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WORKER_GROUP = "tapshield-workers"
ANALYSIS_GROUP = "tapshield-analysis"
RETENTION_MS = 7 * 24 * 3600 * 1000
"""Declared on every topic: a week of log (the analysis replays its input on restart,
so retention bounds how far back it can rebuild). Tansu's topic configuration lacks
``retention.ms``, which Quix's topic manager reads, so it is always set explicitly."""
SEQ_HEADER = "tapshield-seq"
"""Position of an event in the file it was loaded from (``stream produce``): breaks
ties between events with the same timestamp exactly as the file replay does."""
REASON_HEADER = "tapshield-reason"


@dataclass(frozen=True, slots=True)
class Topics:
    events: str

    @property
    def canonical(self) -> str:
        return f"{self.events}.canonical"

    @property
    def aggregates(self) -> str:
        return f"{self.events}.aggregates"

    @property
    def dead_letter(self) -> str:
        return f"{self.events}.dead-letter"


def consumer_config(session_timeout_ms: int = 10_000) -> dict[str, Any]:
    """Settings for every consumer: read only committed transactions, quick group joins.

    A shorter session timeout makes a dead worker's partitions move to a live one
    sooner (and group joins on Tansu quicker); 10 s is Kafka's recommended floor
    for production, tests use about 6 s.
    """
    return {
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
        "isolation.level": "read_committed",
    }


def topic_extra(retention_ms: int = RETENTION_MS) -> dict[str, str]:
    return {"retention.ms": str(retention_ms)}
