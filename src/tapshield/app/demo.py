"""The demo: the whole product on one realistic day, in one call.

Simulate a day of flash-pay traffic with an outage, generate the loan book of
its merchants, analyse the day as production would (valuing the outage in the
same pass) and grade the response against the simulator's ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tapshield.app.analyze import AnalyzeOptions, AnalyzeOutcome, analyse_file
from tapshield.drill.score import Scorecard, score
from tapshield.simulate import SimulationResult, read_truth, simulate


@dataclass(frozen=True, slots=True)
class DemoOptions:
    out: Path = Path("demo-out")
    scenario: str = "demo-day"
    seed: int | None = None
    """Random seed (``None``: the scenario's)."""
    portfolio: bool = True
    """Generate a loan book and value the impact."""
    lang: str = "en"
    """Language of report.html (``en``, ``zh``)."""


@dataclass(slots=True)
class DemoOutcome:
    simulation: SimulationResult
    portfolio: Path | None
    facilities: int
    analysis: AnalyzeOutcome
    scorecard: Scorecard


def run_demo(
    opts: DemoOptions, *, on_step: Callable[[str], None] | None = None
) -> DemoOutcome:
    """Simulate, (generate a loan book,) analyse and grade; outputs in ``opts.out``."""
    from tapshield.impact import write_portfolio
    from tapshield.simulate.portfolio import generate_portfolio

    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    inputs = opts.out / "input"
    step(f"simulating {opts.scenario}")
    sim = simulate(opts.scenario, inputs, fmt="parquet", seed=opts.seed)
    portfolio: Path | None = None
    facilities = 0
    if opts.portfolio:
        step("generating the loan book of the merchants in the traffic")
        book = generate_portfolio(sim.events_path,
                                  seed=opts.seed if opts.seed is not None else 7)
        facilities = book.height
        portfolio = write_portfolio(book, inputs / "portfolio.csv")
    step("analysing")
    analysis = analyse_file(AnalyzeOptions(sim.events_path, opts.out,
                                           changes=sim.changes_path, portfolio=portfolio,
                                           lang=opts.lang))
    card = score(analysis.result.incidents, read_truth(sim.truth_path),
                 alerts=analysis.result.alerts)
    return DemoOutcome(sim, portfolio, facilities, analysis, card)
