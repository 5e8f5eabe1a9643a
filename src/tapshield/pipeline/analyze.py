"""The analysis pipeline: one code path for a file replay and a live stream.

Canonical event batches of any size go in; per batch the pipeline

1. restores event-time order (:class:`~tapshield.pipeline.ordering.Reorderer`),
2. feeds the ordered events to the :class:`~tapshield.monitor.Monitor`, which
   returns alert state changes,
3. counts the batch into the incidents already open
   (:class:`~tapshield.respond.IncidentBook`),
4. keeps the batch in the recent-events window, and
5. opens, re-diagnoses or closes incidents for the alert changes, asking
   :func:`tapshield.diagnose.diagnose` for scope and cause the moment an
   alert fires,

then hands alert changes and changed incidents to its sinks (files,
database, Alertmanager, webhooks). A replay is this loop fed 500,000-row
chunks; live mode is the same loop fed one-second batches.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from tapshield.diagnose.types import Diagnosis, DiagnosisRequest
from tapshield.events.changes import empty_changes
from tapshield.incident import Incident
from tapshield.levels import LEVEL_NAMES
from tapshield.monitor.alerts import AlertEvent, EventMonitor
from tapshield.pipeline.ordering import Reorderer
from tapshield.pipeline.window import EventWindow
from tapshield.respond.incidents import IncidentBook, IncidentPolicy
from tapshield.timeutil import DEFAULT_TZ, epoch_us, from_epoch_us, to_rfc3339

if TYPE_CHECKING:
    from tapshield.report import ReportSection


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Knobs of the pipeline itself (detection criteria live in the monitor's config)."""

    lateness: timedelta = timedelta(seconds=60)
    """How long to wait for out-of-order events before releasing a time range.
    Mobile clients and gateway batching delay events by seconds; a minute
    covers them while keeping detection within a minute of real time."""
    retention: timedelta = timedelta(hours=2)
    """Recent events kept for diagnosis and measurement: the diagnosis baseline
    (30 min) plus waves that took long to detect, with room to spare."""
    incidents: IncidentPolicy = field(default_factory=IncidentPolicy)
    monitor_config: Path | None = None
    """A monitoring config file (warning levels, detectors); ``None`` = defaults."""
    diagnose: bool = True
    tz: str = DEFAULT_TZ
    lang: str = "en"
    """Language of report.html: ``en`` or ``zh``."""


class Sink(Protocol):
    """Where the pipeline's results go; every method is called in event-time order."""

    def alerts(self, events: Sequence[AlertEvent]) -> None: ...

    def incidents(self, incidents: Sequence[Incident]) -> None: ...

    def close(self, result: AnalysisResult) -> None: ...


class Extension(Protocol):
    """A stage riding along the analysis: it sees every ordered batch once, and
    completes the result before any sink writes it.

    This is how a use case adds to one pass without a second one (the financing
    impact collects what it needs from the same batches the monitor sees) and
    how each output is written exactly once: :meth:`finish` adds its figures to
    ``result.summary`` and its report sections to ``result.sections``, then the
    sinks write the complete result.
    """

    def observe(self, batch: pl.DataFrame) -> None: ...

    def finish(self, result: AnalysisResult) -> None: ...


@dataclass(slots=True)
class AnalysisResult:
    incidents: list[Incident]
    alerts: list[AlertEvent]
    summary: dict[str, Any]
    timeline: pl.DataFrame | None = None
    sections: list[ReportSection] = field(default_factory=list)
    """Extra report sections contributed by extensions (e.g. financing impact)."""
    digest: list[dict[str, Any]] = field(default_factory=list)
    """The hourly blocked-fraud digest (``fraud_digest.json``; respond/digest.py)."""


