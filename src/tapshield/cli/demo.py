"""``tapshield demo``: the whole product on one realistic day, in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from tapshield.cli._app import EXIT_OK, app, console, friendly
from tapshield.cli.analyze import print_summary, run_analysis


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Output directory."),
    scenario: str = typer.Option(
        "demo-day", "--scenario", help="Library scenario (see `tapshield simulate --list`)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
    with_portfolio: bool = typer.Option(
        True, "--portfolio/--no-portfolio", help="Generate a loan book and value the impact."
    ),
) -> None:
    """Simulate a day with an outage, analyse it, value it, grade the response.

    The day is realistic flash-pay traffic; it is analysed as production would,
    what the outage did to merchants and borrowers is valued, and the response is
    graded against the simulator's ground truth.
    """
    from tapshield.drill import score
    from tapshield.impact import write_portfolio
    from tapshield.simulate import read_truth, simulate
    from tapshield.simulate.portfolio import generate_portfolio

    inputs = out / "input"
    with console.status(f"simulating {scenario}"):
        sim = simulate(scenario, inputs, fmt="parquet", seed=seed)
    console.print(
        f"simulated [bold]{sim.events:,}[/] attempts ({sim.payments:,} taps) of {scenario} "
        f"in {sim.seconds:.1f} s -> {sim.events_path}"
    )
    portfolio = None
    if with_portfolio:
        with console.status("generating the loan book of the merchants in the traffic"):
            book = generate_portfolio(sim.events_path, seed=seed if seed is not None else 7)
            portfolio = write_portfolio(book, inputs / "portfolio.csv")
        console.print(f"loan book: {book.height:,} facilities -> {portfolio}")

    result, _reader, _rejected, _change_rejects = run_analysis(
        sim.events_path, out, changes=sim.changes_path, portfolio=portfolio
    )
    print_summary(result, out)

    from tapshield.cli.drill import _print as print_scorecard

    card = score(result.incidents, read_truth(sim.truth_path), alerts=result.alerts)
    print_scorecard(card.to_dict(), as_json=False)
    raise typer.Exit(EXIT_OK)
