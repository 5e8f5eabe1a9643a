"""The trust estimate against the simulator's exact churn effect, over seeds.

For each seed, ``nfc-outage-churn`` is simulated twice: with the churn model
at ``--hazard`` and with churn off (the baseline, same run: the same taps,
nobody leaves, so the true effect is exactly 0). On each, the trust estimate
(:func:`tapshield.respond.trust.trust_impact`, matched difference in
differences) is computed for the incident and compared with the truth
(:func:`tapshield.simulate.churn.true_effect` on the same customers and
window): bias, interval coverage, lost spending against the true one.

``--incident fault`` (default, fast) takes the fault's exact window and scope
as the incident; ``--incident drill`` runs the whole drill (pipeline,
detection) and grades the detected incident, as ``tapshield drill`` does.

    .venv/bin/python benchmarks/trust_churn.py --seeds 101-110
    .venv/bin/python benchmarks/trust_churn.py --seeds 101-104 --incident drill
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.events.read import EventReader
from tapshield.incident import Incident
from tapshield.respond.responder import affected_customers
from tapshield.respond.trust import trust_impact
from tapshield.simulate import Scenario, load_scenario, simulate
from tapshield.simulate.churn import true_effect
from tapshield.simulate.model import Churn
from tapshield.timeutil import parse_rfc3339


def with_churn(sc: Scenario, hazard: float | None) -> Scenario:
    """The scenario with churn at ``hazard`` (``None``: churn off)."""
    base = sc.churn or Churn()
    cfg = base.model_copy(update={"enabled": hazard is not None,
                                  "hazard": hazard if hazard is not None else base.hazard})
    return sc.with_changes(churn=cfg.model_dump())


def oracle_row(sc: Scenario, seed: int, out: Path) -> dict[str, Any]:
    """Estimate vs truth with the fault's own window and scope as the incident."""
    r = simulate(sc, out, seed=seed, labels=False)
    events = pl.concat(list(EventReader(r.events_path)))
    f = r.truth["faults"][0]
    inc = Incident(id=f["id"], start=parse_rfc3339(f["start"]),
                   detected_at=parse_rfc3339(f["start"]), level=2,
                   end=parse_rfc3339(f["end"]), scope=f["scope"])
    hit = set(affected_customers(events, inc)["user_id"].to_list())
    churned = "churn" in r.truth
    customers = pl.read_parquet(out / "churn.parquet") if churned else None
    notified = (set(customers.filter(pl.col("notified_at").is_not_null())["user_id"].to_list())
                if customers is not None else None)
    t = trust_impact(events, inc, hit, notified=notified)
    assert t is not None and t.after_from is not None and t.after_to is not None
    row: dict[str, Any] = t.to_dict()
    if customers is not None:
        taps = pl.read_parquet(out / "churn_taps.parquet")
        eff = true_effect(customers, taps, t.affected_ids, t.after_from, t.after_to)
        told = set(t.notified_ids)
        untold = set(t.affected_ids) - told
        vs = (true_effect(customers, taps, told, t.after_from, t.after_to).effect
              - true_effect(customers, taps, untold, t.after_from, t.after_to).effect
              if told and untold else None)
        row["truth"] = {"retention_effect": eff.effect, "lost_spending_fen": eff.lost_fen,
                        "notified_minus_not": vs}
    else:
        row["truth"] = {"retention_effect": 0.0, "lost_spending_fen": 0}
    return row


def drill_row(sc: Scenario, seed: int, out: Path) -> dict[str, Any]:
    from tapshield.app.drill import run_drill

    d = run_drill(sc, out, seed=seed, failover=False, respond=None)
    rows = d.trust or []
    if not rows:
        return {"missing": True}
    return rows[0]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("missing")]
    err = [r["estimate"] - r["truth"]["retention_effect"] for r in ok]
    cov = [r["ci95"][0] <= r["truth"]["retention_effect"] <= r["ci95"][1] for r in ok]
    money = [r["lost_spending_ci_fen"][1] <= r["truth"]["lost_spending_fen"]
             <= r["lost_spending_ci_fen"][0] for r in ok]
    told = [r for r in ok if r.get("notified_ci95") is not None
            and r["truth"].get("notified_minus_not") is not None]
    return {
        "seeds": len(rows), "estimated": len(ok),
        "notified_compared": len(told),
        "notified_covered": sum(r["notified_ci95"][0] <= r["truth"]["notified_minus_not"]
                                <= r["notified_ci95"][1] for r in told),
        "notified_mean_estimate": round(statistics.fmean(r["notified_minus_not"]
                                                         for r in told), 4) if told else None,
        "notified_mean_truth": round(statistics.fmean(r["truth"]["notified_minus_not"]
                                                      for r in told), 4) if told else None,
        "mean_estimate": round(statistics.fmean(r["estimate"] for r in ok), 4) if ok else None,
        "mean_truth": round(statistics.fmean(r["truth"]["retention_effect"] for r in ok), 4)
        if ok else None,
        "mean_error": round(statistics.fmean(err), 4) if err else None,
        "covered": sum(cov),
        "lost_spending_covered": sum(money),
        "mean_half_width": round(statistics.fmean((r["ci95"][1] - r["ci95"][0]) / 2
                                                  for r in ok), 4) if ok else None,
    }


def seeds_of(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="nfc-outage-churn")
    ap.add_argument("--seeds", default="101-110")
    ap.add_argument("--hazard", type=float, default=0.5)
    ap.add_argument("--incident", choices=("fault", "drill"), default="fault")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    run = drill_row if args.incident == "drill" else oracle_row
    result: dict[str, Any] = {"scenario": args.scenario, "hazard": args.hazard,
                              "incident": args.incident}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, hazard in (("churn", args.hazard), ("baseline_no_churn", None)):
            rows = []
            for seed in seeds_of(args.seeds):
                row = run(with_churn(sc, hazard), seed, Path(tmp) / f"{name}-{seed}")
                row["seed"] = seed
                rows.append(row)
                if not row.get("missing"):
                    print(f"{name:18} seed {seed:4}  estimate {row['estimate']:+.4f} "
                          f"[{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]  "
                          f"truth {row['truth']['retention_effect']:+.4f}  "
                          f"lost CNY {row['lost_spending']} (truth fen "
                          f"{row['truth']['lost_spending_fen']})", flush=True)
            result[name] = {"summary": summarise(rows),
                            "rows": [{k: r.get(k) for k in ("seed", "estimate", "ci95",
                                                            "truth", "lost_spending_fen",
                                                            "lost_spending_ci_fen",
                                                            "notified_minus_not",
                                                            "notified_ci95")}
                                     for r in rows]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: v["summary"] if isinstance(v, dict) and "summary" in v else v
                      for k, v in result.items()}, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
