"""``impact.html`` and the impact files: the valuation in forms people and programs read.

The HTML report is one self-contained file (inline SVG, inline CSS) that opens
offline and prints; the JSON carries the exact figures
(:func:`tapshield.impact.report.to_dict`); full tables also go to
``impact_merchants.csv`` and ``impact_borrowers.csv`` for spreadsheets.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tapshield import __version__
from tapshield.events.write import write_report_csv
from tapshield.impact.assess import ImpactResult
from tapshield.impact.report import format_frame, to_dict
from tapshield.report.charts import band_timeline, bars, paired_histogram
from tapshield.report.present import attention_key, fold
from tapshield.report.templates import environment


def _dscr_values(b: pl.DataFrame, col: str) -> list[float]:
    # Drawing only: float is fine for bar heights.
    return [v / 10_000 for v in b[col].drop_nulls().to_list()]


def render_html(result: ImpactResult, data: dict[str, Any]) -> str:
    charts = []
    for i, d in zip(result.incidents, data["incidents"], strict=True):
        tl = d["timeline"]
        labels = [r["hour"][5:16].replace("T", " ") for r in tl]
        w = i.window
        hours = [datetime.fromisoformat(r["hour"]) for r in tl]
        a = next((k for k, h in enumerate(hours) if h >= w.first_hour), 0)
        b_ = next((k for k, h in enumerate(hours) if h >= w.last_hour), len(hours))
        charts.append(band_timeline(
            labels,
            [float(r["counterfactual"]) for r in tl], [float(r["actual"]) for r in tl],
            [float(r["low"]) for r in tl], [float(r["high"]) for r in tl],
            (a, b_), title=f"{w.id}: sales of the affected merchants' slice per hour (yuan)",
        ))
    dscr_chart = ""
    top: list[dict[str, Any]] = []
    region_chart = industry_chart = ""
    if result.borrowers is not None:
        aff = result.borrowers.filter(pl.col("lost_net_fen") > 0)
        cov = aff["covenant_e4"].drop_nulls()
        marker = float(cov.mode().sort()[0]) / 10_000 if cov.len() else None
        edges = [round(0.1 * k, 1) for k in range(0, 31)]
        dscr_chart = paired_histogram(
            _dscr_values(aff, "dscr_before_e4"), _dscr_values(aff, "dscr_after_e4"),
            edges=edges, marker=marker,
            title=f"DSCR of the {aff.height:,} affected borrowers, current period",
        )
        order = {"operational_stress": 0, "pre_existing_credit": 1, "affected": 2}
        rows = [r for r in data.get("borrowers", []) if r["status"] in order]
        rows.sort(key=lambda r: (order[r["status"]], -float(r["bridge"] or 0),
                                 -float(r["lost_net"] or 0)))
        top = rows[:50]
        p = result.portfolio or {}
        reg = p.get("by_region", [])[:12]
        region_chart = bars([r["region"] for r in reg],
                            [float(r["exposure_at_risk_fen"]) / 100 for r in reg],
                            title="Exposure at risk by region (yuan)")
        ind = p.get("by_industry", [])[:12]
        industry_chart = bars([r["industry"] for r in ind],
                              [float(r["exposure_at_risk_fen"]) / 100 for r in ind],
                              title="Exposure at risk by industry (yuan)")
    # The incidents that cost sales get a full section each, the most severe first;
    # the rest (fraud attacks the risk engine stopped: no sale is lost) are one
    # folded line per kind, so a red outage is never pages below their notices.
    full = sorted(((d, c) for d, c in zip(data["incidents"], charts, strict=True)
                   if d["window"]["counts_losses"]), key=lambda dc: attention_key(dc[0]))
    notices = fold(d for d in data["incidents"] if not d["window"]["counts_losses"])
    template = environment().get_template("impact.html.j2")
    return template.render(
        data=data, full=full, notices=notices, dscr_chart=dscr_chart, top=top,
        region_chart=region_chart, industry_chart=industry_chart, version=__version__,
    )


def write_impact(result: ImpactResult, out_dir: Path | str) -> dict[str, Path]:
    """Write ``impact.json``, ``impact.html`` and the two CSV tables into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = to_dict(result)
    paths = {"json": out / "impact.json", "html": out / "impact.html",
             "merchants": out / "impact_merchants.csv"}
    paths["json"].write_text(json.dumps(data, indent=1, ensure_ascii=False, default=_default)
                             + "\n", encoding="utf-8")
    paths["html"].write_text(render_html(result, data), encoding="utf-8")
    write_report_csv(format_frame(result.merchants), paths["merchants"])
    if result.borrowers is not None:
        paths["borrowers"] = out / "impact_borrowers.csv"
        flat = result.borrowers.filter(pl.col("lost_net_fen") > 0).with_columns(
            pl.col("incidents").list.join(";"),
            pl.col("actions").list.eval(pl.element().struct.field("action")).list.join(";"),
        ).drop("merchant_ids")
        write_report_csv(format_frame(flat), paths["borrowers"])
    return paths


def _default(o: object) -> object:
    if isinstance(o, date | datetime):
        return o.isoformat()
    return str(o)
