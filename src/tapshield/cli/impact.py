"""``tapshield impact`` and ``tapshield portfolio``: the financing impact of incidents.

``impact`` reads events, incidents (``incidents.json``, or a simulator
``truth.json`` for a rehearsal) and a loan book, and writes ``impact.json``,
``impact.html`` and two CSV tables. ``portfolio`` writes a realistic loan book
for the merchants of an events file, to rehearse with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tapshield.cli._app import EXIT_OK, EXIT_REJECTS, UsageError, app, console, esc, friendly

if TYPE_CHECKING:
    import polars as pl

    from tapshield.impact.assess import ImpactResult


@app.command()
@friendly
def impact(
    events: Path = typer.Option(..., "--events", "-e", help="Events file (.csv, .csv.gz, "
                                ".jsonl[.gz], .parquet): history before the incidents helps."),
    incidents: Path = typer.Option(..., "--incidents", "-i", help="incidents.json from "
                                   "`tapshield analyze`, or a simulator truth.json."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for impact.json, impact.html "
                             "and the CSV tables."),
    portfolio: Path | None = typer.Option(None, "--portfolio", "-p", help="Loan book (.csv or "
                                          ".jsonl, see docs/impact.md); without it only lost "
                                          "sales and the regulatory classification."),
    schedule: Path | None = typer.Option(None, "--schedule", help="Optional repayment schedule "
                                         "(facility_id, due_date, amount)."),
    config: Path | None = typer.Option(None, "--config", help="Impact model settings (YAML)."),
    regulatory: Path | None = typer.Option(None, "--regulatory", help="Your own regulatory "
                                           "thresholds (a copy of impact/regulatory.yaml)."),
    max_rejects: int = typer.Option(0, "--max-rejects", min=0, help="Exit 0 while at most this "
                                    "many input rows (events + portfolio) are rejected."),
) -> None:
    """Lost sales per merchant, borrower stress, actions and regulatory class of incidents."""
    from tapshield.app.impact import ImpactOptions, value_impact
    from tapshield.cli._progress import reading_progress

    with reading_progress(events) as advance:
        outcome = value_impact(
            ImpactOptions(events, incidents, out, portfolio=portfolio, schedule=schedule,
                          config=config, regulatory=regulatory),
            on_batch=lambda stats: advance(stats.rows),
        )
    if not outcome.result.incidents:
        console.print("[yellow]no incidents to assess[/]")
    pf = outcome.portfolio
    if pf is not None and pf.rejected:
        for e in pf.errors[:10]:
            console.print(f"[red]portfolio rejected[/] {esc(e)}", highlight=False, soft_wrap=True)
        console.print(f"{pf.rejected} portfolio row(s) rejected: see "
                      f"{esc(outcome.portfolio_rejects)}",
                      highlight=False)
    for e in outcome.events.errors[:10]:
        console.print(f"[red]events rejected[/] {esc(e)}", highlight=False, soft_wrap=True)
    _print(outcome.result, outcome.paths, outcome.events.rows, outcome.events.rejected)
    raise typer.Exit(EXIT_REJECTS if outcome.rejected > max_rejects else EXIT_OK)


def _print(result: ImpactResult, paths: dict[str, Path], rows: int, rejected: int) -> None:
    from rich.table import Table

    from tapshield.money import format_fen

    t = Table(title="net lost sales by incident (yuan, after recapture)", title_justify="left")
    t.add_column("incident", overflow="fold")
    t.add_column("net lost", justify="right", no_wrap=True)
    t.add_column(f"{result.config.confidence} band", justify="right", no_wrap=True)
    t.add_column("DORA", no_wrap=True)
    t.add_column("PBOC grade", overflow="fold")
    for i in result.incidents:
        tot = i.totals
        t.add_row(f"{esc(i.window.id)} ({esc(i.window.incident.cause)})",
                  format_fen(tot["net_fen"]),
                  f"{format_fen(tot['net_low_fen'])}-{format_fen(tot['net_high_fen'])}",
                  i.dora["classification"], i.prc["grade"])
    console.print(t)
    if result.portfolio is not None:
        p = result.portfolio["totals"]
        s = Table(show_header=False, box=None, title="loan book", title_justify="left")
        s.add_row("borrowers affected", f"{p['borrowers_affected']:,} of {p['borrowers']:,}")
        s.add_row("operational stress", f"{p['operational_stress']:,}")
        s.add_row("pre-existing credit problems", f"{p['pre_existing_credit']:,}")
        s.add_row("exposure at risk", format_fen(p["exposure_at_risk_fen"]))
        s.add_row("covenant breaches caused", f"{p['covenant_breaches_caused']:,}")
        s.add_row("grace periods / bridge lines", f"{p['grace_periods']:,} / "
                  f"{format_fen(p['bridge_lines_fen'])}")
        console.print(s)
    f = Table(show_header=False, box=None)
    f.add_row("events read", f"{rows:,} ({rejected:,} rejected)")
    for k, v in paths.items():
        f.add_row(esc(k), esc(v))
    console.print(f)


@app.command("portfolio")
@friendly
def portfolio_cmd(
    events: Path = typer.Option(..., "--events", "-e", help="Events whose merchants borrow."),
    out: Path = typer.Option(..., "--out", "-o", help="Portfolio file to write (.csv or .jsonl)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed, the same book)."),
    borrower_share: float = typer.Option(0.3, "--borrower-share", min=0.0, max=1.0,
                                         help="Share of merchants that borrow."),
) -> None:
    """Write a realistic loan book for the merchants of an events file (for rehearsals)."""
    from rich.table import Table

    from tapshield.cli._progress import reading_progress
    from tapshield.events.read import EventReader
    from tapshield.impact.portfolio import write_portfolio
    from tapshield.money import format_fen
    from tapshield.simulate.portfolio import generate_portfolio

    if out.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise UsageError("--out must end in .csv or .jsonl")
    reader = EventReader(events)

    def batches(advance: Callable[[int], None]) -> Iterator[pl.DataFrame]:
        for b in reader:
            yield b
            advance(reader.stats.rows)

    with reading_progress(events) as advance:
        frame = generate_portfolio(batches(advance), seed=seed, borrower_share=borrower_share)
    write_portfolio(frame, out)
    t = Table(show_header=False, box=None)
    t.add_row("facilities", f"{frame.height:,}")
    t.add_row("borrowers", f"{frame['borrower_id'].n_unique():,}")
    t.add_row("outstanding", format_fen(int(frame["outstanding"].sum() or 0)))
    t.add_row("written to", esc(out))
    console.print(t)
