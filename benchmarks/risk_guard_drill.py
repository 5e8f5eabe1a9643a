"""The misfire guard in a drill: the simulator's risk-control scenarios and decoys.

Each scenario is generated with ``tapshield.simulate`` and fed to
``tapshield.risk.guard.MisfireGuard`` in one-minute batches with its changes
file, as a live stream would. Graded against the scenario's faults:

* a ``risk_control`` fault is **caught** if an alert names its
  ``rule_version`` and **localised** if the alert's segment is the fault's;
  delay = alert time - fault start (event time); **spared** = risk declines in
  the fault's segment after the alert until the fault's end (what an automatic
  rollback at the alert would have avoided);
* every other alert is a **false flag**.

Decoys: fraud attacks (``fraud-card-testing``, ``fraud-device-farm``) with a
harmless rule change logged at the attack's start (the attack's declines must
not be blamed on it), and ``gateway-canary`` / ``app-release-rollout``
(technical failures and deploys, no rule change).
Baseline in the same run: a naive guard (``min_excess=1, min_ratio=1,
min_lift=0, alpha=0.05``, no local-event or traffic-surge check) to show what the effect
floor and the attack checks buy.

    python benchmarks/risk_guard_drill.py [--scenarios a,b,...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from tapshield.risk.guard import GuardConfig, MisfireGuard
from tapshield.simulate import changes_of, generate, load_scenario
from tapshield.simulate.model import ChangeRow, Scenario
from tapshield.timeutil import to_rfc3339

ROOT = Path(__file__).resolve().parents[1]
MISFIRES = ["risk-rule-misfire", "risk-model-region", "release-risk-mix"]
DECOYS = ["fraud-card-testing", "fraud-device-farm", "gateway-canary", "app-release-rollout"]


def with_harmless_change(sc: Scenario) -> Scenario:
    attacks = [f for f in sc.faults if f.kind == "fraud_attack"]
    if not attacks:
        return sc
    ts = to_rfc3339(sc.at(attacks[0].start))
    row = ChangeRow.model_validate({"ts": ts, "kind": "rule_change", "component": "risk_rules",
                                    "version": "rules-harmless-decoy"})
    return sc.model_copy(update={"changes": [*sc.changes, row]})


def drill(name: str, configs: dict[str, GuardConfig]) -> dict[str, object]:
    sc = with_harmless_change(load_scenario(name))
    t0 = time.perf_counter()
    events = pl.concat(list(generate(sc)))
    gen_s = time.perf_counter() - t0
    changes = changes_of(sc)
    guards = {k: MisfireGuard(changes, config=c) for k, c in configs.items()}
    minute = events["ts"].dt.truncate("1m")
    t0 = time.perf_counter()
    for _, b in events.with_columns(minute.alias("_m")).group_by("_m", maintain_order=True):
        batch = b.drop("_m")
        for g in guards.values():
            g.observe(batch)
    guard_s = time.perf_counter() - t0
    faults = [f for f in sc.faults if f.kind == "risk_control"]
    out: dict[str, object] = {"scenario": name, "events": events.height,
                              "generate_s": round(gen_s, 1), "guard_s": round(guard_s, 1)}
    for label, g in guards.items():
        caught = []
        matched: set[int] = set()
        for f in faults:
            version = f.rule_version
            start = sc.at(f.start)
            end = start + f.duration
            hits = [i for i, a in enumerate(g.alerts) if a.version == version]
            if not hits:
                caught.append({"fault": f.id, "caught": False})
                continue
            a = g.alerts[hits[0]]
            matched.add(hits[0])
            (dim, value), = f.segment.items()
            spared = events.filter((pl.col(dim) == value) & (pl.col("ts") > a.detected_at)
                                   & (pl.col("ts") < end)
                                   & (pl.col("risk_decision") == "decline")).height
            caught.append({"fault": f.id, "caught": True, "version": a.version,
                           "segment": a.segment, "segment_right": a.segment == f.segment,
                           "delay_min": round((a.detected_at - start).total_seconds() / 60, 2),
                           "declines_spared_by_rollback": spared,
                           "summary": a.summary()})
        false = [g.alerts[i].summary() for i in range(len(g.alerts)) if i not in matched]
        out[label] = {"faults": caught, "false_flags": false}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default=",".join(MISFIRES + DECOYS))
    ap.add_argument("--out", type=Path,
                    default=ROOT / "benchmarks" / "results-risk_guard_drill.json")
    args = ap.parse_args()
    base = GuardConfig()
    naive = replace(base, min_excess=1, min_ratio=1.0, min_lift=0.0, alpha=0.05,
                    max_concentration=1.01, max_surge=1e9)
    load0 = os.getloadavg()
    rows = [drill(s, {"guard": base, "naive": naive}) for s in args.scenarios.split(",")]
    doc = {"measured_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
           "loadavg_start": load0, "loadavg_end": os.getloadavg(), "results": rows}
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"{'scenario':22} {'caught':>6} {'segment':>7} {'delay':>6} {'spared':>6} "
          f"{'false':>5} | {'naive false':>11}")
    for r in rows:
        g = r["guard"]
        n = r["naive"]
        assert isinstance(g, dict) and isinstance(n, dict)
        fs = g["faults"]
        c = sum(1 for f in fs if f["caught"])
        seg = sum(1 for f in fs if f.get("segment_right"))
        delay = max((f["delay_min"] for f in fs if f["caught"]), default=float("nan"))
        spared = sum(f.get("declines_spared_by_rollback", 0) for f in fs)
        print(f"{r['scenario']:22} {c:>3}/{len(fs):<2} {seg:>7} {delay:6.1f} {spared:6} "
              f"{len(g['false_flags']):5} | {len(n['false_flags']):11}")


if __name__ == "__main__":
    main()
