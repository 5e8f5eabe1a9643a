"""Failover routing on the simulator's outage scenarios: failed payments and
double authorisations under no failover, three baselines, tapshield and the
oracle, all replayed in the same run against the same draws.

Part 1 (``--scenarios``): every library scenario with a path fault
(``interface`` or ``network``: the outages a router can route around). For
each, the taps from 30 minutes before each such fault (the routers' warm-up,
as in the drill) to its end are replayed under every policy. Router profiles
are estimated from the scenario's own events (robust to the outage hours)
and the tap budget is the app's client timeout (the customer is gone after
it). Nothing is tuned per scenario.

Part 2 (``--timeouts``): the never-charge-twice check. A day of traffic with
timeouts injected all day (network faults in several provinces and an NFC
interface fault that answers mostly with timeouts, a share of which the
issuer did authorise) replayed by tapshield, counting attempts and double
authorisations against the world's ground truth (``authorised``).

    .venv/bin/python benchmarks/route_replay.py [--scenarios] [--timeouts] [--scale 1.0]
        [--timeouts-scale 1.5] [--budget-ms MS]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tapshield.route import POLICIES, compare, config_from_history, taps_from_events
from tapshield.simulate import World, generate, load_scenario, scenario_names

WARMUP = timedelta(minutes=30)
BASELINES = ("decision_engine", "hyperswitch", "resilience4j")
PATH_FAULTS = ("interface", "network")


def outage_scenarios() -> list[str]:
    out = []
    for name in scenario_names():
        sc = load_scenario(name)
        if any(f.kind in PATH_FAULTS for f in sc.faults):
            out.append(name)
    return out


def around_path_faults(taps: pl.DataFrame, world: World) -> pl.DataFrame:
    us = pl.col("ts").dt.epoch("us")
    warm = int(WARMUP.total_seconds() * 1e6)
    spans = [(f.start_us, f.end_us) for f in world.faults if f.kind in PATH_FAULTS]
    return taps.filter(pl.any_horizontal([(us >= s - warm) & (us <= e) for s, e in spans]))


def run_scenarios(scale: float, seed: int) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for name in outage_scenarios():
        t0 = time.perf_counter()
        sc = load_scenario(name).with_changes(scale=scale)
        world = World.from_scenario(sc)
        events = pl.concat(list(generate(sc)))
        taps = around_path_faults(taps_from_events(events), world)
        cfg = config_from_history(events, budget_ms=float(world.timeout_ms))
        res = compare(taps, world, POLICIES, seed=seed, config=cfg)
        per[name] = {"taps": taps.height, **{k: v.to_dict() for k, v in res.items()},
                     "seconds": round(time.perf_counter() - t0, 1)}
        row = " ".join(f"{k}={v.failed}" for k, v in res.items())
        print(f"{name}: {taps.height:,} taps; failed: {row} ({per[name]['seconds']} s)",
              flush=True)
    totals = {p: sum(per[s][p]["failed"] for s in per) for p in POLICIES}
    doubles = {p: sum(per[s][p]["double_authorisations"] for s in per) for p in POLICIES}
    charged = {p: sum(per[s][p]["unconfirmed_charges"] for s in per) for p in POLICIES}
    attempts = {p: sum(per[s][p]["attempts"] for s in per) for p in POLICIES}
    return {"scenarios": per, "failed": totals, "double_authorisations": doubles,
            "unconfirmed_charges": charged, "attempts": attempts}


TIMEOUT_DAY: dict[str, Any] = {
    "name": "route-timeouts-all-day",
    "description": "Timeouts injected all day: degraded networks in four provinces in turn "
                   "and an NFC interface fault that mostly times out.",
    "why": "Never charge twice: every ambiguous timeout must be resolved before failover.",
    "start": "2026-11-20T00:00:00+08:00",
    "duration": "24h",
    "seed": 1234,
    "faults": [
        {"id": f"net-{r}-{k}", "kind": "network", "region": r, "start": f"+{h}h",
         "duration": "150m", "timeout_rate": 0.5, "latency_factor": 5}
        for k, (r, h) in enumerate([("CN-GD", 1), ("CN-ZJ", 4), ("CN-JS", 7), ("CN-SH", 10),
                                    ("CN-GD", 13), ("CN-SC", 16), ("CN-BJ", 19), ("CN-HB", 21)])
    ] + [
        {"id": "nfc-timeouts", "kind": "interface", "channel": "nfc", "start": "+2h",
         "duration": "20h", "failure_rate": 0.3, "timeout_share": 0.8, "share": 1.0},
    ],
}


def run_timeouts(scale: float, seed: int, budget_ms: float | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "route-timeouts-all-day.yaml"
        path.write_text(yaml.safe_dump(TIMEOUT_DAY, sort_keys=False))
        sc = load_scenario(path).with_changes(scale=scale)
    world = World.from_scenario(sc)
    events = pl.concat(list(generate(sc)))
    taps = taps_from_events(events)
    cfg = config_from_history(events, budget_ms=budget_ms or float(world.timeout_ms))
    t0 = time.perf_counter()
    res = compare(taps, world, ("tapshield", "hyperswitch"), seed=seed, config=cfg)
    out = {"taps": taps.height, "budget_ms": cfg.budget_ms,
           "seconds": round(time.perf_counter() - t0, 1),
           **{k: v.to_dict() for k, v in res.items()}}
    ts = res["tapshield"]
    print(f"timeouts day (budget {cfg.budget_ms / 1000:g} s): {taps.height:,} taps, "
          f"tapshield {ts.attempts:,} attempts, "
          f"{ts.inquiries:,} inquiries, {ts.reversals:,} reversals, "
          f"{ts.double_authorisations} double authorisations "
          f"(hyperswitch: {res['hyperswitch'].double_authorisations}, "
          f"{res['hyperswitch'].unconfirmed_charges} charged-but-failed)", flush=True)
    return out


def markdown(s: dict[str, Any]) -> str:
    lines = ["| scenario | taps | " + " | ".join(POLICIES) + " |",
             "|---|---|" + "---|" * len(POLICIES)]
    for name, r in s["scenarios"].items():
        lines.append(f"| {name} | {r['taps']:,} | "
                     + " | ".join(f"{r[p]['failed']:,}" for p in POLICIES) + " |")
    lines.append("| **total failed payments** | | "
                 + " | ".join(f"**{s['failed'][p]:,}**" for p in POLICIES) + " |")
    lines.append("| double authorisations | | "
                 + " | ".join(f"{s['double_authorisations'][p]:,}" for p in POLICIES) + " |")
    lines.append("| charged but failed | | "
                 + " | ".join(f"{s['unconfirmed_charges'][p]:,}" for p in POLICIES) + " |")
    lines.append("| attempts | | "
                 + " | ".join(f"{s['attempts'][p]:,}" for p in POLICIES) + " |")
    best = min(BASELINES, key=lambda p: s["failed"][p])
    ts, oracle = s["failed"]["tapshield"], s["failed"]["oracle"]
    lines.append("")
    lines.append(f"tapshield / best baseline ({best}): {ts / max(s['failed'][best], 1):.3f} "
                 f"(goal <= 0.25); tapshield / oracle: {ts / max(oracle, 1):.2f} (goal <= 2)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", action="store_true")
    ap.add_argument("--timeouts", action="store_true")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--timeouts-scale", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget-ms", type=float, default=None,
                    help="timeouts day: tap budget [default: the app's client timeout, 15 s]; "
                    "a budget longer than the timeout lets blind retries charge twice")
    ap.add_argument("--out", type=Path, help="write the full results as JSON here")
    args = ap.parse_args()
    if not (args.scenarios or args.timeouts):
        args.scenarios = args.timeouts = True
    result: dict[str, Any] = {}
    if args.scenarios:
        result["scenarios"] = run_scenarios(args.scale, args.seed)
        print(markdown(result["scenarios"]))
    if args.timeouts:
        result["timeouts"] = run_timeouts(args.timeouts_scale, args.seed, args.budget_ms)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
