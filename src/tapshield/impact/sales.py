"""Lost sales per merchant: counterfactual minus actual, minus what was recaptured.

For every merchant the incident touched, per (channel, region) slice and
local day of the impact window:

``gross = max(sum over hours of (counterfactual - actual), failed)``
``net   = gross - recaptured``

* **counterfactual**: what the slice would have sold in that hour, from the
  merchant's *own* history of the same slice: the mean of the same
  hour-of-week over the last ``history_weeks`` weeks (at least ``min_weeks``
  clean samples); failing that, the same hour of day over the last
  ``history_days`` days (at least ``min_days``); failing that (a new
  merchant, a one-day file, a slice that follows a rollout) the demand that
  showed up: approved plus failed taps. Hours inside any incident window are
  never used as history.
* **actual**: approved sales of the slice in the hour.
* **failed**: taps in the slice that carried the incident's failure and never
  succeeded, less what the customer paid again inside the slice. They are a
  floor: the counterfactual may not claim less than demand seen failing.
* **recaptured**: what the same customer paid at the same merchant through
  another channel (outside the slice) within ``recapture_window`` after the
  failure, at most the failed tap's amount. Payments inside the slice are
  already in *actual*, so they are not subtracted twice.

A merchant counts only if at least one of its taps failed with the
incident's signature (no failure seen, no loss claimed). Recapture never
exceeds the failed amount, so ``net >= 0`` cell by cell, and failing more
taps can only raise ``net`` (tested as properties).

Uncertainty: each hour's counterfactual has a prediction variance
``v * (1 + 1/n)``, ``v`` the larger of the between-week variance of the
samples and their compound-Poisson variance (sum of squared tap amounts);
hours measured from attempts use the compound-Poisson variance of the failed
taps. Variances add over hours, slices and merchants (independent demand) and
give a normal band at the configured confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from tapshield.impact.config import ImpactConfig
from tapshield.impact.exact import div_half_even
from tapshield.impact.windows import HOUR, ImpactWindow, local_hour_expr

METHODS: tuple[str, ...] = ("hour_of_week", "hour_of_day", "attempts")

CELL = ("merchant_id", "channel", "region")

_EMPTY_CELLS: dict[str, pl.DataType] = {
    "incident_id": pl.String(), "merchant_id": pl.String(), "channel": pl.String(),
    "region": pl.String(), "day": pl.Date(), "counterfactual_fen": pl.Int64(),
    "actual_fen": pl.Int64(), "failed_fen": pl.Int64(), "gross_fen": pl.Int64(),
    "recaptured_fen": pl.Int64(), "net_fen": pl.Int64(), "var": pl.Float64(),
    "hours_week": pl.Int64(), "hours_day": pl.Int64(), "hours_attempts": pl.Int64(),
}


@dataclass(slots=True)
class IncidentSales:
    """The lost-sales measurement of one incident."""

    cells: pl.DataFrame
    """One row per (merchant, channel, region, local day); see the module doc."""
    recaptured_to: pl.DataFrame
    """Recaptured fen per (merchant, channel, region, day, to_channel)."""
    timeline: pl.DataFrame
    """(hour, counterfactual_fen, actual_fen, var) over the plot range."""
    taps: dict[str, int]
    """Counts of the incident's taps: affected/failed payments and their value,
    affected users and merchants, rescued taps and value."""
    failed_taps: pl.DataFrame
    """The failed taps themselves (payment_id, merchant, channel, region, ts, amount)."""


def measure_lost_sales(
    w: ImpactWindow,
    events: pl.DataFrame,
    hourly: pl.DataFrame,
    coverage_start: datetime | None,
    contaminated: pl.Series,
    config: ImpactConfig,
) -> IncidentSales:
    """Lost sales of one incident (pure function of its inputs)."""
    tz = config.tz
    sig = w.signature
    ev = events.filter(pl.col("ts").is_between(w.start - HOUR, w.end + w.recapture + HOUR))
    taps, affected, rescues = _failed_taps(w, ev, sig, tz)
    counts = _tap_counts(taps, affected, rescues)
    if taps.height == 0:
        return IncidentSales(pl.DataFrame(schema=_EMPTY_CELLS), _empty_recap(),
                             _empty_timeline(), counts, taps)
    gated = taps.select("merchant_id").unique()
    # -- cells: every slice of a touched merchant seen in its history or window
    hist = hourly.join(gated, on="merchant_id", how="semi")
    cells = pl.concat([
        hist.select(CELL).unique(),
        taps.select(CELL).unique(),
    ]).unique()
    hours = pl.DataFrame({"hour": w.hours(plot=True)}, schema={"hour": pl.Datetime("us")})
    grid = cells.join(hours, how="cross")
    grid = grid.join(
        hist.select(*CELL, "hour", pl.col("sales_fen").alias("actual_fen")),
        on=[*CELL, "hour"], how="left",
    ).with_columns(pl.col("actual_fen").fill_null(0))
    # -- failed demand per cell-hour (floor, and the attempts counterfactual)
    f_hour = taps.group_by(*CELL, "hour").agg(
        pl.col("failed_fen").sum(), (pl.col("failed_fen").cast(pl.Float64) ** 2).sum()
        .alias("failed_sq"),
    )
    grid = grid.join(f_hour, on=[*CELL, "hour"], how="left").with_columns(
        pl.col("failed_fen").fill_null(0), pl.col("failed_sq").fill_null(0.0)
    )
    # -- counterfactual: hour-of-week, then hour-of-day, then attempts
    # A merchant trades in the slice from the day of its first sale there: a
    # quiet hour that morning is a real zero, the weeks before are not.
    fs = hist.group_by("merchant_id").agg(pl.col("hour").min().alias("first_hour"))
    use_history = w.stable
    week = _seasonal(grid, hist, fs, coverage_start, contaminated, w,
                     week_offsets(config), use_history)
    grid = grid.join(week, on=[*CELL, "hour"], how="left")
    # the daily fallback only where the weekly samples are too few
    short = grid.filter(pl.col("n").fill_null(0) < config.min_weeks)
    day = _seasonal(short, hist, fs.join(short.select("merchant_id").unique(), on="merchant_id",
                                         how="semi"),
                    coverage_start, contaminated, w, day_offsets(config), use_history)
    grid = grid.join(day, on=[*CELL, "hour"], how="left", suffix="_d")
    by_week = pl.col("n").fill_null(0) >= config.min_weeks
    by_day = ~by_week & (pl.col("n_d").fill_null(0) >= config.min_days)
    grid = grid.with_columns(
        pl.when(by_week).then(pl.lit("hour_of_week"))
        .when(by_day).then(pl.lit("hour_of_day"))
        .otherwise(pl.lit("attempts")).alias("method"),
        pl.when(by_week).then(pl.col("cf"))
        .when(by_day).then(pl.col("cf_d"))
        .otherwise(pl.col("actual_fen") + pl.col("failed_fen")).alias("counterfactual_fen"),
        pl.when(by_week).then(pl.col("pvar"))
        .when(by_day).then(pl.col("pvar_d"))
        .otherwise(pl.col("failed_sq")).alias("var"),
    )
    timeline = (
        grid.group_by("hour").agg(
            pl.col("counterfactual_fen").sum(), pl.col("actual_fen").sum(), pl.col("var").sum()
        ).sort("hour")
    )
    inside = grid.filter((pl.col("hour") >= w.first_hour) & (pl.col("hour") < w.last_hour))
    inside = inside.with_columns(pl.col("hour").dt.date().alias("day"))
    per_day = inside.group_by(*CELL, "day").agg(
        pl.col("counterfactual_fen").sum(),
        pl.col("actual_fen").sum(),
        pl.col("failed_fen").sum(),
        pl.col("var").sum(),
        (pl.col("method") == "hour_of_week").sum().cast(pl.Int64).alias("hours_week"),
        (pl.col("method") == "hour_of_day").sum().cast(pl.Int64).alias("hours_day"),
        (pl.col("method") == "attempts").sum().cast(pl.Int64).alias("hours_attempts"),
    )
    recap = rescues.filter(~pl.col("in_slice")).group_by(*CELL, "day").agg(
        pl.col("counted_fen").sum().alias("recaptured_fen")
    )
    cells_out = (
        per_day.join(recap, on=[*CELL, "day"], how="left")
        .with_columns(pl.col("recaptured_fen").fill_null(0))
        .with_columns(
            pl.max_horizontal(
                pl.col("counterfactual_fen") - pl.col("actual_fen"), pl.col("failed_fen")
            ).clip(lower_bound=0).alias("gross_fen")
        )
        .with_columns((pl.col("gross_fen") - pl.col("recaptured_fen")).alias("net_fen"))
        .with_columns(pl.lit(w.id).alias("incident_id"))
        .select(list(_EMPTY_CELLS))
        .sort(*CELL, "day")
    )
    recaptured_to = (
        rescues.filter(~pl.col("in_slice"))
        .group_by(*CELL, "day", pl.col("to_channel"))
        .agg(pl.col("counted_fen").sum().alias("recaptured_fen"))
        .with_columns(pl.lit(w.id).alias("incident_id"))
    )
    return IncidentSales(cells_out, recaptured_to, timeline, counts, taps)


def week_offsets(config: ImpactConfig) -> list[int]:
    return [7 * k for k in range(1, config.history_weeks + 1)]


def day_offsets(config: ImpactConfig) -> list[int]:
    return list(range(1, config.history_days + 1))


def history_hours(w: ImpactWindow, config: ImpactConfig) -> list[datetime]:
    """Every local hour the counterfactual of ``w`` may read."""
    out = set()
    for h in w.hours(plot=True):
        for k in week_offsets(config) + day_offsets(config):
            out.add(h - timedelta(days=k))
    return sorted(out)


def _failed_taps(
    w: ImpactWindow, ev: pl.DataFrame, sig: pl.Expr | None, tz: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(failed taps with their rescue, affected taps, counted rescues)."""
    taps_schema = {
        "payment_id": pl.String(), "user_id": pl.String(), "merchant_id": pl.String(),
        "channel": pl.String(), "region": pl.String(), "amount_fen": pl.Int64(),
        "ts": ev.schema["ts"], "hour": pl.Datetime("us"), "day": pl.Date(),
        "rescued_in_fen": pl.Int64(), "failed_fen": pl.Int64(), "recaptured_fen": pl.Int64(),
    }
    rescue_schema = {
        **{c: pl.String() for c in CELL}, "day": pl.Date(), "to_channel": pl.String(),
        "in_slice": pl.Boolean(), "counted_fen": pl.Int64(), "payment_id": pl.String(),
    }
    empty = (pl.DataFrame(schema=taps_schema), pl.DataFrame(schema=taps_schema),
             pl.DataFrame(schema=rescue_schema))
    if sig is None or ev.height == 0:
        return empty
    approved = pl.col("outcome").cast(pl.String) == "approved"
    hit = w.in_slice() & sig.fill_null(False) & pl.col("ts").is_between(w.start, w.end)
    marked = ev.with_columns(hit.alias("_hit"), w.in_slice().alias("_in"))
    hit_ids = marked.filter(pl.col("_hit")).select("payment_id").unique()
    pay = marked.join(hit_ids, on="payment_id", how="semi").group_by("payment_id").agg(
        approved.any().alias("ok"),
        pl.col("_hit").any().alias("hit"),
        pl.col("user_id").first(),
        pl.col("merchant_id").first(),
        pl.col("amount_fen").first(),
        # the slice of its first failing attempt (by time, whatever the file order)
        pl.col("channel").filter(pl.col("_hit")).sort_by(pl.col("ts").filter(pl.col("_hit")))
        .first(),
        pl.col("region").filter(pl.col("_hit")).sort_by(pl.col("ts").filter(pl.col("_hit")))
        .first(),
        pl.col("ts").max(),
        pl.col("ts").filter(pl.col("_hit")).max().alias("ts_hit"),
    ).filter(pl.col("hit"))
    if pay.height == 0:
        return empty
    affected = pay
    failed = pay.filter(~pl.col("ok")).sort("ts")
    # Rescues: approved payments of the same customer at the same merchant.
    resc = (
        marked.join(failed.select("user_id", "merchant_id").unique(),
                    on=["user_id", "merchant_id"], how="semi")
        .filter(approved)
        .group_by("payment_id").agg(
            pl.col("ts").min(), pl.col("user_id").first(), pl.col("merchant_id").first(),
            pl.col("amount_fen").first().alias("rescue_fen"),
            pl.col("channel").first().alias("to_channel"), pl.col("_in").first().alias("in_slice"),
        )
        .sort("ts")
    )
    matched = resc.join_asof(
        failed.select(pl.col("payment_id").alias("failed_id"), "user_id", "merchant_id",
                      pl.col("ts").alias("failed_ts"), pl.col("amount_fen").alias("tap_fen")),
        left_on="ts", right_on="failed_ts", by=["user_id", "merchant_id"],
        strategy="backward", tolerance=w.recapture, check_sortedness=False,
    ).filter(pl.col("failed_id").is_not_null() & (pl.col("ts") > pl.col("failed_ts")))
    # Count each rescue up to what is left of the failed tap, in time order.
    matched = matched.sort("failed_id", "ts").with_columns(
        (pl.col("rescue_fen").cum_sum().over("failed_id") - pl.col("rescue_fen"))
        .alias("_before")
    ).with_columns(
        pl.min_horizontal(pl.col("rescue_fen"), pl.col("tap_fen") - pl.col("_before"))
        .clip(lower_bound=0).alias("counted_fen")
    )
    per_tap = matched.group_by("failed_id").agg(
        pl.col("counted_fen").filter(pl.col("in_slice")).sum().alias("rescued_in_fen"),
        pl.col("counted_fen").filter(~pl.col("in_slice")).sum().alias("recaptured_fen"),
    )
    hour = local_hour_expr(tz, "ts_hit")
    taps = (
        failed.join(per_tap, left_on="payment_id", right_on="failed_id", how="left")
        .with_columns(
            pl.col("rescued_in_fen").fill_null(0), pl.col("recaptured_fen").fill_null(0),
            hour.alias("hour"),
        )
        .with_columns(
            pl.col("hour").dt.date().alias("day"),
            (pl.col("amount_fen") - pl.col("rescued_in_fen")).alias("failed_fen"),
        )
        .select(list(taps_schema))
    )
    rescues = matched.join(
        taps.select(pl.col("payment_id").alias("failed_id"), *[pl.col(c).alias(f"_{c}")
                    for c in CELL], "day"),
        on="failed_id", how="inner",
    ).select(
        *[pl.col(f"_{c}").alias(c) for c in CELL], "day", "to_channel", "in_slice",
        "counted_fen", "payment_id",
    )
    return taps, affected, rescues


