"""``tapshield detect``: the generic anomaly detector on one exported metric series."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from tapshield.cli._app import UsageError, app, console, err_console, esc, friendly

_SHOWN_ALERTS = 10
#: below this sampling step a week of history no longer fits the detector's buffers
FINEST_STEP_S = 60


def default_out(series_file: Path) -> Path:
    """``./<stem>.detect.csv`` in the current directory (input folders may be read-only)."""
    return Path.cwd() / f"{series_file.stem}.detect.csv"


@app.command()
@friendly
def detect(
    series_file: Path = typer.Argument(..., metavar="SERIES.csv",
                                       help="CSV with a time column and a value column."),
    time_col: str = typer.Option("timestamp", "--time-col", help="Name of the time column."),
    value_col: str = typer.Option("value", "--value-col", help="Name of the value column."),
    out: Path | None = typer.Option(
        None, "--out", help="Results CSV (default: ./<SERIES>.detect.csv)."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Zone of timestamps written without an offset "
        "(default: the business zone, Asia/Shanghai)."),
    strict: bool = typer.Option(
        False, "--strict",
        help="Refuse repeated or earlier timestamps instead of scoring and flagging them.",
    ),
) -> None:
    """Score every point of a metric for anomalies with one fixed configuration.

    Writes one row per input row, in input order:
    [bold]timestamp,value,anomaly_score,alert,repeat,gap[/] (the NAB results
    layout plus two flags): anomaly_score is 1 - p, the probability-like
    confidence that the point is unusual for this metric; alert is 1 where
    p < 0.001 and no alert fired in the previous 50 points; repeat marks a
    timestamp that does not advance, gap a row after a gap in time.
    Timestamps: YYYY-MM-DD HH:MM:SS (in --tz), RFC 3339, or epoch seconds /
    milliseconds.
    """
    import numpy as np
    from rich.table import Table

    from tapshield.cli._progress import steps
    from tapshield.detect import DEFAULT_CONFIG
    from tapshield.detect.run import detect_series, driver_names, results_frame
    from tapshield.detect.series import read_series
    from tapshield.errors import ContractError
    from tapshield.timeutil import DEFAULT_TZ

    tz = tz or DEFAULT_TZ
    target = out if out is not None else default_out(series_file)
    if series_file.exists() and target.exists() and target.resolve() == series_file.resolve():
        raise UsageError("--out must not overwrite the input file")
    series = read_series(series_file, time_col, value_col, tz=tz, strict=strict)
    messages = series.fixups.messages()
    step_us = series.median_step_us()
    if step_us is not None:
        step_s = step_us / 1e6
        if step_s < FINEST_STEP_S:
            messages.append(
                f"sampled every {step_s:g} s: the time-of-day features look back a bounded "
                "number of samples and will see less than a week; export with a step of "
                f"{FINEST_STEP_S} s or more (e.g. Prometheus step=60s)"
            )
    for msg in messages:
        err_console.print(f"[yellow]warning:[/] {esc(msg)}", highlight=False, soft_wrap=True)

    with steps(len(series), f"scoring {series_file.name}") as advance:
        verdicts = detect_series(series, DEFAULT_CONFIG, progress=advance)
    frame = results_frame(series, verdicts)

    if not target.parent.exists():
        raise ContractError(f"output folder does not exist: {target.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        frame.write_csv(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

    alerts = [i for i, a in enumerate(verdicts.alert.tolist()) if a]
    table = Table(show_header=False, box=None)
    table.add_row("rows read and written", f"{series.rows_read:,}")
    table.add_row("points scored", f"{int(np.isfinite(series.values).sum()):,}")
    table.add_row("timestamps", esc(series.time_format))
    table.add_row("alerts", f"[red]{len(alerts):,}[/]" if alerts else "0")
    table.add_row("results written to", esc(target))
    console.print(table)
    if alerts:
        names = driver_names(verdicts)
        shown = Table(title="alerts", box=None)
        for col in ("timestamp", "value", "anomaly_score", "evidence"):
            shown.add_column(col)
        for i in alerts[:_SHOWN_ALERTS]:
            shown.add_row(esc(series.labels[i]), f"{series.values[i]:g}",
                          f"{1.0 - verdicts.p_value[i]:.6f}", esc(names[i] or ""))
        console.print(shown)
        if len(alerts) > _SHOWN_ALERTS:
            console.print(f"... and {len(alerts) - _SHOWN_ALERTS} more in {esc(target)}",
                          highlight=False)

