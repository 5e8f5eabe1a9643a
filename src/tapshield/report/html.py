"""Render an analysis into the report an on-call engineer opens first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape
from typing import Any, Protocol

import polars as pl

from tapshield import __version__
from tapshield import timeline as tl_contract
from tapshield.incident import SCHEMA_VERSION, Incident
from tapshield.levels import LEVEL_NAMES
from tapshield.report.charts import LEVEL_COLOURS, Series, Span, line_chart
from tapshield.report.i18n import LANGS, tr
from tapshield.report.present import count, outage_amount, split_by_attention, yuan
from tapshield.report.templates import environment, stylesheet
from tapshield.timeline import check_timeline
from tapshield.timeutil import to_rfc3339, zone

MAX_ALERT_ROWS = 500


class _Alert(Protocol):
    def to_dict(self, tz: str) -> dict[str, Any]: ...


class AnalysisLike(Protocol):
    """What the report reads of an analysis (``pipeline.AnalysisResult`` is one).

    A protocol, not the pipeline's class: the report is drawn from results, it
    does not depend on the loop that produced them."""

    @property
    def incidents(self) -> list[Incident]: ...

    @property
    def alerts(self) -> Sequence[_Alert]: ...

    @property
    def summary(self) -> dict[str, Any]: ...

    @property
    def timeline(self) -> pl.DataFrame | None: ...


@dataclass(frozen=True, slots=True)
class ReportSection:
    """An extra section another capability contributes (e.g. financing impact)."""

    title: str
    html: str


def _delay(start: datetime, detected: datetime) -> str:
    seconds = int((detected - start).total_seconds())
    if seconds < 0:
        return ""
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _charts(result: AnalysisLike, tz: str, lang: str = "en") -> list[str]:
    """The flow's charts: failure and decline rates, traffic and latency, with the
    incidents shaded. The timeline is checked against its contract first: a
    renamed column fails loudly here instead of leaving a report without charts."""
    if result.timeline is None:
        return []
    tl = check_timeline(result.timeline, "report")
    if tl.height == 0:
        return []
    x = [t.timestamp() for t in tl[tl_contract.BUCKET_START].to_list()]
    spans = [
        Span(
            i.start.timestamp(),
            # an incident still open when the data ends is shaded to the end
            i.end.timestamp() if i.end is not None else max(x[-1], i.detected_at.timestamp()),
            LEVEL_COLOURS.get(i.level, "#888"),
            f"{i.id} level {i.level} {i.cause}",
        )
        # only what paged is shaded: a hundred fraud notices would hide the outage
        for i in result.incidents if i.level <= 3
    ]
    zi = zone(tz)

    def col(name: str, scale: float = 1.0) -> list[float | None]:
        return [None if v is None else float(v) * scale for v in tl[name].to_list()]

    rates = [
        Series(label, x, col(name, 100.0))
        for name, label in (
            (tl_contract.TECHNICAL_RATE, tr("technical_pct", lang)),
            (tl_contract.DECLINE_RATE, tr("decline_pct", lang)),
            (tl_contract.RISK_DECLINE_RATE, tr("risk_decline_pct", lang)),
        )
    ]
    latency = [
        Series(label, x, col(name))
        for name, label in (
            (tl_contract.LATENCY_P50_MS, "latency p50"),
            (tl_contract.LATENCY_P95_MS, "latency p95"),
            (tl_contract.LATENCY_P99_MS, "latency p99"),
        )
    ]
    return [
        line_chart(rates, title=tr("rates_title", lang), y_label="%",
                   spans=spans, tz=zi, y_min=0.0),
        line_chart([Series(tr("attempts_bucket", lang), x, col(tl_contract.ATTEMPTS))],
                   title=tr("traffic", lang), spans=spans, tz=zi, y_min=0.0),
        line_chart(latency, title=tr("latency", lang), y_label="ms", spans=spans, tz=zi, y_min=0.0),
    ]


def render_report(
    result: AnalysisLike,
    *,
    tz: str,
    changes: pl.DataFrame | None = None,
    title: str = "payment flow",
    sections: Sequence[ReportSection] | None = None,
    lang: str = "en",
) -> str:
    """The analysis report (``lang``: ``en`` or ``zh``): the most severe incident first,
    the paging incidents in attention order, level-4 notices folded into one line per
    kind, headline figures that agree with the terminal summary (refused fraud is never
    money lost)."""
    docs = []
    for inc in result.incidents:
        d: dict[str, Any] = inc.to_dict(tz)
        d["delay"] = _delay(inc.start, inc.detected_at)
        docs.append(d)
    paging, notices = split_by_attention(docs)
    outages = [d for d in docs if d.get("cause") != "fraud_attack"]
    attacks = [d for d in docs if d.get("cause") == "fraud_attack"]
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
    return environment().get_template("report.html.j2").render(
        title=title,
        css=stylesheet(),
        summary=result.summary,
        headline={
            "outage_failed": sum(int(d["failed_payments"]) for d in outages),
            "outage_lost": outage_amount(outages),
            "fraud_taps": sum(int(d["failed_payments"]) for d in attacks),
            "fraud_refused": sum((Decimal(str(d["lost_amount"])) for d in attacks),
                                 Decimal(0)),
            "fraud_incidents": len(attacks),
        },
        top=paging[0] if paging else None,
        incidents=paging,
        notices=notices,
        level_names=LEVEL_NAMES,
        alerts=alerts,
        alerts_total=len(result.alerts),
        alerts_truncated=max(0, len(result.alerts) - MAX_ALERT_ROWS),
        changes=change_rows,
        charts=_charts(result, tz, lang),
        extra_sections=list(sections or []),
        version=__version__,
        schema_version=SCHEMA_VERSION,
        lang=lang if lang in LANGS else "en",
        tr=lambda key, **kw: tr(key, lang, **kw),
    )


def digest_section(hours: Sequence[dict[str, Any]],
                   json_name: str = "fraud_digest.json") -> ReportSection:
    """The blocked-fraud digest of ``report.html``: one row per hour with blocked
    attempts. Ordinary fraud the risk engine blocked is the engine working: it is
    listed here, not as incidents, unless an attack was unusual (then it is one)."""
    def expected(h: dict[str, Any]) -> str:
        return "" if h["expected_blocked"] is None else f"{h['expected_blocked']:,.1f}"

    body = "".join(
        f"<tr><td>{escape(str(h['hour'])[5:16].replace('T', ' '))}</td>"
        f"<td class=num>{escape(count(h['attempts']))}</td>"
        f"<td class=num>{escape(count(h['blocked_attempts']))}</td>"
        f"<td class=num>{escape(yuan(h['blocked_amount']))}</td>"
        f"<td class=num>{escape(expected(h))}</td>"
        f"<td class=num>{escape(count(h['waves']))}</td>"
        f"<td>{escape(', '.join(h['incidents']))}</td></tr>"
        for h in hours if h["blocked_attempts"] or h["waves"]
    )
    return ReportSection(
        "Blocked fraud (hourly digest)",
        "<table><tr><th>hour</th><th class=num>attempts</th><th class=num>blocked</th>"
        "<th class=num>blocked (yuan)</th><th class=num>expected blocked</th>"
        "<th class=num>waves</th><th>incidents</th></tr>"
        f"{body}</table><p>Risk-decline waves become incidents only when they page or "
        "their size is unusual for the baseline of ordinary waves; details in "
        f"{escape(json_name)}.</p>",
    )


def impact_section(figures: dict[str, Any], html_name: str = "impact.html") -> ReportSection:
    """The financing-impact section of ``report.html``: the headline figures and a
    link to the full impact report beside it."""
    def shown(v: Any) -> str:
        # counts with separators, money (decimal strings) as yuan with separators
        return count(v) if isinstance(v, int) else yuan(v) if isinstance(v, str) else str(v)

    rows = "".join(
        f"<tr><td>{escape(k.replace('_', ' '))}</td><td class=num>{escape(shown(v))}</td></tr>"
        for k, v in figures.items()
    )
    return ReportSection(
        "Financing impact",
        f"<table>{rows}</table><p>Per merchant, per borrower and by regulation: "
        f'<a href="{escape(html_name)}">{escape(html_name)}</a> (data in impact.json).</p>',
    )