def _tap_counts(
    taps: pl.DataFrame, affected: pl.DataFrame, rescues: pl.DataFrame
) -> dict[str, int]:
    out_slice = rescues.filter(~pl.col("in_slice"))
    return {
        "affected_payments": affected.height,
        "affected_fen": int(affected["amount_fen"].sum() or 0),
        "affected_users": affected["user_id"].n_unique(),
        "affected_merchants": affected["merchant_id"].n_unique(),
        "failed_payments": taps.height,
        "failed_fen": int(taps["amount_fen"].sum() or 0),
        "failed_users": taps["user_id"].n_unique(),
        "failed_merchants": taps["merchant_id"].n_unique(),
        "recaptured_payments": out_slice["payment_id"].n_unique(),
        "recaptured_fen": int(out_slice["counted_fen"].sum() or 0),
        "rescued_in_slice_fen": int(rescues.filter(pl.col("in_slice"))["counted_fen"].sum() or 0),
    }


def _seasonal(
    grid: pl.DataFrame,
    hist: pl.DataFrame,
    first_seen: pl.DataFrame,
    coverage_start: datetime | None,
    contaminated: pl.Series,
    w: ImpactWindow,
    offsets_days: list[int],
    use_history: bool,
) -> pl.DataFrame:
    """Mean and prediction variance of the same hour ``offsets_days`` back, per cell-hour.

    A sample counts when its hour is covered by the data, on or after the day
    of the merchant's first sale in the slice, and outside every incident
    window; a covered hour with no row is a real zero. Returns
    ``(cell, hour, n, cf, pvar)``.
    """
    out_schema = {**{c: pl.String() for c in CELL}, "hour": pl.Datetime("us"),
                  "n": pl.Int64(), "cf": pl.Int64(), "pvar": pl.Float64()}
    if not use_history or coverage_start is None or grid.height == 0:
        return pl.DataFrame(schema=out_schema)
    hours = w.hours(plot=True)
    slots = (
        pl.DataFrame({"hour": hours}, schema={"hour": pl.Datetime("us")})
        .join(pl.DataFrame({"k": offsets_days}), how="cross")
        .with_columns((pl.col("hour") - pl.duration(days=pl.col("k"))).alias("slot"))
        .filter((pl.col("slot") >= coverage_start)
                & ~pl.col("slot").is_in(contaminated.implode()))
    )
    if slots.height == 0:
        return pl.DataFrame(schema=out_schema)
    # n per (merchant, hour): valid slots at or after the merchant's first hour
    fs = first_seen["first_hour"].dt.truncate("1d").to_numpy()
    n_parts = []
    for (h,), grp in slots.group_by("hour"):
        sorted_slots = np.sort(grp["slot"].to_numpy())
        n = len(sorted_slots) - np.searchsorted(sorted_slots, fs, side="left")
        n_parts.append(pl.DataFrame({
            "merchant_id": first_seen["merchant_id"], "hour": pl.Series([h] * len(fs),
                                                                        dtype=pl.Datetime("us")),
            "n": pl.Series(n, dtype=pl.Int64),
        }))
    n_frame = pl.concat(n_parts) if n_parts else pl.DataFrame(
        schema={"merchant_id": pl.String(), "hour": pl.Datetime("us"), "n": pl.Int64()})
    samples = (
        hist.join(slots.select(pl.col("slot").alias("hour"), pl.col("hour").alias("target")),
                  on="hour", how="inner")
        .group_by(*CELL, "target")
        .agg(
            pl.col("sales_fen").sum().alias("s1"),
            (pl.col("sales_fen").cast(pl.Float64) ** 2).sum().alias("s2"),
            pl.col("sales_sq").sum().alias("cp"),
        )
        .rename({"target": "hour"})
    )
    g = (
        grid.select(*CELL, "hour")
        .join(n_frame, on=["merchant_id", "hour"], how="left")
        .join(samples, on=[*CELL, "hour"], how="left")
        .with_columns(pl.col("n").fill_null(0), pl.col("s1").fill_null(0),
                      pl.col("s2").fill_null(0.0), pl.col("cp").fill_null(0.0))
    )
    k = pl.col("n")
    kf = k.cast(pl.Float64)
    between = (pl.col("s2") - pl.col("s1").cast(pl.Float64) ** 2 / kf) / (kf - 1)
    return g.with_columns(
        pl.when(k > 0).then(div_half_even(pl.col("s1"), pl.max_horizontal(k, 1))).alias("cf"),
        pl.when(k > 1).then(
            pl.max_horizontal(between.clip(lower_bound=0.0), pl.col("cp") / kf) * (1 + 1 / kf)
        ).alias("pvar"),
    ).select(list(out_schema))


def _empty_recap() -> pl.DataFrame:
    return pl.DataFrame(schema={**{c: pl.String() for c in CELL}, "day": pl.Date(),
                                "to_channel": pl.String(), "recaptured_fen": pl.Int64(),
                                "incident_id": pl.String()})


def _empty_timeline() -> pl.DataFrame:
    return pl.DataFrame(schema={"hour": pl.Datetime("us"), "counterfactual_fen": pl.Int64(),
                                "actual_fen": pl.Int64(), "var": pl.Float64()})
