"""``tapshield demo``: the whole product on one realistic day, in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from tapshield.cli._app import EXIT_OK, app, console, esc, friendly


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
    lang: str = typer.Option("en", "--lang", help="Language of report.html: en or zh."),
) -> None:
    """Simulate a day with an outage, analyse it, value it, grade the response.

    The day is realistic flash-pay traffic; it is analysed as production would,
    what the outage did to merchants and borrowers is valued, and the response is
    graded against the simulator's ground truth.
    """
    from tapshield.app.demo import DemoOptions, run_demo
    from tapshield.cli._show import print_scorecard, print_summary
    from tapshield.cli.analyze import _lang

    with console.status("demo") as status:
        outcome = run_demo(
            DemoOptions(out, scenario=scenario, seed=seed, portfolio=with_portfolio,
                        lang=_lang(lang)),
            on_step=status.update,
        )
    sim = outcome.simulation
    console.print(
        f"simulated [bold]{sim.events:,}[/] attempts ({sim.payments:,} taps) of {esc(scenario)} "
        f"in {sim.seconds:.1f} s -> {esc(sim.events_path)}", highlight=False
    )
    if outcome.portfolio is not None:
        console.print(f"loan book: {outcome.facilities:,} facilities -> {esc(outcome.portfolio)}",
                      highlight=False)
    print_summary(outcome.analysis.result, out)
    print_scorecard(outcome.scorecard.to_dict(), as_json=False)
    raise typer.Exit(EXIT_OK)
