"""Routing decision latency, in process: tapshield's Router against the
baselines' decisions, measured in the same run.

Each decision is timed on its own with ``perf_counter_ns`` (the timer's own
cost, measured on an empty call, is reported and not subtracted). State is
realistic: 31 regions, four channels, a warm history with some keys
eliminated, per-user eligibility sets.

    .venv/bin/python benchmarks/route_latency.py [--decisions 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tapshield.route import ChannelProfile, Router, RouterConfig
from tapshield.route.baselines import DecisionEngine, HyperswitchRule, Resilience4jBreaker

REGIONS = [f"CN-{c}" for c in [
    "BJ", "TJ", "HE", "SX", "NM", "LN", "JL", "HL", "SH", "JS", "ZJ", "AH", "FJ", "JX", "SD", "HA",
    "HB", "HN", "GD", "GX", "HI", "CQ", "SC", "GZ", "YN", "XZ", "SN", "GS", "QH", "NX", "XJ"]]
CHANNELS = ("nfc", "qr", "debit_card", "wallet")
ELIGIBLE = [frozenset(CHANNELS), frozenset({"nfc", "qr", "wallet"}), frozenset({"qr"}),
            frozenset({"nfc", "qr"}), frozenset({"qr", "debit_card", "wallet"})]


def warm(policy: Any, rng: random.Random, n: int = 100_000) -> float:
    """Feed a history: normal outcomes, a dead nfc in two regions, a flaky wallet."""
    t = 0.0
    for _ in range(n):
        t += 0.01
        ch = rng.choice(CHANNELS)
        region = rng.choice(REGIONS)
        bad = (ch == "nfc" and region in ("CN-GD", "CN-GX")) or rng.random() < 0.005
        policy.observe(ch, region, t, "failed" if bad else "approved", "96" if bad else "00",
                       250.0)
    return t


def time_decisions(policy: Any, t: float, decisions: int, seed: int) -> np.ndarray:
    rng = random.Random(seed)
    regions = [rng.choice(REGIONS) for _ in range(decisions)]
    elig = [rng.choice(ELIGIBLE) for _ in range(decisions)]
    out = np.empty(decisions, dtype=np.int64)
    choose = policy.choose
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(decisions):
            a = clock()
            choose(regions[i], elig[i], t, budget_left_ms=15_000.0)
            out[i] = clock() - a
    finally:
        gc.enable()
    return out


def timer_cost(n: int = 200_000) -> float:
    clock = time.perf_counter_ns
    xs = np.empty(n, dtype=np.int64)
    for i in range(n):
        a = clock()
        xs[i] = clock() - a
    return float(np.percentile(xs, 50))


POLICIES: dict[str, Callable[[], Any]] = {
    "tapshield": lambda: Router(RouterConfig(profiles=dict.fromkeys(
        CHANNELS, ChannelProfile(0.005, slow_ms=2_000.0, typical_ms=300.0)))),
    "decision_engine": DecisionEngine,
    "hyperswitch": lambda: HyperswitchRule(seed=1),
    "resilience4j": Resilience4jBreaker,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = ap.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for name, make in POLICIES.items():
        p50s, p99s, p999s = [], [], []
        for r in range(args.repeats):
            policy = make()
            t = warm(policy, random.Random(r))
            ns = time_decisions(policy, t, args.decisions, seed=100 + r)
            p50s.append(np.percentile(ns, 50) / 1000)
            p99s.append(np.percentile(ns, 99) / 1000)
            p999s.append(np.percentile(ns, 99.9) / 1000)
        rows[name] = {"p50_us": float(np.median(p50s)), "p99_us": float(np.median(p99s)),
                      "p999_us": float(np.median(p999s)), "worst_p99_us": float(max(p99s))}
    overhead = timer_cost() / 1000
    if args.json:
        print(json.dumps({"timer_us": overhead, "policies": rows}, indent=2))
        return
    ts = rows["tapshield"]["p99_us"]
    print(f"decisions per policy per repeat: {args.decisions:,}; repeats: {args.repeats}; "
          f"timer cost {overhead:.3f} us (included)")
    print("| policy | p50 us | p99 us | p99.9 us | worst p99 of repeats | tapshield p99 / this |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['p50_us']:.2f} | {r['p99_us']:.2f} | {r['p999_us']:.2f} | "
              f"{r['worst_p99_us']:.2f} | {ts / r['p99_us']:.2f} |")


if __name__ == "__main__":
    main()
