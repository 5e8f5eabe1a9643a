"""``tapshield analyze``: replay an events file through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tapshield.cli._app import EXIT_OK, EXIT_REJECTS, app, console, friendly

MAX_LATENESS_S = 366 * 86_400.0
"""A lateness beyond a year is a typo (``1e300`` does not fit a duration)."""

if TYPE_CHECKING:
    from tapshield.app.analyze import AnalyzeOptions, AnalyzeOutcome
    from tapshield.app.outputs import StopFlag


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
        60.0, "--lateness", min=0.0, max=MAX_LATENESS_S,
        help="Seconds to wait for out-of-order events (at most a year).",
    ),
    chunk_rows: int = typer.Option(500_000, "--chunk-rows", min=1, hidden=True),
    lang: str = typer.Option("en", "--lang", help="Language of report.html: en or zh."),
) -> None:
    """Process events in event-time order as a live system would.

    Writes incidents.json, alerts.jsonl, report.html and summary.json to OUT.
    """
    from datetime import timedelta

    from rich.markup import escape

    from tapshield.app.analyze import AnalyzeOptions
    from tapshield.app.outputs import graceful_stop
    from tapshield.cli._show import print_summary

    with graceful_stop() as stop:
        outcome = run_with_progress(AnalyzeOptions(
            events, out, changes=changes, portfolio=portfolio, config=config, db=db,
            lateness=timedelta(seconds=lateness), chunk_rows=chunk_rows, lang=_lang(lang),
        ), stop=stop)
    print_summary(outcome.result, out)
    if outcome.input.errors:
        for e in outcome.input.errors[:10]:
            console.print(f"[red]rejected[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        console.print(f"{outcome.input.rejected:,} rejected row(s) written to "
                      f"{escape(str(out / 'rejects.csv'))}", highlight=False)
    if outcome.change_rejects:
        console.print(
            f"{outcome.change_rejects} rejected change(s) written to "
            f"{escape(str(out / 'changes.rejects.csv'))}", highlight=False,
        )
    if outcome.portfolio_rejects:
        console.print(
            f"{outcome.portfolio_rejects} rejected loan-book row(s) (their borrowers are "
            f"left out of the impact) written to "
            f"{escape(str(out / 'portfolio.rejects.csv'))}", highlight=False,
        )
    if outcome.status == "interrupted":
        console.print(f"[bold yellow]interrupted ({escape(stop.signal or 'signal')}):[/] the "
                      f"outputs cover the {outcome.input.rows:,} rows read until then; "
                      "summary.json says status \"interrupted\"", highlight=False)
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_REJECTS if outcome.rejected > max_rejects else EXIT_OK)


def run_with_progress(opts: AnalyzeOptions, stop: StopFlag | None = None) -> AnalyzeOutcome:
    """:func:`tapshield.app.analyze.analyse_file` under a live progress line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tapshield.app import analyze as use_case

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]analysing {task.fields[name]}"),
        TextColumn("{task.fields[rows]:,} events"),
        TextColumn("{task.fields[incidents]} incident(s)"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("analyse", name=opts.events.name, rows=0, incidents=0)

        def tick(p: use_case.Progress) -> None:
            progress.update(task, rows=p.events, incidents=p.incidents)

        return use_case.analyse_file(opts, on_progress=tick, stop=stop)


def _lang(value: str) -> str:
    from tapshield.cli._app import UsageError

    if value not in ("en", "zh"):
        raise UsageError(f"--lang {value!r}: en or zh")
    return value
