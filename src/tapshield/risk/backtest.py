"""Backtest a change: replay history under the current and the candidate configuration.

The features are computed once (they do not depend on decisions) and both
configurations decide every request. The report is what a fraud-strategy
team signs a change off with: genuine customers newly declined or stepped up,
frauds newly caught or newly missed, amounts, and the candidate's decline rate
per segment, which is the prediction the misfire guard holds the live change
to (:class:`tapshield.risk.guard.Expectation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tapshield.money import format_fen
from tapshield.risk.engine import RiskEngine
from tapshield.risk.features import FeatureState
from tapshield.risk.model import RiskModel, last_labels
from tapshield.risk.rules import EMPTY_RULES, RuleSet

SEGMENT_COLUMNS = ("region", "device_model", "app_version", "channel", "carrier", "os",
                   "merchant_category")
MIN_SEGMENT = 50


@dataclass(frozen=True, slots=True)
class Side:
    model: RiskModel | None
    rules: RuleSet = EMPTY_RULES

    @property
    def version(self) -> str:
        parts = []
        if self.rules is not EMPTY_RULES:
            parts.append(self.rules.version)
        if self.model is not None:
            parts.append(self.model.version)
        return "+".join(parts) or "none"


def _summary(d: pl.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": d.height}
    for dec in ("approve", "step_up", "decline"):
        out[dec] = int((d["decision"] == dec).sum())
    gen = d.filter(pl.col("label") == 0)
    fr = d.filter(pl.col("label") == 1)
    out["genuine"] = gen.height
    out["fraud"] = fr.height
    out["unlabelled"] = int(d["label"].is_null().sum())
    out["genuine_declined"] = int((gen["decision"] == "decline").sum())
    out["genuine_stepped_up"] = int((gen["decision"] == "step_up").sum())
    out["genuine_decline_rate"] = out["genuine_declined"] / max(1, gen.height)
    out["fraud_declined"] = int((fr["decision"] == "decline").sum())
    out["fraud_stepped_up"] = int((fr["decision"] == "step_up").sum())
    out["fraud_recall_decline"] = out["fraud_declined"] / max(1, fr.height)
    saved = int(fr.filter(pl.col("decision") == "decline")["amount_fen"].sum() or 0)
    out["fraud_amount_declined"] = format_fen(saved)
    out["fraud_amount"] = format_fen(int(fr["amount_fen"].sum() or 0))
    return out


def backtest(requests: pl.DataFrame, labels: pl.DataFrame, current: Side,
             candidate: Side, *, state: FeatureState | None = None) -> dict[str, Any]:
    """Replay ``requests`` (with ``labels`` as feedback from ``reported_at``)."""
    some = current.model or candidate.model
    fcfg = some.feature_config if some is not None else None
    base = RiskEngine(current.model, current.rules, state=state or FeatureState(fcfg))
    cand = RiskEngine(candidate.model, candidate.rules, state=base.state)
    a_parts: list[pl.DataFrame] = []
    b_parts: list[pl.DataFrame] = []
    for rows, feats in base.state.iter_batch(requests, labels):
        req = requests[rows]
        a_parts.append(base.decide_features(req, feats).select("event_id", "decision"))
        b_parts.append(cand.decide_features(req, feats).select("event_id", "decision"))
    a = pl.concat(a_parts)
    b = pl.concat(b_parts)
    seg_cols = [c for c in SEGMENT_COLUMNS if c in requests.columns]
    lab = last_labels(labels).select("event_id", "label") if labels.height else \
        pl.DataFrame(schema={"event_id": pl.String, "label": pl.Int8})
    info = requests.select("event_id", "amount_fen", *seg_cols).join(lab, on="event_id",
                                                                     how="left")
    da = info.join(a, on="event_id")
    db = info.join(b, on="event_id")
    both = da.join(b.rename({"decision": "cand"}), on="event_id")
    newly_dec = both.filter((pl.col("cand") == "decline") & (pl.col("decision") != "decline"))
    newly_step = both.filter((pl.col("cand") == "step_up") & (pl.col("decision") == "approve"))
    lost = both.filter((pl.col("decision") == "decline") & (pl.col("cand") != "decline"))
    changes = {
        "genuine_newly_declined": int((newly_dec["label"] == 0).sum()),
        "genuine_newly_stepped_up": int((newly_step["label"] == 0).sum()),
        "fraud_newly_declined": int((newly_dec["label"] == 1).sum()),
        "fraud_no_longer_declined": int((lost["label"] == 1).sum()),
        "unlabelled_newly_declined": int(newly_dec["label"].is_null().sum()),
        "amount_saved": format_fen(int(newly_dec.filter(pl.col("label") == 1)["amount_fen"]
                                       .sum() or 0)
                                   - int(lost.filter(pl.col("label") == 1)["amount_fen"]
                                         .sum() or 0)),
        "genuine_amount_newly_declined": format_fen(
            int(newly_dec.filter(pl.col("label") == 0)["amount_fen"].sum() or 0)),
    }
    segments: list[dict[str, Any]] = []
    for col in seg_cols:
        g = db.group_by(col).agg(pl.len().alias("n"),
                                 (pl.col("decision") == "decline").sum().alias("k"))
        for r in g.filter(pl.col("n") >= MIN_SEGMENT).iter_rows(named=True):
            if r[col] is None:
                continue
            segments.append({"dimension": col, "value": r[col], "requests": r["n"],
                             "decline_rate": r["k"] / r["n"]})
    return {
        "version": candidate.version,
        "current_version": current.version,
        "decline_rate": float(b["decision"].eq("decline").sum()) / max(1, b.height),
        "current": _summary(da),
        "candidate": _summary(db),
        "changes": changes,
        "segments": segments,
    }
