"""Quality of the risk engine on the two public fraud data sets, on time splits.

For each data set and split, two models are trained on the same rows and
scored on the same later rows, in the same run:

* **tapshield**: ``tapshield.risk.model.train`` (state-machine features with
  labels used only from ``reported_at``, LightGBM, calibration) and then the
  engine's batch path over the test period, continuing the training history's
  state and using the test period's labels as feedback from their
  ``reported_at`` on: exactly what ``tapshield risk train`` then ``tapshield
  risk score --labels`` do;
* **plain LightGBM on the raw columns**: the same LightGBM settings and early
  stopping, on the published columns only (card: ``Time, V1..V28, Amount``;
  payment: ``CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_TIME_SECONDS,
  TX_TIME_DAYS``), no history, no labels.

Splits (by time, never at random):

* card ``dev``: train on the first 60 %, test on the next 20 % (hyper-parameters
  were chosen here); ``held-out``: train on the first 80 %, test on the last
  20 %, not looked at before the run that produced BENCHMARKS.md;
* payment ``dev``: train April-June, test July (the label-memory features were
  added after looking at July); ``other``: train April-May, test June, a split
  no choice was made on. The kept-back August-September are the real held-out.

Metrics: area under the precision-recall curve (average precision), with a
95 % bootstrap interval over test rows, and recall at a fixed false-decline
rate (card 0.05 %, payment 1 % of genuine).

    python benchmarks/risk_quality.py [--data ../shared/data] [--only card|payment]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from tapshield.risk.contract import read_labels, read_requests
from tapshield.risk.engine import RiskEngine
from tapshield.risk.metrics import average_precision, recall_at
from tapshield.risk.model import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RAW = {
    "card": ["Time", *[f"V{i}" for i in range(1, 29)], "Amount"],
    "payment": ["CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_TIME_SECONDS", "TX_TIME_DAYS"],
}
LABEL = {"card": "Class", "payment": "TX_FRAUD"}
FDR = {"card": 0.0005, "payment": 0.01}
FILES = {"card": "card-fraud-dev/transactions.csv.gz",
         "payment": "payment-fraud-dev/transactions.csv.gz"}


def bootstrap_ap(y: np.ndarray, s: np.ndarray, rounds: int = 200,
                 seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(rounds):
        i = rng.integers(0, y.size, y.size)
        vals.append(average_precision(y[i], s[i]))
    lo, hi = np.nanpercentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def plain_lightgbm(raw: pl.DataFrame, y: np.ndarray, train_mask: np.ndarray,
                   test_mask: np.ndarray, cols: list[str], cfg: TrainConfig) -> np.ndarray:
    import lightgbm as lgb

    x = raw.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy()
    idx = np.flatnonzero(train_mask)
    cut = idx[int(idx.size * (1 - cfg.valid_share))]
    tr = idx[idx < cut]
    va = idx[idx >= cut]
    params = cfg.params()
    d_tr = lgb.Dataset(x[tr], y[tr], feature_name=cols)
    d_va = lgb.Dataset(x[va], y[va], reference=d_tr)
    b = lgb.train(params, d_tr, cfg.max_rounds, valid_sets=[d_va],
                  callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)])
    return np.asarray(b.predict(x[test_mask], num_iteration=b.best_iteration))


def run(name: str, data: Path, splits: list[tuple[str, float | datetime, float | datetime]],
        cfg: TrainConfig) -> list[dict[str, object]]:
    path = data / FILES[name]
    req = read_requests(path)
    labels, _ = read_labels(path, requests=req.frame)
    raw = pl.read_csv(path, infer_schema_length=10_000)
    frame = req.frame.with_row_index("_i")
    order = np.argsort(frame["ts"].dt.epoch("us").to_numpy(), kind="stable")
    ts = frame["ts"].dt.epoch("us").to_numpy()
    y_all = raw[LABEL[name]].to_numpy().astype(np.int8)
    out: list[dict[str, object]] = []
    for split, a, b in splits:
        if isinstance(a, float):
            t_a = ts[order[int(len(order) * a)]]
            t_b = ts[order[min(len(order) - 1, int(len(order) * float(b)))]]
            t_b = t_b + (1 if float(b) >= 1.0 else 0)
        else:
            assert isinstance(b, datetime)
            t_a = int(a.timestamp() * 1e6)
            t_b = int(b.timestamp() * 1e6)
        train_mask = ts < t_a
        test_mask = (ts >= t_a) & (ts < t_b)
        t0 = time.perf_counter()
        res = train(frame.filter(pl.Series(train_mask)).drop("_i"), labels,
                    lender=list(req.feature_columns), config=cfg)
        train_s = time.perf_counter() - t0
        test = frame.filter(pl.Series(test_mask)).drop("_i")
        engine = RiskEngine(res.model, state=res.state)
        t0 = time.perf_counter()
        scored = engine.decide_batch(test, labels)
        score_s = time.perf_counter() - t0
        y = y_all[test_mask]
        s = scored["score"].to_numpy()
        base = plain_lightgbm(raw, y_all, train_mask, test_mask, RAW[name], cfg)
        row: dict[str, object] = {
            "data": name, "split": split, "test_rows": int(test_mask.sum()),
            "test_frauds": int(y.sum()),
            "tapshield_ap": average_precision(y, s),
            "tapshield_ap_95ci": bootstrap_ap(y, s),
            "tapshield_recall": recall_at(y, s, FDR[name]),
            "plain_ap": average_precision(y, base),
            "plain_ap_95ci": bootstrap_ap(y, base),
            "plain_recall": recall_at(y, base, FDR[name]),
            "false_decline_rate": FDR[name],
            "train_seconds": round(train_s, 1), "score_seconds": round(score_s, 1),
            "rounds": res.report["rounds"],
            "decisions": {d: int((scored["decision"] == d).sum())
                          for d in ("approve", "step_up", "decline")},
            "genuine_declined_rate": float(((scored["decision"] == "decline").to_numpy()
                                            & (y == 0)).sum() / max(1, (y == 0).sum())),
        }
        row["ap_ratio"] = float(row["tapshield_ap"]) / max(1e-9, float(row["plain_ap"]))
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "TAPSHIELD_SHARED", ROOT.parent / "shared")) / "data")
    ap.add_argument("--only", choices=["card", "payment"], default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-risk_quality.json")
    args = ap.parse_args()
    cfg = TrainConfig(threads=args.threads)
    results: list[dict[str, object]] = []
    load = os.getloadavg()
    if args.only in (None, "card"):
        results += run("card", args.data, [("dev", 0.6, 0.8), ("held-out", 0.8, 1.0)], cfg)
    if args.only in (None, "payment"):
        results += run("payment", args.data, [
            ("dev", datetime(2018, 6, 30, 16, tzinfo=UTC), datetime(2018, 7, 31, 16, tzinfo=UTC)),
            ("other", datetime(2018, 5, 31, 16, tzinfo=UTC), datetime(2018, 6, 30, 16, tzinfo=UTC)),
        ], cfg)
    doc = {"measured_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
           "loadavg_start": load, "loadavg_end": os.getloadavg(), "results": results}
    if args.out.exists() and args.only:
        old = json.loads(args.out.read_text())
        keep = [r for r in old.get("results", []) if r["data"] != args.only]
        doc["results"] = keep + results
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'data':8} {'split':9} {'frauds':>6} {'AP':>6} {'plain':>6} {'ratio':>6} "
          f"{'recall':>7} {'plain':>6}")
    for r in doc["results"]:
        print(f"{r['data']:8} {r['split']:9} {r['test_frauds']:6} {r['tapshield_ap']:6.3f} "
              f"{r['plain_ap']:6.3f} {r['ap_ratio']:6.2f} {r['tapshield_recall']:7.3f} "
              f"{r['plain_recall']:6.3f}")


if __name__ == "__main__":
    main()
