"""Detection delay, false pages and notifications per wave on the simulator's scenario library.

For every scenario (generated once into ``benchmarks/data/scenarios/<name>``)
the events are replayed through :class:`tapshield.monitor.Monitor` in
event-time order, in micro-batches, with the scenario's changes file. Then,
per fault of ``truth.json``:

* **delay** = the first alert change (firing or escalation) at or after the
  fault's true start, among the alerts credited to the fault (compatible
  slice, time overlap and signal family; each alert to one fault), minus that
  start; **page delay** the same for the first notifying change (levels 1-3);
* **oracle** = the delay of a CUSUM that knows the fault's scope and its true
  failure rate before and during the fault (``truth.rates``): a per-event
  Bernoulli CUSUM on the scope's events only, with log-likelihood ratios of
  those true rates and the threshold giving one false alarm per week on that
  scope's traffic (``h = ln(scope events per week)``, the same Lorden bound
  the monitor uses). Page's CUSUM is the optimal sequential test for a known
  change (Moustakides 1986), so this is the bound;
* **notifications** = notifying alert events (firing, escalations, reminders,
  resolution) of the alerts matched to the fault.

False pages are notifying alerts that match no must-page fault (waves starting
after the scenario's end are not scored: scenario files generated before the
simulator stopped at the scenario's end finish with a trickle of retries; the
monitor itself no longer judges a traffic drop in a file's last partial
bucket); the
``quiet-week`` scenario (7 days, festival spike and decoys, no real fault)
gives false pages per simulated week.

Run: ``.venv/bin/python benchmarks/monitor_detection.py [--scenarios a,b] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.drill.score import alert_matches
from tapshield.events.changes import read_changes
from tapshield.events.codes import risk_decline_expr, technical_expr
from tapshield.monitor import AlertEvent, Monitor, MonitorConfig
from tapshield.simulate import read_truth, scenario_names, simulate
from tapshield.simulate.truth import FaultTruth

DATA = Path(__file__).resolve().parent / "data" / "scenarios"
WEEK_S = 7 * 24 * 3600


@dataclass
class FaultResult:
    scenario: str
    fault: str
    cause: str
    must_page: bool
    delay_s: float | None = None
    paged: bool = False
    page_delay_s: float | None = None
    oracle_s: float | None = None
    notifications: int = 0
    alerts: list[str] = field(default_factory=list)
    level: int | None = None


def ensure(name: str) -> Path:
    out = DATA / name
    if not (out / "truth.json").exists():
        print(f"  generating {name} ...", file=sys.stderr)
        simulate(name, out, labels=False)
    return out


def replay(path: Path, batch_rows: int) -> tuple[list[AlertEvent], Monitor, pl.DataFrame, float]:
    events = pl.read_parquet(path / "events.parquet")
    from tapshield.events.validate import validate_frame

    res = validate_frame(events)
    frame = res.valid.sort("ts", maintain_order=True)
    changes_path = path / "changes.csv"
    changes = read_changes(changes_path).valid if changes_path.exists() else None
    monitor = Monitor(MonitorConfig(), changes=changes)
    out: list[AlertEvent] = []
    t0 = time.perf_counter()
    for i in range(0, frame.height, batch_rows):
        out.extend(monitor.process(frame.slice(i, batch_rows)))
    out.extend(monitor.close())
    return out, monitor, frame, time.perf_counter() - t0


def signature_expr(signal: str) -> pl.Expr:
    if signal == "risk_decline":
        return risk_decline_expr()
    if signal == "decline":
        return (pl.col("outcome").cast(pl.String) == "declined") & ~technical_expr()
    return technical_expr()


def scope_expr(scope: list[dict[str, str]]) -> pl.Expr:
    if not scope:
        return pl.lit(True)
    out = pl.lit(False)
    for combo in scope:
        e = pl.lit(True)
        for k, v in combo.items():
            e = e & (pl.col(k) == v)
        out = out | e
    return out


def oracle_delay(frame: pl.DataFrame, f: FaultTruth, span_s: float) -> float | None:
    """Page's CUSUM with the true before/during rates, on the fault's scope only."""
    rates = f.extra.get("rates") or {}
    p0, p1 = rates.get("before"), rates.get("during")
    if not p0 or not p1 or p1 <= p0:
        return None
    signal = (f.extra.get("signature") or {}).get("signal", "technical")
    sub = frame.filter(scope_expr(f.scope)).select(
        pl.col("ts").cast(pl.Int64), signature_expr(signal).fill_null(False).alias("y"))
    per_week = sub.height / max(span_s, 1.0) * WEEK_S
    h = math.log(max(per_week, 2.0))
    start = int(f.start.timestamp() * 1e6)
    win = sub.filter(pl.col("ts") >= start - 3_600_000_000)
    ts = win["ts"].to_numpy()
    y = win["y"].to_numpy()
    a1, a0 = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    w = 0.0
    for t, yy in zip(ts, y, strict=True):  # (a benchmark baseline; not a hot path)
        w = max(0.0, w + (a1 if yy else a0))
        if w >= h:
            if t >= start:
                return (t - start) / 1e6
            w = 0.0  # a false alarm before the fault: the oracle restarts
    return None


FAMILIES = {"technical": "technical", "latency": "technical", "traffic_drop": "technical",
            "decline": "business", "risk_decline": "business"}


def _family(f: FaultTruth) -> str:
    sig = (f.extra.get("signature") or {}).get("signal", "technical")
    return FAMILIES.get(sig, "technical")


def score(name: str, alerts: list[AlertEvent], frame: pl.DataFrame) -> tuple[list[FaultResult],
                                                                             list[str]]:
    """Per-fault figures. Each alert is credited to at most one fault: the one whose
    signal family matches and whose start is closest to the alert's (as the drill
    assigns incidents). Detection is the alert's first change at or after the
    fault's start: a wave already open as a notice that escalates because of the
    fault is detected when it escalates."""
    truth = read_truth(DATA / name / "truth.json")
    span = (truth.end - truth.start).total_seconds()
    by_alert: dict[str, list[AlertEvent]] = {}
    for a in alerts:
        by_alert.setdefault(a.alert_id, []).append(a)
    owner: dict[str, str] = {}
    for aid, evs in by_alert.items():
        first = evs[0]
        cands = [f for f in truth.faults
                 if FAMILIES.get(first.signal) == _family(f)
                 and any(alert_matches(e, f) for e in evs
                         if e.state in ("firing", "suppressed", "escalated"))
                 and any(e.ts >= f.start for e in evs if e.state != "resolved")]
        if cands:
            best = min(cands, key=lambda f: abs((first.started_at - f.start).total_seconds()))
            owner[aid] = best.id
    results: list[FaultResult] = []
    must = [f for f in truth.faults if f.must_page]
    for f in truth.faults:
        r = FaultResult(name, f.id, f.cause, f.must_page)
        mine = [aid for aid, fid in owner.items() if fid == f.id]
        for aid in mine:
            evs = [e for e in by_alert[aid] if e.ts >= f.start]
            live = [e for e in evs if e.state in ("firing", "suppressed", "escalated",
                                                  "reminder")]
            if live:
                d = (live[0].ts - f.start).total_seconds()
                r.delay_s = d if r.delay_s is None else min(r.delay_s, d)
            pages = [e for e in evs if e.notify and e.state != "resolved"]
            if pages:
                r.paged = True
                d = (pages[0].ts - f.start).total_seconds()
                r.page_delay_s = d if r.page_delay_s is None else min(r.page_delay_s, d)
            r.notifications += sum(1 for e in by_alert[aid] if e.notify)
            lv = min(e.level for e in by_alert[aid])
            r.level = lv if r.level is None else min(r.level, lv)
        r.alerts = mine
        if f.must_page:
            r.oracle_s = oracle_delay(frame, f, span)
        results.append(r)
    must_ids = {f.id for f in must}
    false_pages = sorted({
        a.alert_id for a in alerts
        if a.notify and a.state in ("firing", "escalated")
        and owner.get(a.alert_id) not in must_ids
        # older scenario files hold retries of the last taps after the scenario's end:
        # the stream then dwindles like a real national silence; that tail is not scored
        and a.started_at < truth.end
    })
    return results, false_pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="", help="comma-separated names (default: all)")
    ap.add_argument("--batch-rows", type=int, default=20_000)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    names = [s for s in args.scenarios.split(",") if s] or scenario_names()
    rows: list[FaultResult] = []
    false_by: dict[str, list[str]] = {}
    weeks: dict[str, float] = {}
    for name in names:
        path = ensure(name)
        alerts, _mon, frame, secs = replay(path, args.batch_rows)
        res, false_pages = score(name, alerts, frame)
        truth = read_truth(path / "truth.json")
        weeks[name] = (truth.end - truth.start).total_seconds() / WEEK_S
        false_by[name] = false_pages
        rows.extend(res)
        print(f"{name}: {frame.height:,} events in {secs:.1f} s, {len(alerts)} alert events, "
              f"false pages {len(false_pages)}", file=sys.stderr)
        if args.verbose:
            for a in alerts:
                print(f"    {a.ts.isoformat()} {a.state:11s} L{a.level} {a.signal:12s} "
                      f"{a.slice} notify={a.notify} start={a.started_at.isoformat()} "
                      f"share={a.figures.get('share_affected')}", file=sys.stderr)
        for r in res:
            print(f"    {r.fault:24s} must_page={r.must_page!s:5s} delay={r.delay_s} "
                  f"paged={r.paged} page_delay={r.page_delay_s} oracle={r.oracle_s} "
                  f"level={r.level} notifications={r.notifications} alerts={len(r.alerts)}",
                  file=sys.stderr)
    must = [r for r in rows if r.must_page]
    pairs = [(r.delay_s, r.oracle_s) for r in must
             if r.delay_s is not None and r.oracle_s is not None]
    ratios = [max(d, 0.0) / o for d, o in pairs if o > 0]
    summary: dict[str, Any] = {
        "must_page_faults": len(must),
        "paged": sum(r.paged for r in must),
        "detected": sum(r.delay_s is not None for r in must),
        "median_delay_s": statistics.median([d for d, _ in pairs]) if pairs else None,
        "median_page_delay_s": statistics.median(
            [r.page_delay_s for r in must if r.page_delay_s is not None]) if must else None,
        "median_oracle_s": statistics.median([o for _, o in pairs]) if pairs else None,
        "median_ratio_to_oracle": statistics.median(ratios) if ratios else None,
        "ratio_of_medians": (statistics.median([d for d, _ in pairs])
                             / statistics.median([o for _, o in pairs])) if pairs else None,
        "notifications_per_wave_max": max((r.notifications for r in must if r.paged), default=0),
        "notifications_per_wave_median": statistics.median(
            [r.notifications for r in must if r.paged]) if any(r.paged for r in must) else None,
        "false_pages": {k: len(v) for k, v in false_by.items()},
        "false_pages_per_week_quiet": (len(false_by["quiet-week"]) / weeks["quiet-week"]
                                       if "quiet-week" in false_by else None),
        "decoys_paged": [r.fault for r in rows if not r.must_page and r.paged],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary,
                                         "faults": [r.__dict__ for r in rows]},
                                        indent=2, default=str))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
