"""One page per fault: pages per fault, pages on untouched slices, detection and delay.

For every scenario (the library's, and held-out shapes built here that no rule
was tuned on) and every seed (the scenario's own and ``--new-seeds`` others),
the simulator's events are replayed through the Monitor twice in the same run:

* **now**: ``MonitorConfig(one_page=False)``, the behaviour before issue 15
  (every rule of "one page per fault" off);
* **one page**: the default configuration.

A *page* is an alert that notified a person when it fired or escalated (one
alert pages once however often it is reminded). A page is assigned to the
must-page fault it matches (time: the fault's ``[start - 5 min, end + 5 min]``
holds the page; scope: compatible, as :func:`tapshield.drill.score.compatible`),
preferring a fault whose scope the page's slice lies in. Per fault: *pages*
(the number assigned), *detected* (at least one), *delay* (first page minus the
true start). A page on an *untouched slice* matches no must-page fault (the drill
scorer's rule for a false alert page: no fault at that time whose scope can
share events with the page's slice). Reported apart, *beside the scope*: a
page matched to a fault whose slice neither lies inside nor contains the
fault's scope (``os=android`` for a ``carrier=china_mobile`` fault: the
carrier's Android customers are touched, but the slice is not what broke).

Run: ``.venv/bin/python benchmarks/one_page_per_fault.py --new-seeds 1 --json out.json``
(``--only NAME`` to run some scenarios, e.g. in parallel processes, then
``--combine a.json b.json`` to aggregate them; the simulations are cached in
``benchmarks/data/opf/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.drill.score import compatible
from tapshield.events.read import EventReader
from tapshield.monitor import AlertEvent, Monitor, MonitorConfig
from tapshield.simulate import Scenario, World, load_scenario, read_truth, scenario_names, simulate
from tapshield.simulate.faults import change_rows, changes_frame
from tapshield.simulate.truth import FaultTruth

DATA = Path(__file__).resolve().parent / "data" / "opf"
SLACK = timedelta(minutes=5)
LIBRARY_SKIP = ("demo-day",)
"""A 24-hour day; its shapes are in the others (kept out for the run time)."""


def held_out() -> list[Scenario]:
    """Shapes no rule was tuned on: other channels, carriers, rhythms and sizes."""
    out: list[Scenario] = []
    fs = load_scenario("flash-sale-surge")
    assert fs.festival is not None
    out.append(fs.with_changes(
        name="ho-flash-sale-3x", seed=171, start="2026-11-20T10:00:00+08:00", duration="8h",
        festival={"start": "2026-11-20T13:00:00+08:00", "duration": "90m", "multiplier": 3,
                  "ramp": "4m", "name": "flash sale"},
        faults=[]))
    out.append(fs.with_changes(
        name="ho-surge-with-wallet-fault", seed=172, start="2026-11-19T16:00:00+08:00",
        duration="8h",
        festival={"start": "2026-11-19T20:00:00+08:00", "duration": "3h", "multiplier": 5,
                  "ramp": "1m", "name": "evening sale"},
        faults=[{"id": "wallet-sd", "kind": "interface", "channel": "wallet",
                 "regions": ["CN-SD", "CN-HA"], "start": "2026-11-19T21:20:00+08:00",
                 "duration": "30m", "failure_rate": 0.6}]))
    out.append(load_scenario("interface-flapping-returns").with_changes(
        name="ho-qr-flaps-4x", seed=173,
        faults=[{"id": "qr-zj-flap", "kind": "interface", "channel": "qr",
                 "regions": ["CN-ZJ"], "start": "+3h30m", "duration": "66m",
                 "failure_rate": 0.8, "flapping": {"period": "16m", "duty": 0.3}}]))
    out.append(load_scenario("carrier-national").with_changes(
        name="ho-carrier-unicom", seed=174,
        faults=[{"id": "cucc-national", "kind": "network", "carrier": "china_unicom",
                 "start": "+4h", "duration": "50m", "ramp_up": "2m",
                 "timeout_rate": 0.4, "latency_factor": 4}]))
    out.append(load_scenario("wallet-outage").with_changes(
        name="ho-nfc-outage", seed=175,
        faults=[{"id": "nfc-down", "kind": "interface", "channel": "nfc",
                 "start": "+3h", "duration": "35m", "failure_rate": 0.8,
                 "timeout_share": 0.5}]))
    return out


def held_out_2() -> list[Scenario]:
    """Shapes added after the rules were changed on the first held-out set's flapping
    QR case (so that set is development data from then on): kept back until the end."""
    out: list[Scenario] = []
    base = load_scenario("interface-flapping-returns")
    out.append(base.with_changes(
        name="ho2-wallet-flaps-sc", seed=271, start="2026-11-17T09:00:00+08:00",
        faults=[{"id": "wallet-sc-flap", "kind": "interface", "channel": "wallet",
                 "regions": ["CN-SC"], "start": "+3h", "duration": "80m",
                 "failure_rate": 0.75, "flapping": {"period": "20m", "duty": 0.3}}]))
    out.append(base.with_changes(
        name="ho2-flash-sale-6x", seed=272, start="2026-11-16T08:00:00+08:00",
        festival={"start": "2026-11-16T12:00:00+08:00", "duration": "60m",
                  "multiplier": 6, "ramp": "1m", "name": "lunch flash sale"},
        faults=[]))
    out.append(base.with_changes(
        name="ho2-telecom-hubei", seed=273,
        faults=[{"id": "ctcc-hb", "kind": "network", "region": "CN-HB",
                 "carrier": "china_telecom", "start": "+4h", "duration": "45m",
                 "ramp_up": "4m", "timeout_rate": 0.5, "latency_factor": 4}]))
    out.append(base.with_changes(
        name="ho2-gateway-bad-build", seed=274,
        faults=[{"id": "gw-bad", "kind": "release", "target": "gateway",
                 "version": "gw-2026.12.1", "share": 0.3, "failure_rate": 0.4,
                 "start": "+3h30m", "duration": "40m"}]))
    return out


@dataclass
class Case:
    name: str
    seed: int
    held_out: bool
    frames: list[pl.DataFrame]
    changes: pl.DataFrame
    faults: list[FaultTruth]


def load_case(sc: Scenario, seed: int, held: bool) -> Case:
    out = DATA / f"{sc.name}-{seed}"
    if not (out / "truth.json").exists():
        print(f"simulating {sc.name} seed {seed} ...", file=sys.stderr)
        simulate(sc, out, seed=seed, labels=False)
    truth = read_truth(out / "truth.json")
    world = World.from_scenario(sc, seed=seed)
    changes = changes_frame(change_rows(sc, world.traffic, world.faults))
    frames = list(EventReader(out / "events.parquet", chunk_rows=250_000))
    return Case(sc.name, seed, held, frames, changes, list(truth.faults))


@dataclass
class Page:
    alert_id: str
    ts: Any
    started_at: Any
    slice: dict[str, str]
    signal: str
    level: int


def pages_of(events: list[AlertEvent]) -> list[Page]:
    """One page per alert that notified on firing or escalating (its first such change)."""
    seen: dict[str, Page] = {}
    for e in events:
        if e.notify and e.state in ("firing", "escalated") and e.alert_id not in seen:
            seen[e.alert_id] = Page(e.alert_id, e.ts, e.started_at, dict(e.slice), e.signal,
                                    e.level)
    return list(seen.values())


def _inside(sl: dict[str, str], combo: dict[str, str]) -> bool:
    return all(sl.get(k) == v for k, v in combo.items())


def touches(p: Page, f: FaultTruth) -> bool:
    """Does the page's slice lie inside the fault's scope, or contain it?"""
    scope = [dict(c) for c in f.scope] or [{}]
    return any(_inside(p.slice, c) or _inside(c, p.slice) for c in scope)


def matches(p: Page, f: FaultTruth) -> bool:
    in_time = f.start - SLACK <= p.ts <= f.end + SLACK
    return in_time and compatible([p.slice] if p.slice else [], [dict(c) for c in f.scope])


@dataclass
class Result:
    faults: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)
    pages_per_fault: list[int] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    beside: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0


def grade(case: Case, events: list[AlertEvent], label: str) -> dict[str, Any]:
    """Per must-page fault: pages and delay; the pages on untouched slices."""
    must = [f for f in case.faults if f.must_page]
    pages = pages_of(events)
    per: dict[str, list[Page]] = {f.id: [] for f in must}
    untouched: list[str] = []
    beside: list[str] = []
    for p in pages:
        cands = [f for f in must if matches(p, f)]
        touched = [f for f in cands if touches(p, f)]
        best = (touched or cands or [None])[0]
        what = (f"{case.name}/{case.seed} {label} {p.signal} {p.slice or '{}'} "
                f"L{p.level} at {p.ts:%H:%M}")
        if best is None:
            untouched.append(what)
        elif not touched:
            beside.append(what)
        if best is not None:
            per[best.id].append(p)
    faults = {}
    for f in must:
        got = sorted(per[f.id], key=lambda p: p.ts)
        faults[f.id] = {"pages": len(got),
                        "delay_s": round((got[0].ts - f.start).total_seconds(), 1)
                        if got else None}
    return {"faults": faults, "pages": len(pages), "untouched": untouched, "beside": beside}


def add(res: Result, graded: dict[str, Any]) -> None:
    res.pages += graded["pages"]
    res.untouched.extend(graded["untouched"])
    res.beside.extend(graded.get("beside", []))
    for f in graded["faults"].values():
        res.faults += 1
        res.pages_per_fault.append(f["pages"])
        if f["pages"]:
            res.detected += 1
            res.delays.append(f["delay_s"])


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups = ("library", "library_new_seeds", "held_out", "held_out_2")
    labels = ("now", "one_page")
    results = {g: {k: Result() for k in labels} for g in groups}
    for row in rows:
        for k in labels:
            add(results[row["group"]][k], row[k])
            results[row["group"]][k].seconds += row[k].get("cpu_s", 0.0)
    return {g: {k: summary(v) for k, v in results[g].items()} for g in groups}


def replay(case: Case, cfg: MonitorConfig) -> tuple[list[AlertEvent], float]:
    t0 = time.process_time()
    m = Monitor(cfg, changes=case.changes)
    out: list[AlertEvent] = []
    for f in case.frames:
        out.extend(m.process(f))
    out.extend(m.close())
    return out, time.process_time() - t0


def summary(r: Result) -> dict[str, Any]:
    return {
        "must_page_faults": r.faults,
        "detected": r.detected,
        "detection_rate": round(r.detected / r.faults, 4) if r.faults else None,
        "median_delay_s": round(statistics.median(r.delays), 1) if r.delays else None,
        "pages": r.pages,
        "max_pages_per_fault": max(r.pages_per_fault, default=0),
        "faults_paged_more_than_once": sum(1 for n in r.pages_per_fault if n > 1),
        "pages_on_untouched_slices": len(r.untouched),
        "untouched": r.untouched,
        "pages_beside_the_scope": len(r.beside),
        "beside": r.beside,
        "cpu_s": round(r.seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-seeds", type=int, default=1,
                    help="seeds per scenario beyond its own (seed + 1000 * k)")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--no-library", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--combine", nargs="*", default=None,
                    help="aggregate the cases of earlier --json outputs (parallel runs)")
    args = ap.parse_args()
    scenarios: list[tuple[Scenario, bool]] = []
    if not args.no_library:
        scenarios += [(load_scenario(n), False) for n in scenario_names()
                      if n not in LIBRARY_SKIP]
    scenarios += [(s, True) for s in held_out()]
    scenarios += [(s, True) for s in held_out_2()]
    if args.only:
        scenarios = [(s, h) for s, h in scenarios if s.name in args.only]
    configs = {"now": MonitorConfig(one_page=False), "one_page": MonitorConfig()}
    details: list[dict[str, Any]] = []
    for path in args.combine or ():
        details.extend(json.loads(Path(path).read_text())["cases"])
    for sc, held in scenarios if not args.combine else ():
        for k in range(args.new_seeds + 1):
            seed = sc.seed + 1000 * k
            case = load_case(sc, seed, held)
            group = ("held_out_2" if sc.name.startswith("ho2-") else "held_out") if held else (
                "library" if k == 0 else "library_new_seeds")
            row: dict[str, Any] = {"scenario": sc.name, "seed": seed, "group": group}
            for label, cfg in configs.items():
                events, cpu = replay(case, cfg)
                row[label] = grade(case, events, label)
                row[label]["cpu_s"] = round(cpu, 2)
            details.append(row)
            print(json.dumps(row, default=str), file=sys.stderr)
    out: dict[str, Any] = aggregate(details)
    out["cases"] = details
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
