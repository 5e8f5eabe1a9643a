"""Diagnosis quality on the simulator's scenario library: cause, scope, calibration, speed.

For every paging fault of every scenario (and extra seeds of each), the
simulator's files are read back through the public contracts and
``diagnose()`` is called the way the pipeline calls it: events from 30 minutes
before the fault's true start to ``delay`` minutes after it, the changes
file, the monitor's signal, and nothing about where it fired (``{}``), so the
scope comes from localisation alone.

Measured in the same run, on the same requests:

* cause accuracy (per fault kind and overall), ``unknown`` rate, confident
  mistakes; calibration of the confidence (Brier score, reliability);
* scope F1 (exact-match combinations against the truth, summed over faults);
* baselines: the runbook rule "technical -> interface, risk declines -> risk
  control" for the cause; Adtributor on the same event cube, and "the whole
  flow", for the scope;
* time per diagnosis.

    .venv/bin/python benchmarks/diagnose_scenarios.py                  # library seeds
    .venv/bin/python benchmarks/diagnose_scenarios.py --seeds 4 --delays 3,10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.diagnose import DiagnosisRequest, diagnose
from tapshield.diagnose.baselines import adtributor
from tapshield.diagnose.diagnosis import PIPELINE_CONFIG, SIGNATURE_OF_SIGNAL
from tapshield.diagnose.events import bucketed, event_cube, screen_dims, signature_expr
from tapshield.diagnose.localizer import LocalizeConfig
from tapshield.diagnose.score import Tally
from tapshield.events.changes import read_changes
from tapshield.events.read import read_events
from tapshield.events.schema import DIMENSIONS
from tapshield.simulate import scenario_names, simulate
from tapshield.timeutil import parse_rfc3339

BASELINE = timedelta(minutes=30)
RUNBOOK = {"technical": "interface", "latency": "network", "traffic_drop": "interface",
           "risk_decline": "risk_control", "decline": "risk_control"}


def load(name: str, seed: int | None,
         cache: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    out = cache / f"{name}-{seed if seed is not None else 'default'}"
    if not (out / "truth.json").exists():
        simulate(name, out, seed=seed, labels=False)
    events = read_events(out / "events.parquet")
    changes = read_changes(out / "changes.csv").valid
    truth = json.loads((out / "truth.json").read_text())
    return events, changes, truth


def adtributor_scope(request: DiagnosisRequest) -> list[dict[str, str]]:
    sig = SIGNATURE_OF_SIGNAL.get(request.signal, "technical")
    if sig not in ("technical", "risk_decline", "decline"):
        sig = "technical"
    frame, _ = bucketed(request.events, request.start, request.now, request.baseline_start)
    frame = frame.with_columns(signature_expr(sig).fill_null(False).alias("_f"))
    dims = screen_dims(frame, "_f", list(DIMENSIONS)) or ["channel"]
    return adtributor(event_cube(frame, "_f", dims))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1, help="seeds per scenario (1 = its own)")
    ap.add_argument("--delays", default="5", help="minutes after the true start, comma list")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tapshield-diagnose-bench"))
    ap.add_argument("--scenarios", default="")
    ap.add_argument("--json", type=Path)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--slice-dispersion", default=LocalizeConfig().slice_dispersion,
                    choices=("phi", "drift", "off"),
                    help="localiser's slice model (off = the method before 2026-12-07)")
    ap.add_argument("--materiality", type=float, default=PIPELINE_CONFIG.materiality,
                    help="localiser's materiality (the pipeline's by default)")
    args = ap.parse_args()
    config = LocalizeConfig(slice_dispersion=args.slice_dispersion,
                            materiality=args.materiality)
    names = args.scenarios.split(",") if args.scenarios else list(scenario_names())
    delays = [int(d) for d in args.delays.split(",")]
    rows: list[dict[str, Any]] = []
    for name in names:
        for k in range(args.seeds):
            seed = None if k == 0 else 1000 + k
            events, changes, truth = load(name, seed, args.cache)
            ts = events.get_column("ts")
            for fault in truth["faults"]:
                if fault["decoy"] or not fault["must_page"]:
                    continue
                start = parse_rfc3339(fault["start"])
                for delay in delays:
                    now = min(start + timedelta(minutes=delay), parse_rfc3339(fault["end"]))
                    window = events.filter((ts >= start - BASELINE) & (ts <= now))
                    req = DiagnosisRequest(
                        events=window, changes=changes, baseline_start=start - BASELINE,
                        start=start, now=now, fired_slice={},
                        signal=fault["signature"]["signal"],
                    )
                    t0 = time.perf_counter()
                    d = diagnose(req, config)
                    ms = (time.perf_counter() - t0) * 1000
                    t1 = time.perf_counter()
                    ad = adtributor_scope(req)
                    ad_ms = (time.perf_counter() - t1) * 1000
                    rows.append({
                        "scenario": name, "seed": seed, "fault": fault["id"], "delay": delay,
                        "truth_cause": fault["cause"], "cause": d.cause,
                        "confidence": d.confidence, "truth_scope": fault["scope"],
                        "scope": d.scope, "adtributor_scope": ad, "failure": d.failure,
                        "truth_failure": fault["signature"]["failure"],
                        "runbook": RUNBOOK.get(fault["signature"]["signal"], "unknown"),
                        "ms": ms, "adtributor_ms": ad_ms, "events": window.height,
                        "evidence": d.evidence,
                    })
                    r = rows[-1]
                    ok = "ok " if r["cause"] == r["truth_cause"] else "XX "
                    print(f"{ok}{name:22s} {seed!s:5s} {fault['id']:14s} +{delay}m "
                          f"{d.cause:12s} {d.confidence:.2f} (truth {fault['cause']}) "
                          f"scope {d.scope} truth {fault['scope']}  {ms:.0f} ms",
                          flush=True)
                    if args.verbose and r["cause"] != r["truth_cause"]:
                        for line in d.evidence:
                            print("      ", line)
    report = summarise(rows)
    report["per_delay"] = {
        f"+{d} min": {k: v for k, v in summarise([r for r in rows if r["delay"] == d]).items()
                      if k in ("incidents", "cause_accuracy", "unknown", "wrong_named",
                               "scope_f1", "adtributor_scope_f1", "runbook_cause_accuracy")}
        for d in delays
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": report, "rows": rows}, indent=2,
                                        default=str) + "\n")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    right = sum(r["cause"] == r["truth_cause"] for r in rows)
    unknown = sum(r["cause"] == "unknown" for r in rows)
    wrong = n - right - unknown
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        per_kind[r["truth_cause"]][0] += r["cause"] == r["truth_cause"]
        per_kind[r["truth_cause"]][1] += 1
    runbook = sum(r["runbook"] == r["truth_cause"] for r in rows)
    scope, ad, everything = Tally(), Tally(), Tally()
    for r in rows:
        scope.add(r["scope"], r["truth_scope"])
        ad.add(r["adtributor_scope"], r["truth_scope"])
        everything.add([], r["truth_scope"])
    named = [r for r in rows if r["cause"] != "unknown"]
    conf = np.array([r["confidence"] for r in named]) if named else np.zeros(0)
    hit = np.array([r["cause"] == r["truth_cause"] for r in named], dtype=float)
    bins = []
    for lo, hi in ((0.5, 0.7), (0.7, 0.9), (0.9, 1.01)):
        m = (conf >= lo) & (conf < hi)
        if m.any():
            bins.append({"confidence": f"{lo:.1f}-{min(hi, 1):.1f}", "n": int(m.sum()),
                         "mean_confidence": round(float(conf[m].mean()), 3),
                         "accuracy": round(float(hit[m].mean()), 3)})
    ms = np.array([r["ms"] for r in rows])
    return {
        "incidents": n,
        "cause_accuracy": round(right / n, 4) if n else 0.0,
        "unknown": unknown,
        "wrong_named": wrong,
        "per_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(per_kind.items())},
        "runbook_cause_accuracy": round(runbook / n, 4) if n else 0.0,
        "scope_f1": round(scope.f1, 4),
        "adtributor_scope_f1": round(ad.f1, 4),
        "whole_flow_scope_f1": round(everything.f1, 4),
        "brier": round(float(((conf - hit) ** 2).mean()), 4) if named else None,
        "reliability": bins,
        "ms_median": round(float(np.median(ms)), 1) if n else None,
        "ms_p95": round(float(np.percentile(ms, 95)), 1) if n else None,
        "ms_max": round(float(ms.max()), 1) if n else None,
        "adtributor_ms_median": round(float(np.median([r["adtributor_ms"] for r in rows])), 1)
        if n else None,
        "events_median": int(np.median([r["events"] for r in rows])) if n else 0,
        "failure_right": sum(r["failure"] == r["truth_failure"] for r in rows),
        "causes_named": dict(Counter(r["cause"] for r in rows)),
    }


if __name__ == "__main__":
    sys.exit(main())
