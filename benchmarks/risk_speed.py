"""Speed of the risk engine: one decision against a million users, and batch scoring.

1. A model is trained on synthetic requests (``tapshield.risk.synth``), then a
   state of ``--users`` customers (default 1,000,000, each with history over
   30 days) is built by the batch path.
2. **One decision** (features, model score with per-feature contributions,
   rules, decision) for ``--decisions`` new requests, timed one by one with
   ``perf_counter`` (wall) and ``thread_time`` (this thread's CPU: on a shared
   host the wall-clock tail is the scheduler's, not the engine's): p50 / p99 /
   p99.9. Baseline in the same run: the same
   decision with the model scored the obvious way, LightGBM's
   ``Booster.predict`` on the one row and ``pred_contrib=True`` for reasons.
3. **Batch scoring** (``RiskEngine.decide_batch``: features with labels as
   feedback, LightGBM predict, contributions for flagged rows, rules,
   decisions) of ``--batch`` new requests: requests/s. Baseline in the same
   run: LightGBM's ``predict`` alone on the already computed model inputs
   (the model's own cost, no features, no decisions).

    python benchmarks/risk_speed.py [--users 1000000] [--decisions 20000] [--batch 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tapshield.risk import synth
from tapshield.risk.engine import Request, RiskEngine, known_name
from tapshield.risk.features import FeatureState
from tapshield.risk.model import TrainConfig, train
from tapshield.risk.rules import load_rules
from tapshield.timeutil import from_epoch_us

ROOT = Path(__file__).resolve().parents[1]
RULES = {"version": "bench-rules", "rules": [
    {"id": "new-device-large", "when": "user_device_cnt_30d == 0 and amount > 2000",
     "action": "step_up"},
    {"id": "burst", "when": "device_cnt_10m >= 8", "action": "decline"},
    {"id": "watch-hw6", "when": "device_model == 'HW-6' and score > 0.2", "action": "decline",
     "mode": "shadow"},
]}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q) * 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--decisions", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-risk_speed.json")
    args = ap.parse_args()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    req, lab = synth.generate(n_users=5_000, days=40, seed=21)
    res = train(req, lab, config=TrainConfig(threads=1))
    model = res.model
    print(f"model: {len(model.forest.roots)} trees, {len(model.columns)} inputs "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    # the state of a million users
    t0 = time.perf_counter()
    hist, hlab = synth.generate(n_users=args.users, days=30, per_user_day=0.1, seed=22,
                                n_merchants=max(1000, args.users // 50))
    state = FeatureState(model.feature_config)
    state.batch(hist, hlab)
    build_s = time.perf_counter() - t0
    print(f"state: {len(state.slots[0]):,} users, {state.n_events:,} requests "
          f"({build_s:.0f} s)", flush=True)
    rules = load_rules(RULES, known=known_name())
    engine = RiskEngine(model, rules, state=state)

    # one decision at a time
    rng = np.random.default_rng(5)
    start = int(hist["ts"].max().timestamp() * 1e6) + 1  # type: ignore[union-attr]
    n = args.decisions
    users = rng.integers(0, args.users, n)
    reqs = [Request(event_id=f"live-{i}", ts=from_epoch_us(start + i * 20_000),
                    amount_fen=int(rng.integers(100, 300_000)), user_id=f"u{u}",
                    device_id=f"d{u * 2}", merchant_id=f"m{int(rng.integers(0, 1000))}",
                    context={"device_model": "HW-6", "channel": "nfc"})
            for i, u in enumerate(users)]
    for r in reqs[:200]:  # compile and warm
        engine.decide(r)
    ours: list[float] = []
    ours_cpu: list[float] = []
    decisions: dict[str, int] = {}
    for r in reqs[200:]:
        c = time.thread_time()
        t = time.perf_counter()
        d = engine.decide(r)
        ours.append(time.perf_counter() - t)
        ours_cpu.append(time.thread_time() - c)
        decisions[d.decision] = decisions.get(d.decision, 0) + 1

    # baseline: the same features, LightGBM's own predict (+ pred_contrib for reasons)
    base: list[float] = []
    base_cpu: list[float] = []
    booster = model.booster
    for i, r in enumerate(reqs[200:2200]):
        c = time.thread_time()
        t = time.perf_counter()
        vec = state.one(f"base-{i}", start + (n + i) * 20_000, r.amount_fen, r.user_id,
                        r.device_id, r.merchant_id)
        x = vec[model.eng_index].astype(np.float64)[None, :]
        raw = booster.predict(x, raw_score=True, num_threads=1)
        p = model.proba(raw)
        if p[0] > model.thresholds.step_up:
            booster.predict(x, pred_contrib=True, num_threads=1)
        base.append(time.perf_counter() - t)
        base_cpu.append(time.thread_time() - c)
    single = {
        "users": len(state.slots[0]), "state_requests": state.n_events,
        "decisions": len(ours), "p50_us": pct(ours, 50), "p99_us": pct(ours, 99),
        "p999_us": pct(ours, 99.9), "cpu_p50_us": pct(ours_cpu, 50),
        "cpu_p99_us": pct(ours_cpu, 99), "baseline_cpu_p99_us": pct(base_cpu, 99),
        "baseline_p50_us": pct(base, 50),
        "baseline_p99_us": pct(base, 99), "p99_ratio_baseline_over_ours":
        pct(base, 99) / pct(ours, 99), "decision_mix": decisions,
    }
    print(json.dumps(single), flush=True)

    # batch
    new, nlab = synth.generate(n_users=args.users, days=10, per_user_day=args.batch
                               / args.users / 10, seed=23,
                               n_merchants=max(1000, args.users // 50))
    shift = timedelta(days=31)
    new = new.with_columns(pl.col("ts") + shift, (pl.lit("b-") + pl.col("event_id"))
                           .alias("event_id"))
    nlab = nlab.with_columns(pl.col("reported_at") + shift,
                             (pl.lit("b-") + pl.col("event_id")).alias("event_id"))
    t = time.perf_counter()
    out = engine.decide_batch(new, nlab)
    batch_s = time.perf_counter() - t
    fs = FeatureState(model.feature_config)
    feats = fs.batch(new.head(200_000))
    x = model.matrix(feats, None)
    t = time.perf_counter()
    booster.predict(x, raw_score=True, num_threads=1)
    lgb_s = (time.perf_counter() - t) * new.height / x.shape[0]
    batch = {"requests": new.height, "labels": nlab.height, "seconds": batch_s,
             "requests_per_s": new.height / batch_s,
             "baseline_lightgbm_predict_per_s": new.height / lgb_s,
             "ratio_ours_over_baseline": lgb_s / batch_s,
             "declined": int((out["decision"] == "decline").sum())}
    print(json.dumps(batch), flush=True)
    doc = {"measured_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
           "loadavg_start": load0, "loadavg_end": os.getloadavg(),
           "model_trees": len(model.forest.roots), "single": single, "batch": batch,
           "state_build_seconds": build_s, "command": "python benchmarks/risk_speed.py "
           f"--users {args.users} --decisions {args.decisions} --batch {args.batch}"}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
