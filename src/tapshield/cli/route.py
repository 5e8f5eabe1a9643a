"""``tapshield reroute``: replay a scenario as each routing policy would have
routed it, and print what tapshield's router would have saved."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tapshield.cli._app import EXIT_OK, UsageError, app, console, esc, friendly
from tapshield.cli._progress import steps

if TYPE_CHECKING:
    import polars as pl


@app.command()
@friendly
def reroute(
    scenario: str = typer.Argument(..., help="A library scenario name or a scenario YAML file."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
    policies: str = typer.Option(
        "no_failover,decision_engine,hyperswitch,resilience4j,tapshield,oracle", "--policies",
        help="Comma-separated policies to compare (no_failover is always included)."),
    budget_ms: float | None = typer.Option(
        None, "--budget-ms", min=100.0,
        help="Time a customer waits for one tap (default: the app's client timeout)."),
    scale: float | None = typer.Option(
        None, "--scale", min=0.0001, help="Multiply the scenario's traffic rate."),
    around_faults: bool = typer.Option(
        False, "--around-faults",
        help="Replay only the taps from 10 minutes before each fault to its end (faster)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write results.json to this directory."),
) -> None:
    """Replay the scenario's taps through each policy against the simulator's truth."""
    import polars as pl

    from tapshield.route import POLICIES, compare, config_from_history, taps_from_events
    from tapshield.simulate import World, generate, load_scenario

    names = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UsageError(f"unknown policy {', '.join(unknown)}; known: {', '.join(POLICIES)}")
    if "no_failover" not in names:
        names.insert(0, "no_failover")
    sc = load_scenario(Path(scenario) if scenario.endswith((".yaml", ".yml")) else scenario)
    if scale is not None:
        sc = sc.with_changes(scale=scale)
    world = World.from_scenario(sc, seed=seed)
    with console.status(f"simulating {sc.name}"):
        events = pl.concat(list(generate(sc, seed=seed)))
    taps = taps_from_events(events)
    if around_faults:
        taps = _around_faults(taps, world)
    cfg = config_from_history(events, budget_ms=budget_ms or float(world.timeout_ms))
    with steps(len(names), f"replaying {taps.height:,} taps") as advance:
        def tick(_name: str) -> None:
            advance(1)

        results = compare(taps, world, names, seed=sc.seed if seed is None else seed,
                          config=cfg, progress=tick)
    base = results["no_failover"]
    table = Table(title=f"{esc(sc.name)}: {taps.height:,} taps, budget {cfg.budget_ms / 1000:g} s",
                  caption="failed: taps never approved nor declined; charged, failed: failed "
                  "taps with an authorisation never reversed; quick: answered \"use another "
                  "method\" at once; wait p50: median wait of a failed tap")
    for col in ("policy", "failed", "saved", "lost", "double auth", "charged, failed",
                "attempts", "quick", "wait p50"):
        table.add_column(col, justify="left" if col == "policy" else "right",
                         no_wrap=col == "policy")
    for name, r in results.items():
        table.add_row(
            esc(name), f"{r.failed:,}", f"{r.saved_vs(base):,}", _yuan(r.lost_fen),
            f"{r.double_authorisations:,}", f"{r.unconfirmed_charges:,}", f"{r.attempts:,}",
            f"{r.quick_answers:,}",
            "-" if r.failed == 0 else f"{r.failed_wait_ms_p50 / 1000:.1f} s",
        )
    console.print(table)
    if "tapshield" in results:
        ts = results["tapshield"]
        console.print(
            f"tapshield would have saved [bold green]{ts.saved_vs(base):,}[/] of "
            f"{base.failed:,} failed payments ({_yuan(base.lost_fen - ts.lost_fen)}) "
            f"with {ts.double_authorisations} double authorisations."
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "scenario": sc.name, "taps": taps.height, "budget_ms": cfg.budget_ms,
            "results": {k: {**v.to_dict(), "saved": v.saved_vs(base)} for k, v in
                        results.items()},
        }
        (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"results written to {esc(out / 'results.json')}", highlight=False)
    raise typer.Exit(EXIT_OK)


def _yuan(fen: int) -> str:
    from tapshield.money import format_fen

    return f"¥{format_fen(fen)}"


def _around_faults(taps: pl.DataFrame, world: Any) -> pl.DataFrame:
    """Taps from 10 minutes before each path fault (the router's warm-up) to its end."""
    import polars as pl

    spans = [(int(f.start_us), int(f.end_us)) for f in getattr(world, "faults", [])
             if getattr(f, "stage", "technical") == "technical"]
    if not spans:
        return taps
    us = pl.col("ts").dt.epoch("us")
    warm = int(timedelta(minutes=10).total_seconds() * 1e6)
    return taps.filter(pl.any_horizontal([(us >= s - warm) & (us <= e) for s, e in spans]))
