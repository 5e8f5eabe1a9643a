"""What each console page shows, read from the service's own stores.

Everything here is a read over the same use cases the API serves (the incident
desk, the router's health, the silences), plus two read-only files an analysis
leaves: the run's national timeline (stored with the run by
``storage.sink.StoreSink``) and ``impact.json`` (``console.impact_file``).
Nothing here writes; the routes call the desk for the lifecycle actions.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, String, column, func, select, table

from tapshield.console import provinces
from tapshield.console.i18n import t
from tapshield.console.ports import Runtime as ServiceRuntime
from tapshield.levels import LEVEL_NAMES
from tapshield.report.charts import LEVEL_COLOURS, Series, Span, line_chart
from tapshield.report.present import (
    LEVEL_GLYPHS,
    attention_key,
    count,
    percent,
    scope_text,
    split_by_attention,
    yuan,
)
from tapshield.storage import tables as st
from tapshield.timeutil import zone

TZ = "Asia/Shanghai"
WINDOW_MIN = 120
"""The Now page shows the last two hours of data."""
attempts = table("service_attempts", column("decision", String),
                 column("created_at", st.UTCDateTime), column("number", Integer),
                 column("answer", st.JsonDoc))
"""The service's tap book, read-only, for the Risk page's decision rates (the
console does not import the service; the browser test reads real decisions
through these columns, so a rename fails there)."""
HEALTH_RANK = {"down": 3, "trial": 2, "ok": 1, "none": 0}


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text)).timestamp()


def _local(text: str | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    if not text:
        return ""
    return datetime.fromisoformat(str(text)).astimezone(zone(TZ)).strftime(fmt)


# -- the run's national timeline --------------------------------------------------------


def latest_timeline(rt: ServiceRuntime) -> list[dict[str, Any]]:
    """Per-minute national series of the newest run that recorded one."""
    q = (select(st.runs.c.summary).where(st.runs.c.summary.is_not(None))
         .order_by(st.runs.c.started_at.desc()).limit(20))
    with rt.engine.connect() as conn:
        for (summary,) in conn.execute(q):
            rows = (summary or {}).get("timeline") if isinstance(summary, Mapping) else None
            if rows:
                return list(rows)
    return []


@dataclass(slots=True)
class Point:
    t: float
    taps: int
    success: float | None
    technical: float | None
    expected_technical: float | None
    expected_success: float | None = None
    expected_taps: float | None = None


BASELINE_MIN = 30
"""Expected success and traffic: the mean of the last 30 minutes outside any paging
incident (the monitor's hour-of-week profile is not stored with the run; a
trailing baseline is what an on-call engineer compares against by eye)."""


def points(rows: Sequence[Mapping[str, Any]],
           incidents: Sequence[tuple[float, float]] = ()) -> list[Point]:
    """Per-minute points with their expectations; ``incidents`` are (start, end) spans
    kept out of the baseline so an outage does not lower its own expectation."""
    out = []
    base_s: list[float] = []
    base_t: list[float] = []
    for r in rows:
        taps = int(r.get("taps") or 0)
        att = int(r.get("attempts") or 0)
        ok = int(r.get("approved") or 0)
        tech = int(r.get("technical_failures") or 0)
        exp = r.get("expected_technical_rate")
        x = float(r["t"])
        p = Point(x, taps, ok / taps if taps else None, tech / att if att else None,
                  float(exp) if exp is not None else None)
        if len(base_s) >= 5:
            p.expected_success = sum(base_s[-BASELINE_MIN:]) / len(base_s[-BASELINE_MIN:])
        if len(base_t) >= 5:
            p.expected_taps = sum(base_t[-BASELINE_MIN:]) / len(base_t[-BASELINE_MIN:])
        if not any(a <= x + 60 and x <= b for a, b in incidents):
            if p.success is not None:
                base_s.append(p.success)
            base_t.append(float(taps))
        out.append(p)
    return out


def _spans_of(docs: Sequence[Mapping[str, Any]], end: float) -> list[tuple[float, float]]:
    return [(_ts(d.get("start")) or end, _ts(d.get("end")) or end) for d in docs
            if int(d.get("level") or 4) <= 3]


def _level_spans(doc: Mapping[str, Any], end_default: float, lang: str) -> list[Span]:
    """The incident shaded by level: one span per stretch at one level."""
    hist = [h for h in doc.get("level_history") or [] if h.get("level")]
    start = _ts(doc.get("start")) or end_default
    end = _ts(doc.get("end")) or end_default
    if not hist:
        lvl = int(doc.get("level") or 4)
        return [Span(start, end, LEVEL_COLOURS.get(lvl, "#888"),
                     f"{doc.get('id')} {t('level_' + str(lvl), lang)}")]
    spans = []
    marks = [(start, int(hist[0]["level"]))] + [
        (_ts(h["ts"]) or start, int(h["level"])) for h in hist[1:]]
    for i, (a, lvl) in enumerate(marks):
        b = marks[i + 1][0] if i + 1 < len(marks) else end
        if b > a:
            spans.append(Span(a, b, LEVEL_COLOURS.get(lvl, "#888"),
                              f"{doc.get('id')} {t('level_' + str(lvl), lang)}"))
    return spans


def charts(pts: Sequence[Point], spans: Sequence[Span], lang: str) -> dict[str, str]:
    if not pts:
        return {}
    x = [p.t for p in pts]
    tz = zone(TZ)
    success = line_chart(
        [Series(t("success_rate", lang), x, [None if p.success is None else p.success * 100
                                             for p in pts], colour="#111827"),
         Series(t("expected", lang), x,
                [None if p.expected_success is None else p.expected_success * 100
                 for p in pts], colour="#16a34a", dashed=True)],
        title=t("success_rate", lang) + " %", y_label="%", spans=spans, tz=tz,
        height=230)
    traffic = line_chart(
        [Series(t("taps_per_min", lang), x, [float(p.taps) for p in pts], colour="#2563eb"),
         Series(t("expected", lang), x, [p.expected_taps for p in pts], colour="#16a34a",
                dashed=True)],
        title=t("traffic", lang) + " (" + t("taps_per_min", lang) + ")", spans=spans, tz=tz,
        y_min=0.0, height=200)
    tech = line_chart(
        [Series(t("technical_rate", lang), x,
                [None if p.technical is None else p.technical * 100 for p in pts],
                colour="#dc2626"),
         Series(t("expected", lang), x,
                [None if p.expected_technical is None else p.expected_technical * 100
                 for p in pts], colour="#16a34a", dashed=True)],
        title=t("technical_rate", lang) + " %", y_label="%", spans=spans, tz=tz, y_min=0.0,
        height=200)
    return {"success": success, "traffic": traffic, "technical": tech}


# -- incidents ----------------------------------------------------------------------------


def incident_row(item: Mapping[str, Any], lang: str) -> dict[str, Any]:
    d = item.get("incident", item)
    lvl = int(d.get("level") or 4)
    return {
        "id": d["id"], "level": lvl, "glyph": LEVEL_GLYPHS[lvl],
        "level_text": t(f"level_{lvl}", lang), "level_name": LEVEL_NAMES.get(lvl, ""),
        "open": d.get("end") is None, "start": _local(d.get("start")),
        "detected": _local(d.get("detected_at")), "end": _local(d.get("end")),
        "scope": scope_text(d.get("scope"), t("everything", lang)),
        "cause": d.get("cause", "unknown"),
        "confidence": percent(d.get("confidence"), 0),
        "failed_payments": count(d.get("failed_payments")),
        "lost": yuan(d.get("lost_amount")),
        "handling": item.get("handling") or {},
    }


def incident_lists(rt: ServiceRuntime, lang: str, *, status: str | None = None,
                   cause: str | None = None, level: int | None = None,
                   limit: int = 1000) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Paging incidents in attention order, notices folded per kind."""
    items, _ = rt.desk.find(status=status, cause=cause, level_at_most=level, limit=limit)
    by_id = {i["incident"]["id"]: i for i in items}
    paging, groups = split_by_attention(i["incident"] for i in items)
    rows = [incident_row(by_id[d["id"]], lang) for d in paging]
    folded = [{"cause": g.cause, "n": len(g.items), "first": _local(g.first),
               "last": _local(g.last), "failed_payments": count(g.failed_payments),
               "amount": yuan(g.amount),
               "items": [incident_row(by_id[d["id"]], lang) for d in g.items[:200]]}
              for g in groups]
    return rows, folded


