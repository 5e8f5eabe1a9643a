"""The impact result as data people and programs read (``impact.json``'s content).

JSON carries money as exact decimal-yuan strings (``"42000.00"``), ratios as
decimal strings (``"1.1975"``), dates as ISO dates and instants as RFC 3339 in
the business time zone; columns named ``*_fen``, ``*_e4`` and ``*_ppm`` inside
the frames lose the suffix on the way out. The files (``impact.json``, the
self-contained ``impact.html`` and the CSV tables for spreadsheets) are
written by :func:`tapshield.report.impact.write_impact`, at the edge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl

from tapshield import __version__
from tapshield.events.write import fen_to_text
from tapshield.impact.assess import ImpactResult, IncidentImpact
from tapshield.impact.exact import ppm_text, ratio_text
from tapshield.money import format_fen
from tapshield.timeutil import to_rfc3339

SCHEMA_VERSION = "1.0"

ASSUMPTIONS: tuple[str, ...] = (
    "Counterfactual sales come from each merchant's own history of the same slice: the mean "
    "of the same hour of the week over recent weeks; with too little history, the same hour "
    "of the day over recent days; with neither, the demand that showed up (approved plus "
    "failed taps), which cannot see customers who never tried.",
    "Only merchants with at least one failed tap in the incident's slice are counted.",
    "A payment by the same customer at the same merchant through another channel within the "
    "recapture window after a failure is a recaptured sale; cash and other payments outside "
    "the events cannot be seen, so the loss may be overstated by them.",
    "Lost cash flow = net lost sales x contribution margin; CFADS and margins are the "
    "portfolio's figures, taken as given.",
    "DSCR periods are calendar months in the business time zone; CFADS accrues evenly over "
    "each month; lost sales reach the borrower's account after the settlement lag.",
    "A shortfall is operational when it appears with the outage and not without it; "
    "otherwise it is a credit matter.",
)


# -- JSON --------------------------------------------------------------------


def _json_frame(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return format_frame(frame).to_dicts()


def format_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Money, ratio and share columns as exact strings, without their unit suffix."""
    cols = []
    for name, dtype in frame.schema.items():
        if name.startswith("_"):
            continue
        if name.endswith("_fen") and dtype.is_integer():
            cols.append(pl.when(pl.col(name).is_not_null()).then(fen_to_text(name))
                        .alias(name.removesuffix("_fen")))
        elif name.endswith("_e4") and dtype.is_integer():
            c = pl.col(name)
            cols.append(pl.when(c.is_not_null()).then(pl.concat_str([
                pl.when(c < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                (c.abs() // 10_000).cast(pl.String), pl.lit("."),
                (c.abs() % 10_000).cast(pl.String).str.zfill(4)])).alias(name.removesuffix("_e4")))
        elif name.endswith("_ppm") and dtype.is_integer():
            cols.append(pl.col(name).map_elements(ppm_text, return_dtype=pl.String)
                        .alias(name.removesuffix("_ppm")))
        elif name == "actions" and isinstance(dtype, pl.List):
            cols.append(pl.col(name).list.eval(pl.struct(
                pl.element().struct.field("action"),
                pl.when(pl.element().struct.field("amount_fen").is_not_null())
                .then(fen_to_text_expr(pl.element().struct.field("amount_fen"))).alias("amount"),
                pl.element().struct.field("days"),
                pl.element().struct.field("until").cast(pl.String),
                pl.element().struct.field("reason"),
            )).alias(name))
        elif isinstance(dtype, pl.Date):
            cols.append(pl.col(name).cast(pl.String))
        elif isinstance(dtype, pl.Datetime):
            cols.append(pl.col(name).dt.strftime("%Y-%m-%dT%H:%M"))
        elif isinstance(dtype, pl.Enum | pl.Categorical):
            cols.append(pl.col(name).cast(pl.String))
        else:
            cols.append(pl.col(name))
    return frame.select(cols)


def fen_to_text_expr(fen: pl.Expr) -> pl.Expr:
    return pl.concat_str([
        pl.when(fen < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (fen.abs() // 100).cast(pl.String), pl.lit("."),
        (fen.abs() % 100).cast(pl.String).str.zfill(2),
    ])


def _money_dict(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k.endswith("_fen") and isinstance(v, int):
            out[k.removesuffix("_fen")] = format_fen(v)
        else:
            out[k] = v
    return out


def _incident_dict(i: IncidentImpact, result: ImpactResult, tz: str) -> dict[str, Any]:
    w = i.window
    cells = i.sales.cells
    conf = str(result.config.confidence)

    def breakdown(key: str) -> list[dict[str, Any]]:
        if cells.height == 0:
            return []
        g = cells.group_by(key).agg(
            pl.col("gross_fen").sum(), pl.col("recaptured_fen").sum(), pl.col("net_fen").sum(),
            pl.col("merchant_id").filter(pl.col("gross_fen") > 0).n_unique().alias("merchants"),
        ).sort("net_fen", key, descending=[True, False])
        return _json_frame(g)

    t = i.sales.timeline
    from tapshield.impact.stress import z_value

    z = z_value(float(result.config.confidence))
    tl = t.with_columns(
        (pl.col("var").sqrt() * z).round(0).cast(pl.Int64).alias("_h")
    ).with_columns(
        (pl.col("counterfactual_fen") - pl.col("_h")).clip(lower_bound=0).alias("low_fen"),
        (pl.col("counterfactual_fen") + pl.col("_h")).alias("high_fen"),
    ).drop("var")
    tot = i.totals
    return {
        "id": w.id,
        "cause": w.incident.cause,
        "level": w.incident.level,
        "scope": w.scope,
        "start": to_rfc3339(w.start, tz),
        "end": to_rfc3339(w.end, tz),
        "open": w.incident.end is None,
        "window": {"first_hour": w.first_hour.isoformat(), "last_hour": w.last_hour.isoformat(),
                   "counts_losses": w.signature is not None},
        "lost_sales": {
            "counterfactual": format_fen(tot["counterfactual_fen"]),
            "actual": format_fen(tot["actual_fen"]),
            "gross": format_fen(tot["gross_fen"]),
            "recaptured": format_fen(tot["recaptured_fen"]),
            "net": format_fen(tot["net_fen"]),
            "band": {"low": format_fen(tot["net_low_fen"]), "high": format_fen(tot["net_high_fen"]),
                     "confidence": conf},
            "recapture_rate": ratio_text(tot["recaptured_fen"], tot["failed_fen"]),
            "method_hours": {"hour_of_week": tot["hours_week"], "hour_of_day": tot["hours_day"],
                             "attempts": tot["hours_attempts"]},
        },
        "taps": _money_dict({k: v for k, v in tot.items() if k in i.sales.taps}),
        "by_region": breakdown("region"),
        "by_channel": breakdown("channel"),
        "timeline": _json_frame(tl),
        "regulatory": {"dora": i.dora, "prc": i.prc},
        **({"trust": result.trust[i.window.id]} if i.window.id in result.trust else {}),
    }


def to_dict(result: ImpactResult) -> dict[str, Any]:
    """The whole result as JSON-ready data (see the module doc for formats)."""
    tz = result.config.tz
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tapshield_version": __version__,
        "generated_at": to_rfc3339(datetime.now().astimezone(), tz),
        "config": result.config.as_dict(),
        "regulatory_config": result.regulatory.path,
        "inputs": result.inputs,
        "assumptions": list(ASSUMPTIONS),
        "summary": summary(result),
        "incidents": [_incident_dict(i, result, tz) for i in result.incidents],
        "merchants": _json_frame(result.merchants.filter(pl.col("gross_fen") > 0)),
    }
    if result.borrowers is not None and result.periods is not None:
        p = result.periods
        b = result.borrowers.filter(pl.col("lost_net_fen") > 0).drop("merchant_ids")
        b = b.with_columns(
            (pl.lit(p.day0) + pl.duration(days=pl.col(c))).alias(c.replace("_day", "_date"))
            for c in ("first_missed_base_day", "first_missed_day", "first_operational_miss_day")
        )
        out["periods"] = {"day0": p.day0.isoformat(),
                          "current": [p.current[0].isoformat(), p.current[1].isoformat()],
                          "next": [p.next[0].isoformat(), p.next[1].isoformat()]}
        out["borrowers"] = _json_frame(b)
        assert result.portfolio is not None
        out["portfolio"] = {
            "totals": _money_dict(result.portfolio["totals"]),
            "by_region": [_money_dict(r) for r in result.portfolio["by_region"]],
            "by_industry": [_money_dict(r) for r in result.portfolio["by_industry"]],
        }
    return out


def summary(result: ImpactResult) -> dict[str, Any]:
    net = sum(i.totals["net_fen"] for i in result.incidents)
    out: dict[str, Any] = {
        "incidents": len(result.incidents),
        "net_lost_sales": format_fen(net),
        "merchants_affected": int(result.merchants.filter(pl.col("gross_fen") > 0)
                                  ["merchant_id"].n_unique()),
    }
    if result.portfolio is not None:
        t = result.portfolio["totals"]
        out.update({
            "borrowers_affected": t["borrowers_affected"],
            "borrowers_operational_stress": t["operational_stress"],
            "borrowers_pre_existing_credit": t["pre_existing_credit"],
            "exposure_at_risk": format_fen(t["exposure_at_risk_fen"]),
            "covenant_breaches_caused": t["covenant_breaches_caused"],
            "bridge_lines": format_fen(t["bridge_lines_fen"]),
            "lost_cash_flow": format_fen(t["lost_cf_fen"]),
        })
    return out
