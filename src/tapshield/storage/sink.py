"""The pipeline sink that records a run's alerts and incidents in the database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

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
        # The console draws the run's national series (success rate, traffic, the
        # monitor's expectation) from the database, so a service started on it can
        # show what the analysis saw without re-reading the events.
        self.store.save_run_summary(self.run_id, {
            **_jsonable(result.summary), "timeline": minute_timeline(result.timeline)})


TIMELINE_COLUMNS = ("attempts", "taps", "approved", "technical_failures", "declines",
                    "risk_declines")
"""Counts summed per minute; rates are recomputed from them (never averaged)."""


def minute_timeline(frame: pl.DataFrame | None) -> list[dict[str, Any]]:
    """The monitor's per-bucket national series, summed per minute, as JSON rows.

    ``expected_technical_rate`` is the monitor's own expectation for the bucket,
    weighted by attempts, so the console compares against what the detector used.
    """
    if frame is None or frame.height == 0 or "bucket_start" not in frame.columns:
        return []
    cols = [c for c in TIMELINE_COLUMNS if c in frame.columns]
    aggs = [pl.col(c).sum() for c in cols]
    if "expected_technical_rate" in frame.columns and "attempts" in frame.columns:
        w = pl.when(pl.col("expected_technical_rate").is_not_null()).then(pl.col("attempts"))
        aggs.append(((pl.col("expected_technical_rate") * pl.col("attempts")).sum()
                     / w.sum()).alias("expected_technical_rate"))
    out = (frame.with_columns(pl.col("bucket_start").dt.truncate("1m").alias("minute"))
           .group_by("minute").agg(aggs).sort("minute"))
    rows = []
    for r in out.iter_rows(named=True):
        row: dict[str, Any] = {"t": int(r["minute"].timestamp())}
        for c in cols:
            row[c] = int(r[c] or 0)
        e = r.get("expected_technical_rate")
        row["expected_technical_rate"] = None if e is None or math.isnan(e) else round(float(e), 6)
        rows.append(row)
    return rows


def _jsonable(doc: Mapping[str, Any]) -> dict[str, Any]:
    import json

    return dict(json.loads(json.dumps(dict(doc), default=str)))