# -- channel health by province -------------------------------------------------------------


def province_health(rt: ServiceRuntime, open_docs: Sequence[Mapping[str, Any]],
                    lang: str) -> dict[str, Any]:
    """Each province x channel: the router's live state where it has one, else what the
    open incidents' scopes say (an incident scoped to a channel only covers every
    province)."""
    channels = list(rt.router_config.order)
    state: dict[tuple[str, str], str] = {}
    for d in open_docs:
        if int(d.get("level") or 4) == 4 or d.get("cause") == "fraud_attack":
            continue
        for s in d.get("scope") or []:
            chans = [s["channel"]] if s.get("channel") in channels else channels
            regions = [s["region"]] if s.get("region") else [p.code for p in provinces.TILES]
            for ch in chans:
                for r in regions:
                    state[(r, ch)] = "down"
    for row in rt.router.snapshot(time.time()):
        r, ch = str(row.get("region") or ""), str(row.get("channel"))
        if not r or ch not in channels:
            continue
        live = "down" if row["eliminated"] else "trial" if row["trial"] else "ok"
        if HEALTH_RANK[live] >= HEALTH_RANK.get(state.get((r, ch), "none"), 0):
            state[(r, ch)] = live
    tiles = []
    for p in provinces.TILES:
        cells = [{"channel": ch, "state": state.get((p.code, ch), "none")} for ch in channels]
        worst = max((c["state"] for c in cells), key=lambda s: HEALTH_RANK[s])
        tiles.append({"code": p.code, "col": p.col - provinces.MIN_COL + 1, "row": p.row + 1,
                      "name": provinces.name(p.code, lang), "state": worst, "cells": cells,
                      "label": provinces.name(p.code, lang) + ": " + ", ".join(
                          f"{c['channel']} {t('health_' + c['state'], lang)}" for c in cells)})
    down = sorted({p for (p, _), s in state.items() if s == "down"})
    return {"tiles": tiles, "channels": channels, "cols": provinces.COLS,
            "rows": provinces.ROWS, "down": len(down)}


