"""Watch a live stream: the same pipeline and monitor as a replay, fed one-second batches.

:class:`LiveRun` wires a watch: the monitor, the pipeline, the files
(``alerts.jsonl``, ``incidents.json`` with ``out``), the notifiers
(Alertmanager, webhooks) and, on request, a Prometheus ``/metrics`` server.
Events come from JSONL lines (:func:`jsonl_batches`, validated by the events
contract's own JSONL path in :mod:`tapshield.events.read`) or from the
simulator's paced stream (:func:`scenario_batches`). Nothing here prints: the
caller adds a sink of its own to show alert changes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import polars as pl

from tapshield.app.outputs import StopFlag, open_streaming_folder, until_stopped
from tapshield.errors import RowError
from tapshield.events.changes import read_changes
from tapshield.events.idindex import EventIdIndex
from tapshield.events.read import validate_json_lines
from tapshield.incident import Incident
from tapshield.monitor import AlertEvent, Monitor, MonitorConfig
from tapshield.notify import AlertmanagerNotifier, Notifier, NotifyStats, WebhookNotifier
from tapshield.pipeline import Analysis, AnalysisResult, PipelineConfig, Sink
from tapshield.timeutil import DEFAULT_TZ, epoch_us


@dataclass(frozen=True, slots=True)
class LiveOptions:
    config: Path | None = None
    """Monitoring config (YAML); ``None`` = built-in."""
    changes: Path | None = None
    out: Path | None = None
    """Also write alerts.jsonl and incidents.json here, as they happen, then
    report.html and summary.json (the completion marker) when the stream closes;
    an earlier run's outputs are removed first, its summary.json before anything."""
    alertmanager: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    webhook_secret: str | None = None
    lateness: timedelta = timedelta(seconds=5)
    diagnose: bool = True
    tz: str = DEFAULT_TZ


@dataclass(slots=True)
class LiveOutcome:
    result: AnalysisResult
    seconds: float
    late_events: int
    notifiers: dict[str, NotifyStats] = field(default_factory=dict)
    interrupted: bool = False


class NotifySink:
    """Hands alert changes to the notifiers (they queue and send in the background)."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        for n in self.notifiers:
            n.send(events)

    def incidents(self, incidents: Sequence[Incident]) -> None:
        return None

    def close(self, result: AnalysisResult) -> None:
        return None


class _LiveStatus:
    """Puts the stream's status and row counts into the summary before it is written."""

    def __init__(self, run: LiveRun) -> None:
        self.run = run
        self.interrupted = False

    def observe(self, batch: object) -> None:
        return None

    def finish(self, result: AnalysisResult) -> None:
        result.summary["status"] = "interrupted" if self.interrupted else "complete"
        result.summary["rows_read"] = self.run.accepted + self.run.rejected
        result.summary["rows_accepted"] = self.run.accepted
        result.summary["rows_rejected"] = self.run.rejected


