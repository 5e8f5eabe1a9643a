"""The pipeline sink that records a run's alerts and incidents in the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tapshield.incident import Incident
from tapshield.monitor.alerts import AlertEvent
from tapshield.storage.store import Store

if TYPE_CHECKING:
    from tapshield.pipeline.analyze import AnalysisResult


class StoreSink:
    """Alerts are appended as they happen; incidents are upserted when they change."""

    def __init__(self, store: Store, run_id: str, tz: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self.tz = tz

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        self.store.append_alerts(self.run_id, [e.to_dict(self.tz) for e in events])

    def incidents(self, incidents: Sequence[Incident]) -> None:
        self.store.save_incidents(self.run_id, incidents)

    def close(self, result: AnalysisResult) -> None:
        self.store.save_incidents(self.run_id, result.incidents)