# -- Now ----------------------------------------------------------------------------------


def now_view(rt: ServiceRuntime, lang: str) -> dict[str, Any]:
    rows = latest_timeline(rt)
    open_items, _ = rt.desk.find(status="open", limit=1000)
    open_docs = [i["incident"] for i in open_items]
    recent, _ = rt.desk.find(status="closed", level_at_most=3, limit=5)
    end_t = float(rows[-1]["t"]) + 60 if rows else time.time()
    pts = points(rows[-WINDOW_MIN - BASELINE_MIN:], _spans_of(
        open_docs + [i["incident"] for i in recent], end_t))[-WINDOW_MIN:]
    paging, groups = split_by_attention(open_docs)
    by_id = {i["incident"]["id"]: i for i in open_items}
    open_rows = [incident_row(by_id[d["id"]], lang) for d in paging]
    levels = Counter(int(d.get("level") or 4) for d in open_docs)
    last = pts[-5:]
    taps = sum(p.taps for p in last)

    def mean(vals: list[float | None]) -> float | None:
        v = [x for x in vals if x is not None]
        return sum(v) / len(v) if v else None

    exp_traffic = mean([p.expected_taps for p in last])
    end = pts[-1].t + 60 if pts else time.time()
    spans = [s for d in paging for s in _level_spans(d, end, lang)]
    health = province_health(rt, open_docs, lang)
    return {
        "as_of": (datetime.fromtimestamp(pts[-1].t + 60, zone(TZ)).strftime("%Y-%m-%d %H:%M")
                  if pts else None),
        "success": percent(mean([p.success for p in last])),
        "success_expected": percent(mean([p.expected_success for p in last])),
        "traffic": count(round(taps / len(last))) if last else "–",
        "traffic_expected": count(round(exp_traffic)) if exp_traffic is not None else "–",
        "provinces_down": sum(1 for tl in health["tiles"] if tl["state"] == "down"),
        "charts": charts(pts, spans, lang),
        "open": open_rows, "notices": [
            {"cause": g.cause, "n": len(g.items)} for g in groups],
        "levels": [{"level": lv, "n": levels.get(lv, 0), "glyph": LEVEL_GLYPHS[lv],
                    "text": t(f"level_{lv}", lang)} for lv in (1, 2, 3, 4)],
        "recent": [incident_row(i, lang) for i in recent],
        "health": health,
    }


