"""The decision engine: one tap in, ``approve`` / ``step_up`` / ``decline`` out, with reasons.

The stages, in order (each small, each visible in the decision's reasons):

1. **features** from the state machine (requests and labels before this one);
2. **model**: calibrated probability of fraud and its decision from the
   budget thresholds; in ``shadow`` mode it is logged and not applied;
3. **rules**: active rules raise (``decline``, ``step_up``) or lower
   (``approve``) the model's decision; shadow rules are logged only;
4. **lists**: a deny-listed id declines, an allow-listed id approves (deny
   wins over allow);
5. **restrictions**: a temporary restriction on an account or a device
   (set by an operator or by a failed step-up) makes the answer at least its
   action until it expires or is lifted;
6. **step-up evidence**: a customer who just passed strong verification on
   this device is not asked again for a while (a decline still declines).

Every decision carries the rule-set and model versions that made it, so a
misfire is traced to its change (:mod:`tapshield.risk.guard`).

``decide`` answers one request in microseconds (the state machine's kernel
and the trees walked by Numba); ``decide_batch`` answers a frame (history
replays, ``tapshield risk score``) through the same kernel and LightGBM's
own predictor, and gives the same answers (a test holds them together).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.risk.features import FEATURES, FeatureConfig, FeatureState
from tapshield.risk.model import RiskModel
from tapshield.risk.rules import EMPTY_RULES, SEVERITY, TEXT_NAMES, Rule, RuleSet
from tapshield.timeutil import epoch_us, from_epoch_us

DECISIONS = ("approve", "step_up", "decline")
REASONS_PER_DECISION = 3
RECENT_DECISIONS = 100_000
"""Decisions remembered by ``event_id`` so a redelivered request gets the same answer."""
_FEATURE_POS = {n: i for i, n in enumerate(FEATURES)}


def known_name(lender: tuple[str, ...] = ()) -> Callable[[str], bool]:
    """Names a rule may use: features, request text columns, ``f_`` columns, ``score``."""
    def known(name: str) -> bool:
        return (name in _FEATURE_POS or name in TEXT_NAMES or name == "score"
                or name in lender or name.startswith("f_"))
    return known


@dataclass(frozen=True, slots=True)
class Request:
    """One authorisation request (the contract's row, typed)."""

    event_id: str
    ts: datetime
    amount_fen: int
    user_id: str | None = None
    device_id: str | None = None
    merchant_id: str | None = None
    context: Mapping[str, str | None] = field(default_factory=dict)
    """channel, region, carrier, os, app_version, device_model, merchant_category, payment_id."""
    lender: Mapping[str, float] = field(default_factory=dict)
    """The lender's ``f_`` features."""


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: str
    decision: str
    score: float | None
    reasons: tuple[str, ...]
    rule_version: str
    model_version: str
    model_decision: str | None = None
    shadow: tuple[str, ...] = ()
    """What shadow rules and a shadow model would have done (``id=action``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "decision": self.decision, "score": self.score,
                "reasons": list(self.reasons), "rule_version": self.rule_version,
                "model_version": self.model_version, "model_decision": self.model_decision,
                "shadow": list(self.shadow)}


@dataclass(frozen=True, slots=True)
class Restriction:
    kind: str
    """``user`` or ``device``."""
    id: str
    action: str
    """``step_up`` or ``decline``: the least the answer will be."""
    since: datetime
    until: datetime
    reason: str
    by: str = "operator"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "action": self.action,
                "since": self.since.isoformat(), "until": self.until.isoformat(),
                "reason": self.reason, "by": self.by}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Restriction:
        return cls(d["kind"], d["id"], d["action"], datetime.fromisoformat(d["since"]),
                   datetime.fromisoformat(d["until"]), d["reason"], d.get("by", "operator"))


@dataclass(frozen=True, slots=True)
class EngineConfig:
    model_mode: str = "active"
    """``active`` or ``shadow`` (scored and logged, never applied)."""
    trust_after_step_up: timedelta = timedelta(hours=24)
    """How long a passed step-up spares the same customer and device another one."""
    failed_step_up_restriction: timedelta = timedelta(hours=24)
    """A failed step-up puts the device on ``step_up`` for this long (0: never)."""


class RiskEngine:
    """Decides taps; holds the feature state, the model, the rules, the restrictions."""

    def __init__(self, model: RiskModel | None, rules: RuleSet = EMPTY_RULES, *,
                 state: FeatureState | None = None, config: EngineConfig | None = None,
                 shadow_model: RiskModel | None = None) -> None:
        self.config = config or EngineConfig()
        fcfg = model.feature_config if model is not None else FeatureConfig()
        self.state = state or FeatureState(fcfg)
        self.model = model
        self.shadow_model = shadow_model
        self.rules = rules
        self.rule_history: list[RuleSet] = []
        self.model_history: list[RiskModel | None] = []
        self.restrictions: dict[tuple[str, str], Restriction] = {}
        self.lifted: list[dict[str, str]] = []
        self.trusted: dict[tuple[str, str], int] = {}
        self._pending_step_up: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._recent: OrderedDict[str, Decision] = OrderedDict()
        self._lock = threading.RLock()
        """The state is one mutable structure: a service's worker threads take turns."""

    @classmethod
    def from_dir(cls, model_dir: Path | str, rules: Path | str | None = None, *,
                 config: EngineConfig | None = None) -> RiskEngine:
        """Load a model directory (and its saved history, if any) and a rules file."""
        from tapshield.risk.model import STATE_FILE
        from tapshield.risk.rules import load_rules

        d = Path(model_dir)
        model = RiskModel.load(d)
        state = FeatureState.restore(d / STATE_FILE) if (d / STATE_FILE).exists() else None
        rs = load_rules(rules, known=known_name(tuple(model.lender))) if rules else EMPTY_RULES
        return cls(model, rs, state=state, config=config)

    # -- versions ----------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        if self.model is None:
            return "none"
        return self.model.version + ("(shadow)" if self.config.model_mode == "shadow" else "")

    def set_rules(self, rules: RuleSet) -> None:
        """Deploy a rule set (the previous one is kept for a rollback)."""
        self.rule_history.append(self.rules)
        self.rules = rules

    def rollback_rules(self) -> RuleSet:
        """Go back to the previous rule set; returns the one rolled back."""
        if not self.rule_history:
            raise ValueError("no earlier rule set to roll back to")
        bad = self.rules
        self.rules = self.rule_history.pop()
        return bad

    def set_model(self, model: RiskModel) -> None:
        self.model_history.append(self.model)
        self.model = model

    def rollback_model(self) -> RiskModel | None:
        if not self.model_history:
            raise ValueError("no earlier model to roll back to")
        bad = self.model
        self.model = self.model_history.pop()
        return bad

    # -- restrictions ------------------------------------------------------------------

    def restrict(self, kind: str, id_: str, *, action: str = "step_up",
                 until: datetime, since: datetime | None = None, reason: str = "operator",
                 by: str = "operator") -> Restriction:
        if kind not in ("user", "device"):
            raise ValueError("a restriction is on a `user` or a `device`")
        if action not in ("step_up", "decline"):
            raise ValueError("a restriction's action is `step_up` or `decline`")
        start = since or from_epoch_us(max(self.state.clock_us, 0))
        r = Restriction(kind, id_, action, start, until, reason, by)
        self.restrictions[(kind, id_)] = r
        return r

    def lift(self, kind: str, id_: str, *, by: str = "operator",
             at: datetime | None = None) -> Restriction | None:
        r = self.restrictions.pop((kind, id_), None)
        if r is not None:
            when = at or datetime.now(tz=UTC)
            self.lifted.append({**r.to_dict(), "lifted_at": when.isoformat(), "lifted_by": by})
        return r

    def _restriction(self, kind: str, id_: str | None, t_us: int) -> Restriction | None:
        if id_ is None:
            return None
        r = self.restrictions.get((kind, id_))
        if r is None:
            return None
        if epoch_us(r.until) <= t_us:
            del self.restrictions[(kind, id_)]
            return None
        return r if epoch_us(r.since) <= t_us else None

    # -- one request -------------------------------------------------------------------

    def decide(self, req: Request) -> Decision:
        """Decide one request. A repeat of a recent ``event_id`` (at-least-once
        delivery) gets the same decision again; the state counts it once."""
        with self._lock:
            again = self._recent.get(req.event_id)
            if again is not None:
                return again
            d = self._decide(req)
            self._recent[req.event_id] = d
            if len(self._recent) > RECENT_DECISIONS:
                self._recent.popitem(last=False)
            return d

    def _decide(self, req: Request) -> Decision:
        t = epoch_us(req.ts)
        vec = self.state.one(req.event_id, t, req.amount_fen, req.user_id, req.device_id,
                             req.merchant_id)
        model = self.model
        score: float | None = None
        model_dec: str | None = None
        contrib: np.ndarray | None = None
        x: np.ndarray | None = None
        if model is not None:
            x = self._row(model, vec, req)
            raw_a, contrib_a = model.forest.contributions(x)
            score = float(model.proba(raw_a)[0])
            contrib = contrib_a[0]
            model_dec = model.thresholds.decide(score)
        shadow: list[str] = []
        if self.shadow_model is not None:
            sm = self.shadow_model
            s_score = float(sm.proba(sm.forest.raw(self._row(sm, vec, req)))[0])
            shadow.append(f"model:{sm.version}={sm.thresholds.decide(s_score)}")

        def value(name: str) -> float | str | None:
            j = _FEATURE_POS.get(name)
            if j is not None:
                v = float(vec[j])
                return None if math.isnan(v) else v
            if name == "score":
                return score
            if name.startswith("f_"):
                lv = req.lender.get(name)
                return None if lv is None or math.isnan(lv) else float(lv)
            if name in ("user_id", "device_id", "merchant_id"):
                return getattr(req, name)  # type: ignore[no-any-return]
            return req.context.get(name)

        fired: list[Rule] = []
        for r in self.rules.rules:
            if r.test(value) is True:
                if r.mode == "active":
                    fired.append(r)
                else:
                    shadow.append(f"rule:{r.id}={r.action}")
        decision, reasons = self._combine(
            model_dec if self.config.model_mode == "active" else None, fired, req, t)
        if model is not None and self.config.model_mode == "shadow":
            shadow.append(f"model:{model.version}={model_dec}")
        if decision != "approve" and contrib is not None and model is not None and \
                model_dec != "approve" and self.config.model_mode == "active":
            reasons += _top_reasons(contrib, model.columns)
        if decision == "step_up" and req.user_id is not None:
            key = (req.user_id, req.device_id or "")
            until = self.trusted.get(key)
            if until is not None and until > t and not any(
                    r.action == "step_up" for r in fired):
                decision, reasons = "approve", ["STEP_UP_PASSED_RECENTLY"]
        if decision == "step_up":
            self._pending_step_up[req.event_id] = (req.user_id, req.device_id)
            while len(self._pending_step_up) > 100_000:
                self._pending_step_up.popitem(last=False)
        return Decision(req.event_id, decision, score, tuple(reasons), self.rules.version,
                        self.model_version, model_dec, tuple(shadow))

    @staticmethod
    def _row(model: RiskModel, vec: np.ndarray, req: Request) -> np.ndarray:
        x = np.empty((1, len(model.engineered) + len(model.lender)), np.float64)
        x[0, : model.eng_index.size] = vec[model.eng_index]
        for j, name in enumerate(model.lender):
            v = req.lender.get(name)
            # float32, as in training and in the batch path
            x[0, model.eng_index.size + j] = math.nan if v is None else float(np.float32(v))
        return x

    def _combine(self, model_dec: str | None, fired: list[Rule], req: Request,
                 t: int) -> tuple[str, list[str]]:
        reasons: list[str] = []
        rs = self.rules
        for key in ("user_id", "device_id", "merchant_id"):
            v = getattr(req, key)
            if v is not None and v in rs.deny.get(key, ()):
                return "decline", [f"DENY_LIST_{key.removesuffix('_id').upper()}"]
        for key in ("user_id", "device_id", "merchant_id"):
            v = getattr(req, key)
            if v is not None and v in rs.allow.get(key, ()):
                return "approve", [f"ALLOW_LIST_{key.removesuffix('_id').upper()}"]
        decision = model_dec or "approve"
        lowered = [r for r in fired if r.action == "approve"]
        raised = [r for r in fired if r.action != "approve"]
        if lowered and decision != "approve":
            decision = "approve"
            reasons.append(lowered[0].code)
        for r in sorted(raised, key=lambda r: -SEVERITY[r.action]):
            if SEVERITY[r.action] >= SEVERITY[decision]:
                decision = r.action
            reasons.append(r.code)
        for kind, id_ in (("user", req.user_id), ("device", req.device_id)):
            res = self._restriction(kind, id_, t)
            if res is not None:
                if SEVERITY[res.action] > SEVERITY[decision]:
                    decision = res.action
                reasons.append(f"RESTRICTED_{kind.upper()}")
        return decision, reasons

    # -- feedback ----------------------------------------------------------------------

    def label(self, event_id: str, label: int, reported_at: datetime) -> bool:
        """A label from its ``reported_at`` on (features only use it afterwards)."""
        with self._lock:
            return self.state.label_one(event_id, int(label), epoch_us(reported_at))

    def observe_result(self, event_id: str, passed: bool, at: datetime) -> None:
        """The gateway's step-up result. A pass is evidence for the customer (a
        genuine label for that request, and no new step-up on this device for a
        while); a failure restricts the device to step-up."""
        with self._lock:
            self._observe(event_id, passed, at)

    def _observe(self, event_id: str, passed: bool, at: datetime) -> None:
        who = self._pending_step_up.pop(event_id, None)
        if passed:
            self.state.label_one(event_id, 0, epoch_us(at))
            if who is not None and who[0] is not None:
                self.trusted[(who[0], who[1] or "")] = epoch_us(
                    at + self.config.trust_after_step_up)
        elif who is not None and who[1] is not None and \
                self.config.failed_step_up_restriction > timedelta(0):
            self.restrict("device", who[1], action="step_up", since=at,
                          until=at + self.config.failed_step_up_restriction,
                          reason="failed step-up", by="engine")

    # -- many requests -----------------------------------------------------------------

    def decide_batch(self, requests: pl.DataFrame, labels: pl.DataFrame | None = None
                     ) -> pl.DataFrame:
        """Decide a frame of validated requests in event-time order (no look-ahead).

        Returns one row per request, in the input's order: ``event_id, score,
        decision, reasons`` (``;``-separated), ``model_decision``, ``shadow``,
        ``rule_version``, ``model_version``. Operator restrictions apply in their
        validity window; step-up results are not known in a replay.
        """
        parts: list[pl.DataFrame] = []
        for rows, feats in self.state.iter_batch(requests, labels):
            part = self.decide_features(requests[rows], feats)
            parts.append(part.with_columns(pl.Series("_pos", rows)))
        if not parts:
            return self.decide_features(requests, np.zeros((0, len(FEATURES)), np.float32))
        return pl.concat(parts).sort("_pos").drop("_pos")

    def decide_features(self, requests: pl.DataFrame, feats: np.ndarray) -> pl.DataFrame:
        """Decisions for requests whose features are already computed (a backtest
        computes them once and decides them under two configurations)."""
        n = requests.height
        model = self.model
        score = np.full(n, np.nan)
        model_reasons: list[str] = [""] * n
        if model is not None and n:
            lend = (requests.select(model.lender).to_numpy().astype(np.float32)
                    if model.lender else None)
            x = model.matrix(feats, lend)
            score = model.proba(model.raw_batch(x))
            hot = np.flatnonzero(score > model.thresholds.step_up)
            if hot.size:
                _, c = model.forest.contributions(x[hot])
                for r, text in zip(hot.tolist(), _top_reasons_many(c, model.columns),
                                   strict=True):
                    model_reasons[r] = text
        keep = [c for c in TEXT_NAMES if c in requests.columns]
        frame = requests.select("event_id", "ts", *keep, *[
            c for c in requests.columns if c.startswith("f_")])
        extra = [pl.Series(name, feats[:, _FEATURE_POS[name]]).fill_nan(None)
                 for name in self._rule_names() if name in _FEATURE_POS]
        frame = frame.with_columns(pl.Series("score", score).fill_nan(None), *extra,
                                   pl.Series("_model_reasons", model_reasons, dtype=pl.String))
        if model is not None:
            t = model.thresholds
            model_dec = np.where(score > t.decline, "decline",
                                 np.where(score > t.step_up, "step_up", "approve"))
            frame = frame.with_columns(pl.Series("model_decision", model_dec, dtype=pl.String))
        else:
            frame = frame.with_columns(pl.lit(None, pl.String).alias("model_decision"))
        return self._combine_frame(frame, requests["ts"])

    def _rule_names(self) -> set[str]:
        out: set[str] = set()
        for r in self.rules.rules:
            out |= set(r.condition.names)
        return out

    def _combine_frame(self, f: pl.DataFrame, ts: pl.Series) -> pl.DataFrame:
        rs = self.rules
        active_model = self.config.model_mode == "active" and self.model is not None
        dec = pl.col("model_decision") if active_model else pl.lit("approve")
        sev = {"approve": 0, "step_up": 1, "decline": 2}
        f = f.with_columns(
            dec.replace_strict(sev, return_dtype=pl.Int8).alias("_sev"),
            pl.lit("").alias("_reasons"),
            pl.when(dec != "approve").then(pl.col("_model_reasons")).otherwise(pl.lit(""))
            .alias("_mreasons"),
            pl.lit("").alias("shadow"),
        )
        fired_cols: list[pl.Expr] = []
        for r in rs.rules:
            for name in r.condition.names:
                if name not in f.columns and name.startswith("f_"):
                    f = f.with_columns(pl.lit(None, pl.Float64).alias(name))
                if name not in f.columns:
                    f = f.with_columns(pl.lit(None, pl.String).alias(name))
            fired_cols.append(r.condition.expr().fill_null(False).alias(f"_r_{r.id}"))
        if fired_cols:
            f = f.with_columns(fired_cols)
        lowered = [r for r in rs.active if r.action == "approve"]
        if lowered:
            any_low = pl.any_horizontal([pl.col(f"_r_{r.id}") for r in lowered])
            first = pl.coalesce([pl.when(pl.col(f"_r_{r.id}")).then(pl.lit(r.code))
                                 for r in lowered])
            f = f.with_columns(
                pl.when(any_low & (pl.col("_sev") > 0)).then(pl.lit(0, pl.Int8))
                .otherwise(pl.col("_sev")).alias("_sev"),
                pl.when(any_low & (pl.col("_sev") > 0)).then(first)
                .otherwise(pl.lit("")).alias("_reasons"),
                pl.when(any_low & (pl.col("_sev") > 0)).then(pl.lit(""))
                .otherwise(pl.col("_mreasons")).alias("_mreasons"),
            )
        for r in sorted([r for r in rs.active if r.action != "approve"],
                        key=lambda r: -SEVERITY[r.action]):
            hit = pl.col(f"_r_{r.id}")
            f = f.with_columns(
                pl.when(hit).then(pl.max_horizontal(pl.col("_sev"),
                                                    pl.lit(SEVERITY[r.action], pl.Int8)))
                .otherwise(pl.col("_sev")).alias("_sev"),
                pl.when(hit).then(pl.concat_str([pl.col("_reasons"), pl.lit(r.code + ";")]))
                .otherwise(pl.col("_reasons")).alias("_reasons"),
            )
        for r in rs.shadow:
            f = f.with_columns(
                pl.when(pl.col(f"_r_{r.id}"))
                .then(pl.concat_str([pl.col("shadow"), pl.lit(f"rule:{r.id}={r.action};")]))
                .otherwise(pl.col("shadow")).alias("shadow"))
        if self.model is not None and not active_model:
            f = f.with_columns(pl.concat_str([pl.col("shadow"),
                                              pl.lit(f"model:{self.model.version}="),
                                              pl.col("model_decision"), pl.lit(";")])
                               .alias("shadow"))
        f = f.with_columns(ts.alias("_ts")).with_columns(pl.col("score").fill_nan(None))
        for kind, col in (("user", "user_id"), ("device", "device_id")):
            if col not in f.columns:
                continue
            for (k, id_), res in self.restrictions.items():
                if k != kind:
                    continue
                inside = ((pl.col(col) == id_) & (pl.col("_ts") >= res.since)
                          & (pl.col("_ts") < res.until)).fill_null(False)
                f = f.with_columns(
                    pl.when(inside).then(pl.max_horizontal(
                        pl.col("_sev"), pl.lit(SEVERITY[res.action], pl.Int8)))
                    .otherwise(pl.col("_sev")).alias("_sev"),
                    pl.when(inside).then(pl.concat_str([pl.col("_reasons"),
                                                        pl.lit(f"RESTRICTED_{kind.upper()};")]))
                    .otherwise(pl.col("_reasons")).alias("_reasons"))
        reasons = pl.concat_str([pl.col("_reasons"), pl.col("_mreasons")])
        for lst, sev_v, prefix in ((rs.allow, 0, "ALLOW_LIST_"), (rs.deny, 2, "DENY_LIST_")):
            for key in ("merchant_id", "device_id", "user_id"):
                values = sorted(lst.get(key, ()))
                if not values or key not in f.columns:
                    continue
                hit = pl.col(key).is_in(values).fill_null(False)
                code = prefix + key.removesuffix("_id").upper()
                f = f.with_columns(pl.when(hit).then(pl.lit(sev_v, pl.Int8))
                                   .otherwise(pl.col("_sev")).alias("_sev"))
                reasons = pl.when(hit).then(pl.lit(code)).otherwise(reasons)
        return f.select(
            "event_id", "score",
            pl.col("_sev").replace_strict({0: "approve", 1: "step_up", 2: "decline"},
                                          return_dtype=pl.String).alias("decision"),
            reasons.str.strip_chars(";").alias("reasons"),
            "model_decision",
            pl.col("shadow").str.strip_chars(";"),
            pl.lit(self.rules.version).alias("rule_version"),
            pl.lit(self.model_version).alias("model_version"),
        )

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self, out: Path | str) -> None:
        """Write the state, restrictions and trust to a directory (model and rules
        are deployed files; their versions are recorded to check on restore)."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        self.state.snapshot(d / "state.npz")
        doc = {"model_version": self.model_version, "rule_version": self.rules.version,
               "restrictions": [r.to_dict() for r in self.restrictions.values()],
               "lifted": self.lifted,
               "trusted": [[u, dv, until] for (u, dv), until in self.trusted.items()]}
        (d / "engine.json").write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def restore(cls, path: Path | str, model: RiskModel | None, rules: RuleSet = EMPTY_RULES,
                *, config: EngineConfig | None = None) -> RiskEngine:
        d = Path(path)
        eng = cls(model, rules, state=FeatureState.restore(d / "state.npz"), config=config)
        doc = json.loads((d / "engine.json").read_text())
        for r in doc.get("restrictions", []):
            res = Restriction.from_dict(r)
            eng.restrictions[(res.kind, res.id)] = res
        eng.lifted = list(doc.get("lifted", []))
        eng.trusted = {(u, dv): int(until) for u, dv, until in doc.get("trusted", [])}
        return eng


def _top_reasons(contrib: np.ndarray, columns: list[str],
                 k: int = REASONS_PER_DECISION) -> list[str]:
    """The ``k`` features that pushed the score up most, as ``model:<feature>``."""
    order = np.argsort(-contrib, kind="stable")[:k]
    return [f"model:{columns[j]}" for j in order if contrib[j] > 0]


def _top_reasons_many(contrib: np.ndarray, columns: list[str],
                      k: int = REASONS_PER_DECISION) -> list[str]:
    """:func:`_top_reasons` for many rows at once (``;``-joined), same order and ties."""
    if contrib.shape[0] == 0:
        return []
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(contrib, order, axis=1)
    names = np.asarray([f"model:{c}" for c in columns], dtype=object)
    out = []
    for row_idx, row_val in zip(order, vals, strict=True):
        out.append(";".join(names[row_idx[row_val > 0]]))
    return out


def request_from_row(row: Mapping[str, Any], lender: tuple[str, ...] = ()) -> Request:
    """A :class:`Request` from a validated requests-frame row (dict)."""
    ts = row["ts"]
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    ctx = {c: row.get(c) for c in ("channel", "region", "carrier", "os", "app_version",
                                   "device_model", "merchant_category", "payment_id")}
    return Request(event_id=str(row["event_id"]), ts=ts, amount_fen=int(row["amount_fen"]),
                   user_id=row.get("user_id"), device_id=row.get("device_id"),
                   merchant_id=row.get("merchant_id"), context=ctx,
                   lender={c: row[c] for c in lender if row.get(c) is not None})
