"""Render an analysis into the report an on-call engineer opens first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
import polars as pl

from tapshield import __version__
from tapshield.incident import LEVEL_NAMES, SCHEMA_VERSION
from tapshield.money import format_fen
from tapshield.report.svg import LEVEL_COLOURS, Series, Span, line_chart
from tapshield.timeutil import to_rfc3339, zone

if TYPE_CHECKING:
    from tapshield.pipeline.analyze import AnalysisResult

MAX_ALERT_ROWS = 500


@dataclass(frozen=True, slots=True)
class ReportSection:
    """An extra section another capability contributes (e.g. financing impact)."""

    title: str
    html: str


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("tapshield.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


@cache
def _css() -> str:
    return resources.files("tapshield.report").joinpath("templates/base.css").read_text()


def _delay(start: datetime, detected: datetime) -> str:
    seconds = int((detected - start).total_seconds())
    if seconds < 0:
        return ""
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _charts(result: AnalysisResult, tz: str) -> list[str]:
    tl = result.timeline
    if tl is None or tl.height == 0 or "bucket" not in tl.columns:
        return []
    x = [t.timestamp() for t in tl["bucket"].to_list()]
    spans = [
        Span(
            i.start.timestamp(),
            (i.end or i.detected_at).timestamp(),
            LEVEL_COLOURS.get(i.level, "#888"),
            f"{i.id} level {i.level} {i.cause}",
        )
        for i in result.incidents
    ]
    zi = zone(tz)
    charts: list[str] = []

    def col(name: str, scale: float = 1.0) -> list[float | None]:
        return [None if v is None else float(v) * scale for v in tl[name].to_list()]

    rates = [
        Series(label, x, col(name, 100.0))
        for name, label in (
            ("technical_failure_rate", "technical failure %"),
            ("decline_rate", "decline %"),
            ("risk_decline_rate", "risk decline %"),
        )
        if name in tl.columns
    ]
    if rates:
        charts.append(
            line_chart(rates, title="Failure and decline rates, whole flow", y_label="%",
                       spans=spans, tz=zi, y_min=0.0)
        )
    if "attempts" in tl.columns:
        charts.append(
            line_chart([Series("attempts per bucket", x, col("attempts"))], title="Traffic",
                       spans=spans, tz=zi, y_min=0.0)
        )
    lat = [
        Series(name, x, col(name))
        for name in ("latency_p50", "latency_p95", "latency_p99")
        if name in tl.columns
    ]
    if lat:
        charts.append(line_chart(lat, title="Latency", y_label="ms", spans=spans, tz=zi,
                                 y_min=0.0))
    return charts


def render_report(
    result: AnalysisResult,
    *,
    tz: str,
    changes: pl.DataFrame | None = None,
    title: str = "payment flow",
    sections: list[ReportSection] | None = None,
) -> str:
    incidents = []
    for inc in sorted(result.incidents, key=lambda i: (i.start, i.id)):
        d: dict[str, Any] = inc.to_dict(tz)
        d["delay"] = _delay(inc.start, inc.detected_at)
        incidents.append(d)
    alerts = [a.to_dict(tz) for a in result.alerts[:MAX_ALERT_ROWS]]
    change_rows = []
    if changes is not None and changes.height:
        for c in changes.sort("ts").iter_rows(named=True):
            change_rows.append(
                {
                    "ts": to_rfc3339(c["ts"], tz),
                    "kind": c["kind"],
                    "component": c["component"],
                    "version": c.get("version"),
                    "end_ts": to_rfc3339(c["end_ts"], tz) if c.get("end_ts") else None,
                    "note": c.get("note"),
                }
            )
    return _env().get_template("report.html.j2").render(
        title=title,
        css=_css(),
        generated=to_rfc3339(datetime.now(UTC), tz),
        summary=result.summary,
        lost_total=format_fen(int(result.summary.get("lost_fen", 0))),
        incidents=incidents,
        level_names=LEVEL_NAMES,
        alerts=alerts,
        alerts_truncated=max(0, len(result.alerts) - MAX_ALERT_ROWS),
        changes=change_rows,
        charts=_charts(result, tz),
        extra_sections=sections or [],
        version=__version__,
        schema_version=SCHEMA_VERSION,
    )