class LiveRun:
    """One watch of a stream; :meth:`run` it over batches."""

    def __init__(self, opts: LiveOptions, *, sinks: Sequence[Sink] = ()) -> None:
        self.opts = opts
        change_frame = read_changes(opts.changes).valid if opts.changes is not None else None
        self.monitor = Monitor(MonitorConfig.load(opts.config), changes=change_frame)
        self.notifiers: list[Notifier] = [AlertmanagerNotifier(u) for u in opts.alertmanager]
        self.notifiers += [WebhookNotifier(u, secret=opts.webhook_secret, tz=opts.tz)
                           for u in opts.webhooks]
        all_sinks: list[Sink] = [NotifySink(self.notifiers), *sinks]
        if opts.out is not None:
            from tapshield.pipeline.outputs import FileSink

            # streamed in place (tail -f), not staged: see open_streaming_folder
            open_streaming_folder(opts.out)
            all_sinks.insert(0, FileSink(opts.out, tz=opts.tz, changes=change_frame))
        pconf = PipelineConfig(lateness=opts.lateness, diagnose=opts.diagnose, tz=opts.tz)
        self.accepted = 0
        self.rejected = 0
        """Input lines rejected (counted by the caller that reads them)."""
        self.status = _LiveStatus(self)
        self.analysis = Analysis(pconf, changes=change_frame, monitor=self.monitor,
                                 sinks=all_sinks, extensions=[self.status])
        self.lock = threading.Lock()

    def serve_metrics(self, host: str, port: int) -> None:
        """Serve Prometheus ``/metrics`` (monitor and notifier figures) on ``host:port``;
        an ``OSError`` if the address cannot be bound."""
        from prometheus_client import CollectorRegistry, start_http_server

        from tapshield.metrics.monitor import MonitorCollector

        registry = CollectorRegistry()
        registry.register(MonitorCollector(self.monitor, lock=self.lock,
                                           notifiers=self.notifiers))
        start_http_server(port, addr=host, registry=registry)

    def run(self, batches: Iterable[pl.DataFrame], *,
            stop: StopFlag | None = None) -> LiveOutcome:
        """Feed ``batches`` until they end, ``stop`` is set (SIGTERM / SIGINT under
        :func:`~tapshield.app.outputs.graceful_stop`) or Ctrl-C, then close the
        stream: flush the monitor, write the summary (``status`` and the row
        counts), close the notifiers."""
        t0 = time.monotonic()
        interrupted = False
        try:
            for batch in until_stopped(batches, stop):
                with self.lock:
                    if batch.height:
                        self.accepted += batch.height
                        self.analysis.feed(batch)
                    follow_clock(self.analysis, datetime.now(UTC))
        except KeyboardInterrupt:
            interrupted = True
        interrupted = interrupted or (stop is not None and stop())
        self.status.interrupted = interrupted
        with self.lock:
            result = self.analysis.finish()
        for n in self.notifiers:
            n.close(timeout=10.0)
        return LiveOutcome(result, time.monotonic() - t0, self.monitor.late_events,
                           {n.name: n.stats for n in self.notifiers}, interrupted)


def follow_clock(analysis: Analysis, now: datetime) -> list[AlertEvent]:
    """A real-time feed that falls silent must still close buckets: follow the clock.

    Only when the events are current (their time within a minute of ``now``, the
    wall clock): a replay of old events must not be told that weeks have passed.
    The clock goes through the analysis, not the monitor alone, so what the
    silence raises (a traffic drop) is placed in an incident and reaches the
    notifiers and the outputs like any other alert change; it is returned too.
    """
    last = analysis.last_ts
    if last is None:
        return []
    lag = epoch_us(now) - last
    if 0 <= lag <= 60_000_000:
        return analysis.advance(now)
    return []


def scenario_batches(
    scenario: str, *, speed: float, batch_seconds: float
) -> Iterator[pl.DataFrame]:
    """The simulator's live stream of a library scenario, paced at ``speed``."""
    from tapshield.simulate.live import stream

    return stream(scenario, speed=speed, batch_seconds=max(batch_seconds, 0.01))


MAX_REPORTED = 20
"""Rejected rows per batch whose errors are reported one by one."""


def _pump(stream: IO[Any], out: queue.Queue[bytes | None]) -> None:
    for line in stream:
        out.put(line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line)
    out.put(None)


def jsonl_batches(
    stream: IO[Any], *, batch_seconds: float = 1.0, max_rows: int = 200_000,
    on_reject: Callable[[int, list[RowError]], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """Canonical micro-batches from JSONL lines (the public event contract, one per line).

    A batch closes every ``batch_seconds`` of wall time or ``max_rows`` lines,
    whichever comes first; a quiet stream yields empty batches so the caller
    can follow the clock. Lines are validated by the events contract's JSONL
    path (the same rules and rejects as a file); a batch's rejected rows are
    reported to ``on_reject(count, errors)``, with the line number, column and
    rule of the first ``MAX_REPORTED`` of them.
    """
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=max_rows * 4)
    threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()
    index = EventIdIndex()
    row = 0
    done = False
    while not done:
        records: list[bytes] = []
        numbers: list[int] = []
        deadline = time.monotonic() + batch_seconds
        while len(records) < max_rows:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if line is None:
                done = True
                break
            row += 1
            text = line.strip()
            if text:
                records.append(text)
                numbers.append(row)
        if not records:
            yield pl.DataFrame()
            continue
        result = validate_json_lines(records, numbers, index)
        if on_reject is not None and result.rejects.height:
            on_reject(result.rejects.height, result.errors(limit=MAX_REPORTED))
        yield result.valid
