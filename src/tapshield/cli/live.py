"""``tapshield live``: watch a live stream, serve /metrics, push alerts.

The same pipeline and Monitor as ``analyze``, fed one-second micro-batches
(:mod:`tapshield.app.live`): from JSONL lines on stdin (one event per line,
the public contract), or from the simulator's paced stream (``--scenario``).
Alerts go to the console, to ``--out`` (alerts.jsonl, incidents.json), to
Alertmanager (``--alertmanager``) and to webhooks (``--webhook``); Prometheus
scrapes ``/metrics`` on ``--port``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tapshield.cli._app import (
    EXIT_OK,
    EXIT_REJECTS,
    UsageError,
    app,
    console,
    err_console,
    esc,
    friendly,
)

if TYPE_CHECKING:
    from tapshield.errors import RowError
    from tapshield.incident import Incident
    from tapshield.monitor.alerts import AlertEvent
    from tapshield.pipeline import AnalysisResult

_COLOURS = {1: "bold red", 2: "bold dark_orange", 3: "bold yellow", 4: "blue"}


class _AlertPrinter:
    """Prints alert changes as they happen."""

    def __init__(self, tz: str, quiet: bool) -> None:
        self.tz = tz
        self.quiet = quiet
        self.count = 0

    def alerts(self, events: Sequence[AlertEvent]) -> None:
        from tapshield.levels import LEVEL_NAMES
        from tapshield.timeutil import to_rfc3339

        self.count += len(events)
        if self.quiet:
            return
        for ev in events:
            where = esc(", ".join(f"{k}={v}" for k, v in ev.slice.items()) or "whole flow")
            colour = _COLOURS.get(ev.level, "white")
            console.print(
                f"{to_rfc3339(ev.ts, self.tz)} [{colour}]L{ev.level} {LEVEL_NAMES[ev.level]}[/] "
                f"{ev.state:<11} {ev.signal:<12} {where}"
                f"{'  [bold]NOTIFY[/]' if ev.notify else ''}  {esc(ev.alert_id)}",
                highlight=False, soft_wrap=True)

    def incidents(self, incidents: Sequence[Incident]) -> None:
        return None

    def close(self, result: AnalysisResult) -> None:
        return None


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
    lateness: float = typer.Option(5.0, "--lateness", min=0.0, max=366 * 86_400.0,
                                   help="Seconds to wait for out-of-order events."),
    no_diagnose: bool = typer.Option(False, "--no-diagnose", help="Skip diagnosis."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print alert changes."),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone for printed times (default: the business zone, "
        "Asia/Shanghai)."),
) -> None:
    """Watch events as they happen: Prometheus /metrics, leveled alerts, notifications."""
    from datetime import timedelta

    from tapshield.app.live import LiveOptions, LiveRun, jsonl_batches, scenario_batches
    from tapshield.timeutil import DEFAULT_TZ

    tz = tz or DEFAULT_TZ
    printer = _AlertPrinter(tz, quiet)
    run = LiveRun(LiveOptions(
        config=config, changes=changes, out=out, alertmanager=tuple(alertmanager),
        webhooks=tuple(webhook), webhook_secret=webhook_secret,
        lateness=timedelta(seconds=lateness), diagnose=not no_diagnose, tz=tz,
    ), sinks=[printer])
    if port:
        try:
            run.serve_metrics(host, port)
        except OSError as exc:
            raise UsageError(f"cannot serve /metrics on {host}:{port}: {exc}") from None
        err_console.print(f"serving Prometheus metrics on http://{host}:{port}/metrics")

    rejected = 0

    def reject(count: int, errors: list[RowError]) -> None:
        nonlocal rejected
        run.rejected += count
        for e in errors:
            if rejected < 50:
                err_console.print(f"[red]rejected[/] line {e.row}: {esc(e.column)}: {esc(e.rule)}",
                                  highlight=False)
        rejected += count

    if scenario is not None:
        batches = scenario_batches(scenario, speed=speed, batch_seconds=batch_seconds)
    else:
        if sys.stdin.isatty():
            err_console.print("reading JSONL events from stdin (Ctrl-D to end)")
        batches = jsonl_batches(sys.stdin, batch_seconds=batch_seconds, on_reject=reject)
    from tapshield.app.outputs import graceful_stop

    with graceful_stop() as stop:
        outcome = run.run(batches, stop=stop)
    if outcome.interrupted:
        err_console.print(f"interrupted ({esc(stop.signal or 'Ctrl-C')}): stream closed, "
                          "summary written, notifiers closed", highlight=False)
    console.print(
        f"{outcome.result.summary['events']:,} events in {outcome.seconds:.1f} s, "
        f"{printer.count} alert changes, {outcome.result.summary['incidents']} incidents, "
        f"{outcome.late_events:,} late events, {rejected} rejected lines")
    for name, st in outcome.notifiers.items():
        console.print(f"{name}: {st.sent} sent, {st.failed} failed, {st.retried} retried, "
                      f"{st.dropped} dropped" + (f" (last error: {st.last_error})"
                                                  if st.failed or st.dropped else ""))
    raise typer.Exit(EXIT_OK if outcome.interrupted or not rejected else EXIT_REJECTS)
