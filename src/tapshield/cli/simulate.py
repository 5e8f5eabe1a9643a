"""``tapshield simulate``: realistic flash-pay traffic with faults and exact ground truth."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import BinaryIO

import typer
from rich.table import Table

from tapshield.cli._app import EXIT_OK, UsageError, app, console, esc, friendly
from tapshield.cli._progress import steps


@app.command()
@friendly
def simulate(
    scenario_arg: str | None = typer.Argument(
        None, metavar="[SCENARIO]", help="A library scenario name or a scenario YAML file."),
    scenario: Path | None = typer.Option(
        None, "--scenario", "-s", help="Scenario YAML file (same as the argument)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default: ./sim-<scenario>)."),
    fmt: str = typer.Option(
        "parquet", "--format", "-f", help="Events format: parquet, csv, csv.gz, jsonl, jsonl.gz."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the scenario's)."),
    scale: float | None = typer.Option(
        None, "--scale", min=0.0001, help="Multiply the scenario's traffic rate."),
    no_labels: bool = typer.Option(
        False, "--no-labels", help="Do not write labels.parquet (per-event truth)."),
    prefetch: bool = typer.Option(
        False, "--prefetch", help="Generate the next batches in a thread while one is written: "
        "1.65x faster on an idle 2-core machine, slower when the cores are busy "
        "(BENCHMARKS.md, simulator)."),
    list_: bool = typer.Option(False, "--list", help="List the scenario library and exit."),
    live: bool = typer.Option(
        False, "--live", help="Stream JSONL events paced in time (to stdout, or "
        "<out>/events.jsonl with --out)."),
    speed: float = typer.Option(
        60.0, "--speed", help="Live mode: simulated seconds per wall second (0 = no pacing)."),
    batch_seconds: float = typer.Option(
        1.0, "--batch-seconds", min=0.001, help="Live mode: event time per batch."),
    fast_forward: str = typer.Option(
        "0s", "--fast-forward", help="Live mode: emit this much of the start at once, "
        "e.g. 11h (a baseline for a live monitor)."),
) -> None:
    """Generate events, changes.csv and truth.json for a scenario (see docs/simulator.md)."""
    from tapshield.simulate import expected_events, load_scenario, scenario_names
    from tapshield.simulate import simulate as run_simulation
    from tapshield.simulate.model import ScenarioError
    from tapshield.simulate.run import FORMATS
    from tapshield.timeutil import parse_duration

    if list_:
        _list(scenario_names())
        raise typer.Exit(EXIT_OK)
    if scenario_arg is not None and scenario is not None:
        raise UsageError("give the scenario either as an argument or with --scenario, not both")
    chosen = scenario if scenario is not None else scenario_arg
    if chosen is None:
        raise UsageError("which scenario? give a name (see --list) or a YAML file")
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    try:
        sc = load_scenario(chosen)
        if scale is not None:
            sc = sc.with_changes(scale=scale)
        ff = parse_duration(fast_forward)
    except ScenarioError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if live:
        _live(sc, out, seed, speed, batch_seconds, ff)
        raise typer.Exit(EXIT_OK)
    out_dir = out if out is not None else Path.cwd() / f"sim-{sc.name}"
    total = expected_events(sc)
    with steps(total, f"simulating {sc.name}") as advance:
        result = run_simulation(sc, out_dir, fmt=fmt, seed=seed, labels=not no_labels,
                                progress=advance, background=prefetch)
    table = Table(title=f"scenario {esc(sc.name)}", show_header=False, box=None)
    table.add_row("events", f"{result.events:,}")
    table.add_row("payments (taps)", f"{result.payments:,}")
    table.add_row("seconds", f"{result.seconds:.1f}")
    table.add_row("events file", esc(result.events_path))
    table.add_row("changes", esc(result.changes_path))
    table.add_row("truth", esc(result.truth_path))
    if result.labels_path is not None:
        table.add_row("labels", esc(result.labels_path))
    churn = result.truth.get("churn")
    if churn:
        table.add_row("churn", f"{churn['customers_left']:,} customers left after a lost tap; "
                      f"{esc(result.out_dir / 'churn.parquet')}, "
                      f"{esc(result.out_dir / 'churn_taps.parquet')}")
    console.print(table)
    faults = Table(title="injected faults and decoys")
    for col in ("id", "cause", "must page", "scope", "start", "end", "failed payments",
                "lost amount"):
        faults.add_column(col, overflow="fold")
    for f in result.truth["faults"]:
        scope = "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) for c in f["scope"]) or "all"
        faults.add_row(esc(f["id"]), esc(f["cause"]), "yes" if f["must_page"] else "no",
                       esc(scope), esc(f["start"][:19]), esc(f["end"][:19]),
                       f"{f['failed_payments']:,}", esc(f["lost_amount"]))
    console.print(faults)


def _list(names: list[str]) -> None:
    from tapshield.simulate import load_scenario

    table = Table(title="scenario library")
    table.add_column("name", no_wrap=True)
    table.add_column("length")
    table.add_column("faults and decoys")
    table.add_column("why", overflow="fold")
    for name in names:
        sc = load_scenario(name)
        kinds = ", ".join(f.kind for f in sc.faults)
        if sc.festival is not None:
            kinds = ", ".join(x for x in (kinds, "festival") if x)
        table.add_row(esc(name), _human(sc.duration), esc(kinds or "-"), esc(sc.why.strip()))
    console.print(table)


def _human(td: object) -> str:
    from datetime import timedelta

    assert isinstance(td, timedelta)
    s = int(td.total_seconds())
    if s % 86400 == 0:
        return f"{s // 86400}d"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m"


def _live(sc: object, out: Path | None, seed: int | None, speed: float,
          batch_seconds: float, fast_forward: object) -> None:
    from datetime import timedelta

    from tapshield.events.write import to_wire
    from tapshield.simulate import Scenario
    from tapshield.simulate.live import stream
    from tapshield.simulate.run import write_changes

    assert isinstance(sc, Scenario) and isinstance(fast_forward, timedelta)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_changes(sc, out / "changes.csv", seed=seed)
        sink: BinaryIO = open(out / "events.jsonl", "wb")
    else:
        sink = sys.stdout.buffer
    try:
        for batch in stream(sc, speed=speed, batch_seconds=batch_seconds, seed=seed,
                            fast_forward=fast_forward):
            to_wire(batch).write_ndjson(sink)
            sink.flush()
    except OSError as exc:  # `tapshield simulate --live | head`: the reader went away
        if exc.errno != errno.EPIPE and "Broken pipe" not in str(exc):
            raise
    finally:
        if out is not None:
            sink.close()
