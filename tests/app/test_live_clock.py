"""`tapshield live` follows the wall clock through the analysis, so a feed that
falls silent raises a traffic drop that reaches the incidents and the sinks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import polars as pl

from tapshield.app.live import follow_clock
from tapshield.incident import Incident
from tapshield.monitor import AlertEvent, Monitor
from tapshield.pipeline import Analysis, AnalysisResult, PipelineConfig

from ..monitor.synth import at, events


class Sink:
    def __init__(self) -> None:
        self.alerts_seen: list[AlertEvent] = []
        self.incident_ids: set[str] = set()

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        self.alerts_seen.extend(events)

    def incidents(self, incidents: Sequence[Incident]) -> None:
        self.incident_ids.update(i.id for i in incidents)

    def close(self, result: AnalysisResult) -> None:
        pass


def _drops(evs: Sequence[AlertEvent]) -> list[AlertEvent]:
    return [e for e in evs if e.signal == "traffic_drop" and e.state == "firing"]


def test_a_silent_live_feed_pages_through_the_analysis() -> None:
    frame = events(1500, rate=40, seed=29).filter(pl.col("ts") < at(1493))
    sink = Sink()
    lateness = timedelta(seconds=5)
    analysis = Analysis(PipelineConfig(lateness=lateness, diagnose=False), monitor=Monitor(),
                        sinks=[sink])
    analysis.feed(frame)
    assert _drops(sink.alerts_seen) == []
    # a replay of old events is not told that time has passed
    assert follow_clock(analysis, at(1493) + timedelta(days=3)) == []
    # twenty seconds of silence on a current feed: the clock closes the buckets
    raised = follow_clock(analysis, at(1520) + lateness)
    drops = _drops(raised)
    assert [e.slice for e in drops] == [{}]
    # the change reached the sink, carrying the incident it opened
    assert _drops(sink.alerts_seen) == drops
    assert drops[0].incident_id is not None
    assert drops[0].incident_id in sink.incident_ids