def now_version(rt: ServiceRuntime) -> str:
    """Changes whenever anything on the Now page would (the live stream's trigger)."""
    items, total = rt.desk.find(status="open", limit=1000)
    parts = [str(total)] + [
        f"{i['incident']['id']}:{i['incident'].get('level')}:{i['handling'].get('notes')}:"
        f"{i['handling'].get('acknowledged_at')}:{i['handling'].get('resolved_at')}"
        for i in items]
    parts += [f"{r['channel']}/{r['region']}:{r['eliminated']}:{r['trial']}"
              for r in rt.router.snapshot(time.time())]
    with rt.engine.connect() as conn:
        parts.append(str(conn.execute(select(func.max(st.runs.c.finished_at))).scalar()))
    return str(hash("|".join(parts)))


def incident_version(rt: ServiceRuntime, incident_id: str) -> str:
    got = rt.desk.get(incident_id)
    if got is None:
        return "gone"
    d = got["incident"]
    return f"{d.get('level')}:{d.get('end')}:{len(got['actions'])}:{d.get('failed_payments')}"


# -- one incident ---------------------------------------------------------------------------


def incident_view(rt: ServiceRuntime, incident_id: str, lang: str,
                  impact: ImpactFile | None) -> dict[str, Any] | None:
    got = rt.desk.get(incident_id)
    if got is None:
        return None
    d = got["incident"]
    rows = latest_timeline(rt)
    start = _ts(d.get("start")) or 0.0
    end = _ts(d.get("end"))
    lo = start - 30 * 60
    hi = (end + 30 * 60) if end is not None else float("inf")
    pts = [p for p in points([r for r in rows if lo - BASELINE_MIN * 60 <= float(r["t"]) <= hi],
                             [(start, end if end is not None else float("inf"))])
           if p.t >= lo]
    last = pts[-1].t + 60 if pts else time.time()
    spans = _level_spans(d, last, lang)
    alerts, _ = rt.desk.alerts(incident_id=incident_id, limit=200)
    levels = [{"at": _local(h.get("ts")), "state": h.get("state"), "level": h.get("level"),
               "glyph": LEVEL_GLYPHS.get(int(h.get("level") or 4), ""),
               "text": t(f"level_{int(h.get('level') or 4)}", lang)}
              for h in d.get("level_history") or []]
    imp = impact.incident(incident_id) if impact is not None else None
    response = response_timeline(rt, incident_id)
    saved = None
    if imp is not None:
        taps = imp.get("taps") or {}
        try:
            n = int(taps.get("affected_payments", 0)) - int(taps.get("failed_payments", 0))
            amt = Decimal(str(taps.get("affected", "0"))) - Decimal(str(taps.get("failed", "0")))
            saved = {"payments": count(n), "amount": yuan(amt)}
        except (ValueError, InvalidOperation):
            saved = None
    return {
        "row": incident_row(got, lang), "doc": d, "evidence": list(d.get("evidence") or []),
        "scope": [dict(s) for s in d.get("scope") or []], "charts": charts(pts, spans, lang),
        "levels": levels, "actions": [
            {**a, "at": _local(a["at"].isoformat() if isinstance(a["at"], datetime)
                               else a["at"])} for a in got["actions"]],
        "handling": got["handling"], "alerts": len(alerts),
        "figures": {"failed_attempts": count(d.get("failed_attempts")),
                    "failed_payments": count(d.get("failed_payments")),
                    "users": count(d.get("affected_users")),
                    "merchants": count(d.get("affected_merchants")),
                    "lost": yuan(d.get("lost_amount"))},
        "saved": saved, "response": response,
        "state": next((r["what"] for r in reversed(response) if r["kind"] == "transition"),
                      None),
        "impact": _impact_incident(imp, lang) if imp is not None else None,
    }


