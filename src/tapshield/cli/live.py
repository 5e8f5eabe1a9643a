"""``tapshield live``: watch a live stream, serve /metrics, push alerts.

The same pipeline and Monitor as ``analyze``, fed one-second micro-batches:
from JSONL lines on stdin (one event per line, the public contract), or from
the simulator's paced stream (``--scenario``). Alerts go to the console, to
``--out`` (alerts.jsonl, incidents.json), to Alertmanager (``--alertmanager``)
and to webhooks (``--webhook``); Prometheus scrapes ``/metrics`` on ``--port``.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import typer
from prometheus_client import CollectorRegistry, start_http_server

from tapshield.cli._app import (
    EXIT_OK,
    EXIT_REJECTS,
    UsageError,
    app,
    console,
    err_console,
    friendly,
)
from tapshield.events.changes import read_changes
from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import WIRE_NAMES
from tapshield.events.validate import validate_frame
from tapshield.metrics.monitor import MonitorCollector
from tapshield.monitor import AlertEvent, Monitor, MonitorConfig
from tapshield.monitor.levels import LEVEL_NAMES
from tapshield.notify import AlertmanagerNotifier, Notifier, WebhookNotifier
from tapshield.pipeline import Analysis, AnalysisResult, PipelineConfig
from tapshield.timeutil import DEFAULT_TZ, epoch_us, to_rfc3339

_COLOURS = {1: "bold red", 2: "bold dark_orange", 3: "bold yellow", 4: "blue"}


class _AlertSink:
    """Prints alert changes and hands them to the notifiers."""

    def __init__(self, notifiers: Sequence[Notifier], tz: str, quiet: bool) -> None:
        self.notifiers = list(notifiers)
        self.tz = tz
        self.quiet = quiet
        self.count = 0

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        self.count += len(events)
        for n in self.notifiers:
            n.send(events)
        if self.quiet:
            return
        for ev in events:
            where = ", ".join(f"{k}={v}" for k, v in ev.slice.items()) or "whole flow"
            colour = _COLOURS.get(ev.level, "white")
            console.print(
                f"{to_rfc3339(ev.ts, self.tz)} [{colour}]L{ev.level} {LEVEL_NAMES[ev.level]}[/] "
                f"{ev.state:<11} {ev.signal:<12} {where}"
                f"{'  [bold]NOTIFY[/]' if ev.notify else ''}  {ev.alert_id}",
                highlight=False, soft_wrap=True)

    def incidents(self, incidents: Sequence[Any]) -> None:
        pass

    def close(self, result: AnalysisResult) -> None:
        pass


def _stdin_lines(stream: Any, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def _jsonl_batches(stream: Any, batch_seconds: float, max_rows: int,
                   on_reject: Any) -> Iterator[pl.DataFrame]:
    """Canonical micro-batches from JSONL lines; bad lines are reported and skipped."""
    lines: queue.Queue[str | None] = queue.Queue(maxsize=max_rows * 4)
    threading.Thread(target=_stdin_lines, args=(stream, lines), daemon=True).start()
    index = EventIdIndex()
    row = 0
    done = False
    while not done:
        records: list[dict[str, Any]] = []
        first_row = row + 1
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
            if not text:
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                on_reject(row, "*", f"json_syntax ({exc})")
                records.append({})  # keeps row numbers aligned; rejected as empty
                continue
            records.append({k: (None if obj.get(k) is None else str(obj.get(k)))
                            for k in WIRE_NAMES})
        if not records:
            yield pl.DataFrame()
            continue
        raw = pl.DataFrame([[r.get(k) for k in WIRE_NAMES] for r in records],
                           schema=dict.fromkeys(WIRE_NAMES, pl.String), orient="row")
        keep = pl.Series([bool(r) for r in records])
        raw = raw.with_row_index("_row", offset=first_row).filter(keep)
        if raw.height == 0:
            continue
        result = validate_frame(raw, index)
        for e in result.errors(limit=20):
            on_reject(e.row, e.column, e.rule)
        yield result.valid


@app.command()
@friendly
def live(
    scenario: str | None = typer.Option(
        None, "--scenario", "-s",
        help="Watch the simulator's live stream of this scenario instead of stdin."),
    speed: float = typer.Option(
        60.0, "--speed", help="Simulated seconds per wall second (--scenario; <= 0: no pacing)."),
    port: int = typer.Option(9464, "--port", min=0,
                             help="Serve Prometheus /metrics on this port (0: do not serve)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address for /metrics."),
    alertmanager: list[str] = typer.Option(
        [], "--alertmanager", help="Alertmanager base URL (repeatable), e.g. http://127.0.0.1:9093"),
    webhook: list[str] = typer.Option([], "--webhook", help="Webhook URL (repeatable)."),
    webhook_secret: str | None = typer.Option(
        None, "--webhook-secret", envvar="TAPSHIELD_WEBHOOK_SECRET",
        help="Sign webhook bodies (HMAC-SHA256) with this secret."),
    config: Path | None = typer.Option(None, "--config", help="Monitoring config (YAML)."),
    changes: Path | None = typer.Option(None, "--changes", help="Changes file (CSV or JSONL)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Also write alerts.jsonl and incidents.json here."),
    batch_seconds: float = typer.Option(1.0, "--batch-seconds", min=0.01,
                                        help="Micro-batch length (wall seconds)."),
    lateness: float = typer.Option(5.0, "--lateness", min=0.0,
                                   help="Seconds to wait for out-of-order events."),
    no_diagnose: bool = typer.Option(False, "--no-diagnose", help="Skip diagnosis."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print alert changes."),
    tz: str = typer.Option(DEFAULT_TZ, "--tz", help="Time zone for printed times."),
) -> None:
    """Watch events as they happen: Prometheus /metrics, leveled alerts, notifications."""
    cfg = MonitorConfig.load(config)
    change_frame = read_changes(changes).valid if changes is not None else None
    monitor = Monitor(cfg, changes=change_frame)
    notifiers: list[Notifier] = [AlertmanagerNotifier(u) for u in alertmanager]
    notifiers += [WebhookNotifier(u, secret=webhook_secret, tz=tz) for u in webhook]
    sink = _AlertSink(notifiers, tz, quiet)
    sinks: list[Any] = [sink]
    if out is not None:
        from tapshield.pipeline.outputs import FileSink

        sinks.insert(0, FileSink(out, tz=tz, changes=change_frame))
    pconf = PipelineConfig(lateness=timedelta(seconds=lateness), diagnose=not no_diagnose,
                           tz=tz)
    analysis = Analysis(pconf, changes=change_frame, monitor=monitor, sinks=sinks)
    lock = threading.Lock()
    if port:
        registry = CollectorRegistry()
        registry.register(MonitorCollector(monitor, lock=lock, notifiers=notifiers))
        try:
            start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise UsageError(f"cannot serve /metrics on {host}:{port}: {exc}") from None
        err_console.print(f"serving Prometheus metrics on http://{host}:{port}/metrics")

    rejected = 0

    def reject(row: int, column: str, rule: str) -> None:
        nonlocal rejected
        rejected += 1
        if rejected <= 50:
            err_console.print(f"[red]rejected[/] line {row}: {column}: {rule}", highlight=False)

    if scenario is not None:
        from tapshield.simulate.live import stream

        batches: Iterator[pl.DataFrame] = stream(scenario, speed=speed,
                                                 batch_seconds=max(batch_seconds, 0.01))
    else:
        if sys.stdin.isatty():
            err_console.print("reading JSONL events from stdin (Ctrl-D to end)")
        batches = _jsonl_batches(sys.stdin, batch_seconds, 200_000, reject)
    t0 = time.monotonic()
    try:
        for batch in batches:
            with lock:
                if batch.height:
                    analysis.feed(batch)
                _follow_clock(monitor, lateness)
    except KeyboardInterrupt:
        err_console.print("interrupted: closing the stream")
    with lock:
        result = analysis.finish()
    for n in notifiers:
        n.close(timeout=10.0)
    elapsed = time.monotonic() - t0
    console.print(
        f"{result.summary['events']:,} events in {elapsed:.1f} s, "
        f"{sink.count} alert changes, {result.summary['incidents']} incidents, "
        f"{monitor.late_events:,} late events, {rejected} rejected lines")
    for n in notifiers:
        st = n.stats
        console.print(f"{n.name}: {st.sent} sent, {st.failed} failed, {st.retried} retried, "
                      f"{st.dropped} dropped" + (f" (last error: {st.last_error})"
                                                  if st.failed or st.dropped else ""))
    raise typer.Exit(EXIT_REJECTS if rejected else EXIT_OK)


def _follow_clock(monitor: Monitor, lateness: float) -> None:
    """A real-time feed that falls silent must still close buckets: follow the clock.

    Only when the events are current (their time within a minute of the wall
    clock): a replay of old events must not be told that weeks have passed.
    """
    if monitor.max_ts is None:
        return
    now = datetime.now(UTC)
    lag = epoch_us(now) - monitor.max_ts
    if 0 <= lag <= 60_000_000:
        monitor.advance(now - timedelta(seconds=lateness))
