"""``tapshield analyze``: replay an events file through the whole pipeline."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from html import escape
from pathlib import Path

import polars as pl
import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tapshield.cli._app import EXIT_OK, EXIT_REJECTS, app, console, friendly
from tapshield.cli._rejects import RejectFile
from tapshield.events.changes import read_changes
from tapshield.events.read import EventReader
from tapshield.events.write import write_report_csv
from tapshield.incident import LEVEL_NAMES
from tapshield.money import format_fen
from tapshield.pipeline import Analysis, AnalysisResult, PipelineConfig, analyze_frames
from tapshield.report import ReportSection, render_report
from tapshield.storage import Store, default_url
from tapshield.storage.sink import StoreSink


@app.command()
@friendly
def analyze(
    events: Path = typer.Argument(..., help="Events file (.csv, .csv.gz, .jsonl[.gz], .parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    changes: Path | None = typer.Option(None, "--changes", help="Changes file (CSV or JSONL)."),
    portfolio: Path | None = typer.Option(
        None, "--portfolio",
        help="Loan portfolio (CSV or JSONL): adds the financing impact (impact.json, impact.html).",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Monitoring config (warning levels, detectors) (default: built-in)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default: $TAPSHIELD_DB_URL or OUT/tapshield.db)."
    ),
    max_rejects: int = typer.Option(
        0, "--max-rejects", min=0, help="Exit 0 while at most this many rows are rejected."
    ),
    lateness: float = typer.Option(
        60.0, "--lateness", min=0.0, help="Seconds to wait for out-of-order events."
    ),
    chunk_rows: int = typer.Option(500_000, "--chunk-rows", min=1, hidden=True),
) -> None:
    """Process events in event-time order as a live system would.

    Writes incidents.json, alerts.jsonl, report.html and summary.json to OUT.
    """
    out.mkdir(parents=True, exist_ok=True)
    result, read, rejected, change_rejects = run_analysis(
        events, out, changes=changes, config=config, db=db, lateness=lateness,
        chunk_rows=chunk_rows, portfolio=portfolio,
    )
    print_summary(result, out)
    if read.stats.errors:
        for e in read.stats.errors[:10]:
            console.print(f"[red]rejected[/] {e}", highlight=False, soft_wrap=True)
        console.print(f"{rejected:,} rejected row(s) written to {out / 'rejects.csv'}")
    if change_rejects:
        console.print(
            f"{change_rejects} rejected change(s) written to {out / 'changes.rejects.csv'}"
        )
    raise typer.Exit(EXIT_REJECTS if rejected + change_rejects > max_rejects else EXIT_OK)


def run_analysis(
    events: Path,
    out: Path,
    *,
    changes: Path | None = None,
    config: Path | None = None,
    db: str | None = None,
    lateness: float = 60.0,
    chunk_rows: int = 500_000,
    portfolio: Path | None = None,
) -> tuple[AnalysisResult, EventReader, int, int]:
    """The analyze command minus printing (shared with ``demo``)."""
    change_frame = None
    change_rejects = 0
    if changes is not None:
        ch = read_changes(changes)
        change_frame = ch.valid
        change_rejects = ch.rejects.height
        if change_rejects:
            write_report_csv(ch.rejects, out / "changes.rejects.csv")
    rejects = RejectFile(out / "rejects.csv")
    reader = EventReader(events, chunk_rows=chunk_rows, on_reject=rejects.write)
    store = Store(db or default_url(out))
    run_id = store.start_run("analyze", str(events))
    cfg = PipelineConfig(lateness=timedelta(seconds=lateness), monitor_config=config)
    status = "failed"
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]analysing {task.fields[name]}"),
            TextColumn("{task.fields[rows]:,} events"),
            TextColumn("{task.fields[incidents]} incident(s)"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("analyse", name=events.name, rows=0, incidents=0)

            def tick(analysis: Analysis) -> None:
                progress.update(task, rows=analysis.events_seen,
                                incidents=len(analysis.book.incidents()))

            result = analyze_frames(
                reader, changes=change_frame, config=cfg, out_dir=out,
                sinks=[StoreSink(store, run_id, cfg.tz)], on_batch=tick,
            )
        rejects.close()
        result.summary["input"] = reader.stats.as_dict()
        if portfolio is not None:
            with console.status("valuing the financing impact"):
                add_impact(result, events, portfolio, out, change_frame, cfg.tz)
        status = "ok"
    finally:
        store.finish_run(
            run_id, status=status, read=reader.stats.rows, accepted=reader.stats.accepted,
            rejected=reader.stats.rejected,
        )
        store.close()
    return result, reader, reader.stats.rejected, change_rejects


def add_impact(
    result: AnalysisResult,
    events: Path,
    portfolio: Path,
    out: Path,
    changes: pl.DataFrame | None,
    tz: str,
) -> None:
    """Value the incidents for merchants and borrowers; add it to the outputs and report."""
    from tapshield.impact import assess, write_impact
    from tapshield.impact.report import summary

    impact = assess(events, result.incidents, portfolio)
    paths = write_impact(impact, out)
    figures = summary(impact)
    result.summary["impact"] = figures
    rows = "".join(
        f"<tr><td>{escape(k.replace('_', ' '))}</td><td class=num>{escape(str(v))}</td></tr>"
        for k, v in figures.items()
    )
    html_name = Path(paths.get("html", out / "impact.html")).name
    section = ReportSection(
        "Financing impact",
        f"<table>{rows}</table><p>Per merchant, per borrower and by regulation: "
        f'<a href="{html_name}">{html_name}</a> (data in impact.json).</p>',
    )
    (out / "report.html").write_text(
        render_report(result, tz=tz, changes=changes, sections=[section]), encoding="utf-8"
    )
    (out / "summary.json").write_text(
        json.dumps(result.summary, indent=2, ensure_ascii=False, default=str) + "\n",
        encoding="utf-8",
    )


def print_summary(result: AnalysisResult, out: Path, *, max_rows: int = 20) -> None:
    """The run in a few lines: what paged, what it cost, where the rest is.

    Notices (level 4) are counted, not listed: a day of traffic has dozens of
    small fraud bursts the risk team sees in the report; the on-call engineer
    reading the terminal needs the incidents that paged.
    """
    s = result.summary
    outages = [i for i in result.incidents if i.cause != "fraud_attack"]
    attacks = [i for i in result.incidents if i.cause == "fraud_attack"]
    t = Table(show_header=False, box=None)
    t.add_row("events analysed", f"{s['events']:,}")
    if s.get("late_events"):
        t.add_row("late events", f"{s['late_events']:,}")
    by_level = Counter(i.level for i in result.incidents)
    t.add_row("incidents", f"{s['incidents']} ("
              + ", ".join(f"{by_level[lv]} {LEVEL_NAMES[lv]}" for lv in sorted(by_level))
              + ")" if by_level else "0")
    t.add_row("paging notifications", str(s["notifications"]))
    t.add_row("taps that never succeeded", f"{sum(i.failed_payments for i in outages):,}")
    t.add_row("amount not paid (yuan)", format_fen(sum(i.lost_fen for i in outages)))
    if attacks:
        t.add_row("fraud taps blocked", f"{sum(i.failed_payments for i in attacks):,} in "
                  f"{len(attacks)} attack incident(s), "
                  f"{format_fen(sum(i.lost_fen for i in attacks))} yuan refused")
    t.add_row("throughput", f"{s['events_per_second']:,} events/s")
    console.print(t)
    shown = sorted((i for i in result.incidents if i.level <= 3),
                   key=lambda i: (i.level, i.start))[:max_rows]
    if shown:
        it = Table(title="incidents that paged (levels 1-3)", title_justify="left")
        for c in ("id", "level", "start", "detected", "scope", "cause", "failed taps", "lost"):
            it.add_column(c)
        for i in shown:
            d = i.to_dict()
            scope = "; ".join(",".join(f"{k}={v}" for k, v in c.items()) for c in i.scope)
            it.add_row(
                i.id, f"{i.level} {LEVEL_NAMES[i.level]}", d["start"][11:19],
                d["detected_at"][11:19], scope or "everything",
                f"{i.cause} ({i.confidence:.0%})", f"{i.failed_payments:,}", d["lost_amount"],
            )
        console.print(it)
    notices = [i for i in result.incidents if i.level > 3]
    if notices:
        causes = Counter(i.cause for i in notices)
        console.print(f"{len(notices)} level-4 notice(s) not paged: "
                      + ", ".join(f"{c} {n}" for c, n in causes.most_common())
                      + f" (all in {out / 'incidents.json'})", highlight=False)
    impact = s.get("impact")
    if isinstance(impact, dict):
        t = Table(title="financing impact", title_justify="left", show_header=False, box=None)
        for k, v in impact.items():
            t.add_row(k.replace("_", " "), str(v))
        console.print(t)
    console.print(f"report: {out / 'report.html'}")