def response_timeline(rt: ServiceRuntime, incident_id: str) -> list[dict[str, Any]]:
    """The response desk's timeline of the incident (lifecycle moves, customer notices,
    partner updates), read-only; empty until the desk has written one."""
    from sqlalchemy.exc import SQLAlchemyError

    from tapshield.comms.outbox import timeline

    try:
        with rt.engine.connect() as conn:
            rows = list(conn.execute(select(timeline).where(timeline.c.incident_id == incident_id)
                                     .order_by(timeline.c.seq)).mappings())
    except SQLAlchemyError:  # the desk's tables are created on its first write
        return []
    return [{"at": _local(r["at"].isoformat() if isinstance(r["at"], datetime) else r["at"]),
             "kind": r["kind"], "what": r["what"], "why": r["why"], "actor": r["actor"]}
            for r in rows]


def _impact_incident(imp: Mapping[str, Any], lang: str) -> dict[str, Any]:
    reg = imp.get("regulatory") or {}
    dora = reg.get("dora") or {}
    pboc = reg.get("prc") or reg.get("pboc") or {}
    sales = imp.get("lost_sales") or {}
    band = sales.get("band") or {}
    return {"net": yuan(sales.get("net")), "low": yuan(band.get("low")),
            "high": yuan(band.get("high")),
            "dora": t("major", lang) if dora.get("major") else t("not_major", lang),
            "dora_criteria": f"{dora.get('criteria_met', '–')}/{dora.get('min_criteria', '–')}",
            "pboc": _grade(pboc), "pboc_detail": _regions_text(pboc)}


# -- financing impact -----------------------------------------------------------------------