class Analysis:
    """The streaming analysis; feed it batches, then :meth:`finish` it."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        changes: pl.DataFrame | None = None,
        monitor: EventMonitor | None = None,
        diagnoser: Callable[[DiagnosisRequest], Diagnosis] | None = None,
        sinks: Sequence[Sink] = (),
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.config = config or PipelineConfig()
        self.changes = changes if changes is not None else empty_changes()
        if monitor is None:
            from tapshield.monitor import Monitor, MonitorConfig

            monitor = Monitor(MonitorConfig.load(self.config.monitor_config), changes=self.changes)
        self.monitor = monitor
        if diagnoser is None and self.config.diagnose:
            from tapshield.diagnose import diagnose

            diagnoser = diagnose
        self.window = EventWindow(self.config.retention)
        self.book = IncidentBook(
            diagnose=diagnoser,
            window=self.window,
            changes=self.changes,
            policy=self.config.incidents,
            tz=self.config.tz,
        )
        self.reorderer = Reorderer(self.config.lateness)
        self.sinks = list(sinks)
        self.extensions = list(extensions)
        self.alerts: list[AlertEvent] = []
        self.events_seen = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self._started = time.perf_counter()
        self._busy = 0.0

    def feed(self, batch: pl.DataFrame) -> list[AlertEvent]:
        """Push a canonical batch (any size, any order); returns new alert changes."""
        t0 = time.perf_counter()
        ordered = self.reorderer.push(batch)
        out = self._step(ordered)
        self._busy += time.perf_counter() - t0
        return out

    def advance(self, now: datetime) -> list[AlertEvent]:
        """Live mode: the wall clock reached ``now``. Events held for ordering up to
        ``now - lateness`` are processed, and the monitor closes the buckets that
        ended by then, so a feed that falls silent is still watched."""
        t0 = time.perf_counter()
        watermark = now - self.config.lateness
        out = self._step(self.reorderer.release_until(epoch_us(watermark)))
        more = list(self.monitor.advance(watermark)) if hasattr(self.monitor, "advance") else []
        if more:
            more = self.book.on_alerts(more)
            self._emit(more)
            out.extend(more)
        self._busy += time.perf_counter() - t0
        return out

    def _step(self, ordered: pl.DataFrame) -> list[AlertEvent]:
        if ordered.height == 0:
            return []
        self.events_seen += ordered.height
        us = ordered["ts"].cast(pl.Int64)
        lo, hi = us.min(), us.max()
        assert isinstance(lo, int) and isinstance(hi, int)
        self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        now = from_epoch_us(self.last_ts)

        changes: list[AlertEvent] = list(self.monitor.process(ordered))
        self.book.observe(ordered, now)
        self.window.add(ordered)
        for ext in self.extensions:
            ext.observe(ordered)
        changes = self.book.on_alerts(changes)
        self._emit(changes)
        return changes

    def _emit(self, changes: list[AlertEvent]) -> None:
        self.alerts.extend(changes)
        if changes:
            for s in self.sinks:
                s.alerts(changes)
        if self.book.changed:
            changed = [i for i in self.book.incidents() if i.id in self.book.changed]
            self.book.changed.clear()
            for s in self.sinks:
                s.incidents(changed)

    def finish(self) -> AnalysisResult:
        """End of stream: drain the reorderer, flush the monitor, close the sinks."""
        t0 = time.perf_counter()
        self._step(self.reorderer.flush())
        final: list[AlertEvent] = list(self.monitor.close())
        final = self.book.on_alerts(final)
        self._emit(final)
        self._busy += time.perf_counter() - t0
        result = AnalysisResult(
            incidents=self.book.incidents(),
            alerts=list(self.alerts),
            summary=self.summary(),
            timeline=_timeline(self.monitor),
            digest=self.book.digest_rows() if self.config.incidents.digest.enabled else [],
        )
        if result.digest:
            from tapshield.report.html import digest_section

            result.sections.append(digest_section(result.digest))
        for ext in self.extensions:
            ext.finish(result)
        for s in self.sinks:
            s.close(result)
        return result

    def summary(self) -> dict[str, Any]:
        incidents = self.book.incidents()
        tz = self.config.tz
        busy = max(self._busy, 1e-9)
        return {
            "events": self.events_seen,
            "late_events": self.reorderer.late_events,
            "first_event": to_rfc3339(from_epoch_us(self.first_ts), tz) if self.first_ts else None,
            "last_event": to_rfc3339(from_epoch_us(self.last_ts), tz) if self.last_ts else None,
            "alert_changes": len(self.alerts),
            "notifications": sum(1 for a in self.alerts if a.notify),
            "incidents": len(incidents),
            "incidents_by_level": {
                f"{lvl} ({LEVEL_NAMES[lvl]})": n
                for lvl, n in sorted(Counter(i.level for i in incidents).items())
            },
            "incidents_by_cause": dict(sorted(Counter(i.cause for i in incidents).items())),
            "failed_payments": sum(i.failed_payments for i in incidents),
            "lost_fen": sum(i.lost_fen for i in incidents),
            **({"fraud_digest": self.book.digest_summary()}
               if self.config.incidents.digest.enabled else {}),
            "processing_seconds": round(busy, 3),
            "events_per_second": round(self.events_seen / busy),
        }


def _timeline(monitor: EventMonitor) -> pl.DataFrame | None:
    frame = monitor.timeline()
    return frame if isinstance(frame, pl.DataFrame) else None


def analyze_frames(
    batches: Iterable[pl.DataFrame],
    *,
    changes: pl.DataFrame | None = None,
    config: PipelineConfig | None = None,
    out_dir: Path | None = None,
    sinks: Sequence[Sink] = (),
    monitor: EventMonitor | None = None,
    diagnoser: Callable[[DiagnosisRequest], Diagnosis] | None = None,
    on_batch: Callable[[Analysis], None] | None = None,
    extensions: Sequence[Extension] = (),
) -> AnalysisResult:
    """Run the whole pipeline over canonical batches.

    With ``out_dir`` it writes ``alerts.jsonl``, ``incidents.json``,
    ``report.html`` and ``summary.json`` there (see :class:`FileSink`), each
    final file once, after the ``extensions`` completed the result.
    """
    all_sinks: list[Sink] = list(sinks)
    if out_dir is not None:
        from tapshield.pipeline.outputs import FileSink

        cfg = config or PipelineConfig()
        all_sinks.insert(0, FileSink(Path(out_dir), tz=cfg.tz, changes=changes, lang=cfg.lang))
    analysis = Analysis(
        config, changes=changes, monitor=monitor, diagnoser=diagnoser, sinks=all_sinks,
        extensions=extensions,
    )
    for batch in batches:
        analysis.feed(batch)
        if on_batch is not None:
            on_batch(analysis)
    return analysis.finish()

