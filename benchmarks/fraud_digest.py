"""Blocked-fraud digest: fraud incidents per simulated day, before and after, same run.

For every case (scenario, seed) the simulator's events are analysed twice in
the same process, through the whole pipeline (monitor, incident book,
diagnosis, measurement):

* **before**: ``DigestPolicy(enabled=False)``: every level-4 risk-decline
  notice opens an incident (the behaviour before issue 15 item 4);
* **digest**: the default: such notices go to the hourly digest and open an
  incident only when the monitor pages or the attack-size test fires.

Reported per case and run: incidents, incidents from risk-decline waves
(``fraud_attack`` or otherwise), paging incidents, seconds of analysis; per
fault the drill scorecard's detection, delay and assigned incidents; and
whether every incident not from a risk-decline wave is the same in both runs
(ids aside: the sequence numbers shift when notices stop taking them).

Cases: ``dev`` were looked at while building the rule (demo-day seed 7, the two
fraud scenarios with their own seeds); ``new`` are seeds and attack shapes
never run before the rule was fixed.

Run: ``.venv/bin/python benchmarks/fraud_digest.py --json benchmarks/results-fraud_digest.json``
(``--only NAME`` to run a subset; simulations are cached in
``benchmarks/data/fraud_digest/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.drill.score import score
from tapshield.events.read import EventReader
from tapshield.incident import Incident
from tapshield.pipeline import PipelineConfig, analyze_frames
from tapshield.respond.digest import DigestPolicy
from tapshield.respond.incidents import IncidentPolicy
from tapshield.simulate import Scenario, World, load_scenario, read_truth, simulate
from tapshield.simulate.faults import change_rows, changes_frame

DATA = Path(__file__).resolve().parent / "data" / "fraud_digest"


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    seed: int
    split: str


def cases() -> list[Case]:
    demo = load_scenario("demo-day")
    card = load_scenario("fraud-card-testing")
    farm = load_scenario("fraud-device-farm")
    out = [
        Case(demo, 7, "dev"), Case(card, 42, "dev"), Case(farm, 41, "dev"),
        Case(demo, 1101, "new"), Case(demo, 1102, "new"),
        Case(card, 1103, "new"), Case(farm, 1104, "new"),
        Case(load_scenario("risk-rule-misfire"), 1105, "new"),
        Case(load_scenario("nfc-regional-outage"), 1106, "new"),
        Case(demo, 1201, "new"), Case(demo, 1202, "new"),  # first run with the breadth term
    ]
    out.append(Case(card.with_changes(
        name="new-ato-attack", start="2026-11-21T11:00:00+08:00", duration="8h",
        faults=[{"id": "ato-js", "kind": "fraud_attack", "pattern": "account_takeover",
                 "region": "CN-JS", "start": "+5h", "duration": "30m",
                 "taps_per_minute": 20, "block_rate": 0.9}]), 1107, "new"))
    out.append(Case(card.with_changes(
        name="new-card-test-small", start="2026-11-22T08:00:00+08:00", duration="8h",
        faults=[{"id": "ct-small", "kind": "fraud_attack", "pattern": "card_testing",
                 "start": "+4h30m", "duration": "45m", "taps_per_minute": 12,
                 "block_rate": 0.9}]), 1108, "new"))
    return out


def _load(case: Case) -> tuple[list[pl.DataFrame], pl.DataFrame, Path]:
    sc = case.scenario
    out = DATA / f"{sc.name}-{case.seed}"
    if not (out / "truth.json").exists():
        print(f"simulating {sc.name} seed {case.seed} ...", file=sys.stderr)
        simulate(sc, out, seed=case.seed, labels=False)
    world = World.from_scenario(sc, seed=case.seed)
    changes = changes_frame(change_rows(sc, world.traffic, world.faults))
    frames = list(EventReader(out / "events.parquet", chunk_rows=500_000))
    return frames, changes, out / "truth.json"


def _key(i: Incident) -> tuple[Any, ...]:
    return (i.start, i.detected_at, i.end, i.level, json.dumps(i.scope, sort_keys=True),
            i.cause, i.failed_attempts, i.failed_payments, i.lost_fen)


def _from_risk_wave(i: Incident) -> bool:
    return i.extra.get("signal") == "risk_decline"


def run_case(case: Case, digest_only: bool = False) -> dict[str, Any]:
    frames, changes, truth_path = _load(case)
    truth = read_truth(truth_path)
    res: dict[str, Any] = {"scenario": case.scenario.name, "seed": case.seed,
                           "split": case.split, "events": sum(f.height for f in frames),
                           "hours": case.scenario.duration.total_seconds() / 3600}
    keys: dict[str, set[tuple[Any, ...]]] = {}
    runs = (("digest", True),) if digest_only else (("before", False), ("digest", True))
    for name, enabled in runs:
        cfg = PipelineConfig(incidents=IncidentPolicy(digest=DigestPolicy(enabled=enabled)))
        t0 = time.perf_counter()
        result = analyze_frames(iter(frames), changes=changes, config=cfg)
        secs = time.perf_counter() - t0
        card = score(result.incidents, truth, alerts=result.alerts)
        incs = result.incidents
        keys[name] = {_key(i) for i in incs if not _from_risk_wave(i)}
        res[name] = {
            "incidents": len(incs),
            "fraud_incidents": sum(1 for i in incs if i.cause == "fraud_attack"),
            "risk_wave_incidents": sum(1 for i in incs if _from_risk_wave(i)),
            "paging_incidents": card.paging_incidents,
            "seconds": round(secs, 2),
            "digest": result.summary.get("fraud_digest"),
            "faults": [{"fault": f.fault_id, "cause": f.cause, "detected": f.detected,
                        "delay_s": f.delay_s, "incidents": len(f.incident_ids),
                        "cause_right": f.cause_right, "scope_f1": f.scope_f1}
                       for f in card.faults],
            "false_pages": len(card.false_pages),
            "risk_wave_incidents_detail": [
                {"id": i.id, "cause": i.cause, "level": i.level,
                 "detected_at": str(i.detected_at), "scope": i.scope,
                 **(i.extra.get("digest") or {})}
                for i in incs if _from_risk_wave(i)],
        }
    if not digest_only:
        res["other_incidents_unchanged"] = keys["before"] == keys["digest"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--digest-only", action="store_true",
                    help="skip the 'before' analysis (its figures do not depend on the digest)")
    args = ap.parse_args()
    rows = []
    for case in cases():
        label = f"{case.scenario.name}-{case.seed}"
        if args.only and not any(o in label for o in args.only):
            continue
        r = run_case(case, args.digest_only)
        rows.append(r)
        if args.digest_only:
            print(label, json.dumps(r["digest"], default=str), flush=True)
            continue
        b, d = r["before"], r["digest"]
        per_day = 24 / r["hours"]
        def faults(run: dict[str, Any]) -> list[tuple[Any, ...]]:
            return [(f["fault"], f["detected"], f["delay_s"], f["incidents"])
                    for f in run["faults"]]

        print(f"{label:32s} {r['split']:4s} fraud incidents/day"
              f" {b['fraud_incidents'] * per_day:6.1f} -> {d['fraud_incidents'] * per_day:5.1f}"
              f"  risk-wave incidents {b['risk_wave_incidents']} -> {d['risk_wave_incidents']}"
              f"  s {b['seconds']} -> {d['seconds']}  faults {faults(b)} -> {faults(d)}"
              f"  others same {r['other_incidents_unchanged']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