class ImpactFile:
    """``impact.json`` of the newest analysis, re-read when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._doc: dict[str, Any] | None = None

    def doc(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if mtime != self._mtime:
            try:
                self._doc = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError):
                return None
            self._mtime = mtime
        return self._doc

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        doc = self.doc() or {}
        for i in doc.get("incidents") or []:
            if i.get("id") == incident_id:
                return dict(i)
        return None


@dataclass(slots=True)
class ImpactFilter:
    incident: str = ""
    region: str = ""
    label: str = ""
    q: str = ""
    stressed: bool = False
    limit: int = 500
    options: dict[str, list[str]] = field(default_factory=dict)


def _days_to_miss(b: Mapping[str, Any], day0: str | None) -> int | None:
    when = b.get("first_operational_miss_date") or b.get("first_missed_date")
    if not when or not day0:
        return None
    return (date.fromisoformat(str(when)) - date.fromisoformat(str(day0))).days


def _dec(v: Any) -> Decimal:
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def borrower_rows(doc: Mapping[str, Any], f: ImpactFilter) -> list[dict[str, Any]]:
    day0 = (doc.get("periods") or {}).get("day0")
    out = []
    for b in doc.get("borrowers") or []:
        if f.incident and f.incident not in (b.get("incidents") or []):
            continue
        if f.region and b.get("region") != f.region:
            continue
        if f.label and (b.get("label") or "") != f.label:
            continue
        if f.stressed and b.get("status") in (None, "affected"):
            continue
        if f.q and f.q.lower() not in json.dumps(b, ensure_ascii=False).lower():
            continue
        out.append({
            "borrower_id": b.get("borrower_id"), "region": b.get("region"),
            "industry": b.get("industry"), "status": b.get("status"),
            "label": b.get("label") or "", "lost_net": b.get("lost_net"),
            "dscr_before": b.get("dscr_before"), "dscr_after": b.get("dscr_after"),
            "covenant": b.get("covenant"), "breach": bool(b.get("covenant_breach_caused")),
            "liquidity_gap": b.get("liquidity_gap"),
            "days_to_miss": _days_to_miss(b, day0),
            "actions": [a.get("action") for a in b.get("actions") or []],
            "action_reasons": [a.get("reason") for a in b.get("actions") or []],
            "incidents": list(b.get("incidents") or [])})
    severity = {"operational_stress": 0, "pre_existing_credit": 1}
    out.sort(key=lambda r: (severity.get(str(r["status"]), 2),
                            r["days_to_miss"] if r["days_to_miss"] is not None else 10**6,
                            -_dec(r["lost_net"])))
    return out


def impact_view(impact: ImpactFile, f: ImpactFilter, lang: str) -> dict[str, Any] | None:
    doc = impact.doc()
    if doc is None:
        return None
    rows = borrower_rows(doc, f)
    s = doc.get("summary") or {}
    merchants = doc.get("merchants") or []
    incs = sorted(doc.get("incidents") or [], key=attention_key)
    regs = []
    for i in incs:
        if i.get("cause") == "fraud_attack":
            continue
        reg = i.get("regulatory") or {}
        dora, pboc = reg.get("dora") or {}, reg.get("prc") or reg.get("pboc") or {}
        regs.append({"id": i.get("id"), "level": i.get("level"),
                     "glyph": LEVEL_GLYPHS.get(int(i.get("level") or 4), ""),
                     "level_text": t(f"level_{int(i.get('level') or 4)}", lang),
                     "scope": scope_text(i.get("scope"), t("everything", lang)),
                     "net": yuan((i.get("lost_sales") or {}).get("net")),
                     "dora": t("major", lang) if dora.get("major") else t("not_major", lang),
                     "dora_criteria": f"{dora.get('criteria_met', '–')}/"
                                      f"{dora.get('min_criteria', '–')}",
                     "pboc": _grade(pboc),
                     "pboc_regions": _regions_text(pboc)})
    fraud = sum(1 for i in incs if i.get("cause") == "fraud_attack")
    return {
        "summary": {"net_lost_sales": yuan(s.get("net_lost_sales")),
                    "merchants": count(s.get("merchants_affected")),
                    "borrowers": count(s.get("borrowers_affected")),
                    "stress": count(s.get("borrowers_operational_stress")),
                    "credit": count(s.get("borrowers_pre_existing_credit")),
                    "exposure": yuan(s.get("exposure_at_risk")),
                    "breaches": count(s.get("covenant_breaches_caused")),
                    "bridge": yuan(s.get("bridge_lines"))},
        "rows": [{**r, "lost_net": yuan(r["lost_net"]),
                  "liquidity_gap": yuan(r["liquidity_gap"])} for r in rows[:f.limit]],
        "total": len(rows), "merchant_rows": len(merchants), "regulatory": regs,
        "fraud_notices": fraud,
        "options": {"incident": sorted({i for b in doc.get("borrowers") or []
                                        for i in b.get("incidents") or []}),
                    "region": sorted({str(b.get("region")) for b in doc.get("borrowers") or []}),
                    "label": sorted({str(b.get("label")) for b in doc.get("borrowers") or []
                                     if b.get("label")})},
    }


def _grade(pboc: Mapping[str, Any]) -> str:
    grade = str(pboc.get("grade") or "–").replace("_", " ")
    return grade + (f" {pboc['label']}" if pboc.get("label") else "")


def _regions_text(pboc: Mapping[str, Any]) -> str:
    """The provinces behind the grade, at most six named (a long list is what pushed the
    old report's columns off the page)."""
    regions: list[str] = []
    for g in pboc.get("grades") or []:
        for c in g.get("criteria") or []:
            for r in c.get("provinces") or []:
                if r not in regions:
                    regions.append(str(r))
    if isinstance(regions, list) and regions:
        shown = ", ".join(str(r) for r in regions[:6])
        return shown + (f" +{len(regions) - 6}" if len(regions) > 6 else "")
    return ""


CSV_COLUMNS = ("borrower_id", "region", "industry", "status", "label", "lost_net",
               "dscr_before", "dscr_after", "covenant", "breach", "liquidity_gap",
               "days_to_miss", "actions", "incidents")


def impact_csv(impact: ImpactFile, f: ImpactFilter) -> str | None:
    doc = impact.doc()
    if doc is None:
        return None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in borrower_rows(doc, ImpactFilter(f.incident, f.region, f.label, f.q, f.stressed,
                                             limit=10**9)):
        vals = [";".join(r[c]) if isinstance(r[c], list) else r[c] for c in CSV_COLUMNS]
        # Formula-safe for spreadsheets: a cell starting with = + - @ is quoted text.
        w.writerow(["'" + v if isinstance(v, str) and v[:1] in "=+-@" else
                    ("" if v is None else v) for v in vals])
    return buf.getvalue()


# -- risk -----------------------------------------------------------------------------------


def risk_view(rt: ServiceRuntime, risk_dir: Path | None, lang: str) -> dict[str, Any]:
    since = datetime.fromtimestamp(time.time() - 86_400, UTC)
    q = (select(attempts.c.decision, func.count()).where(attempts.c.created_at >= since)
         .where(attempts.c.number == 1).group_by(attempts.c.decision))
    with rt.engine.connect() as conn:
        counts = {str(d): int(n) for d, n in conn.execute(q)}
        reasons: Counter[str] = Counter()
        rq = (select(attempts.c.answer).where(attempts.c.created_at >= since)
              .where(attempts.c.number == 1).where(attempts.c.decision != "approve")
              .limit(20_000))
        for (ans,) in conn.execute(rq):
            for r in (ans or {}).get("reasons") or []:
                reasons[str(r)] += 1
    total = sum(counts.values())
    rates = [{"decision": k, "n": count(v), "rate": percent(v / total if total else None)}
             for k, v in sorted(counts.items())]
    rules = [{"name": r.name, "decision": r.decision, "reason": r.reason,
              "when": "; ".join(f"{k} in {','.join(v)}" for k, v in r.when.items()),
              "hits": count(reasons.get(f"{r.name}: {r.reason}" if r.reason else r.name, 0))}
             for r in rt.settings.decision.rules]
    backtest = None
    if risk_dir is not None and (risk_dir / "backtest.json").is_file():
        try:
            backtest = _flatten(json.loads((risk_dir / "backtest.json").read_text("utf-8")))
        except (OSError, ValueError):
            backtest = None
    shadow = [r for r in (backtest or []) if "shadow" in r[0]]
    misfire = [r for r in (backtest or []) if "misfire" in r[0] or "guard" in r[0]]
    return {"total": count(total), "rates": rates, "rules": rules,
            "reasons": reasons.most_common(20), "version": rt.settings.decision.version,
            "shadow": shadow[:60], "misfire": misfire[:60], "has_backtest": backtest is not None}


def _flatten(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, list) and doc and len(doc) <= 50:
        for i, v in enumerate(doc):
            out += _flatten(v, f"{prefix}[{i}]")
    else:
        out.append((prefix, json.dumps(doc, ensure_ascii=False) if not isinstance(doc, str)
                    else doc))
    return out
