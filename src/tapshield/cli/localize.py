"""``tapshield localize``: which combinations of dimensions explain a failure wave.

Works on any count table exported from another system: one row per time
bucket and combination of the dimensions, with failure and total counts.
Prints JSON on stdout (root causes ordered by importance, their figures, and
the model's own statistics) so it can be piped into other tools.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from tapshield.cli._app import UsageError, app, friendly


@app.command()
@friendly
def localize(
    table: Path = typer.Argument(..., help="Count table (.csv, .parquet, .jsonl)."),
    time_col: str = typer.Option(..., "--time-col", help="Column holding the time bucket."),
    dims: str = typer.Option(..., "--dims", help="Comma-separated dimension columns."),
    failures: str = typer.Option(..., "--failures", help="Column with failed counts."),
    total: str = typer.Option(..., "--total", help="Column with total counts."),
    at: str = typer.Option(..., "--at", help="The anomalous bucket (same unit as --time-col)."),
    history: int = typer.Option(4, "--history", min=1,
                                help="Buckets before --at that form the baseline."),
    max_depth: int = typer.Option(4, "--max-depth", min=1,
                                  help="Most dimensions in one root cause."),
    alpha: float = typer.Option(0.01, "--alpha", min=1e-9, max=0.5,
                                help="Chance of naming a combination that is only noise."),
    materiality: float = typer.Option(
        0.02, "--materiality", min=0.0, max=1.0,  # LocalizeConfig().materiality (test)
        help="Smallest share of the extra failures a root cause must add."),
    indent: int = typer.Option(2, "--indent", min=0, help="JSON indentation (0 = one line)."),
) -> None:
    """Find the smallest set of combinations whose failure ratio broke away at --at."""
    from tapshield.diagnose.cube import cube_from_table, read_table
    from tapshield.diagnose.localizer import LocalizeConfig, localize_cube

    names = [d.strip() for d in dims.split(",") if d.strip()]
    if not names:
        raise UsageError("--dims needs at least one column name")
    frame = read_table(str(table), time_col=time_col)
    cube = cube_from_table(frame, names, time_col=time_col, failures=failures, total=total,
                           at=at, history=history, source=table.name)
    result = localize_cube(cube, LocalizeConfig(alpha=alpha, materiality=materiality,
                                                max_depth=max_depth))
    out = result.to_dict()
    out["at"] = at
    out["history"] = [str(b) for b in cube.history]
    text = json.dumps(out, indent=indent or None, ensure_ascii=False)
    sys.stdout.write(text + "\n")
