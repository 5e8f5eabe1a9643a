"""Model, trees, thresholds and the engine's two paths (one request, a frame)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from tapshield.risk.engine import RiskEngine, known_name, request_from_row
from tapshield.risk.features import FeatureState
from tapshield.risk.metrics import average_precision, recall_at, threshold_at
from tapshield.risk.model import RiskModel, fit_platt, gate
from tapshield.risk.rules import load_rules

from .conftest import Trained


def test_tree_walker_matches_lightgbm(trained: Trained) -> None:
    m = trained.result.model
    data = trained.result.data
    x = m.matrix(data.eng_valid, None)
    x[::7, 3] = np.nan  # missing values take LightGBM's default directions
    ours = m.forest.raw(x)
    theirs = m.booster.predict(x, raw_score=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    raw, contrib = m.forest.contributions(x[:50])
    roots = m.forest.value[m.forest.roots].sum()
    np.testing.assert_allclose(contrib.sum(axis=1) + roots, raw, atol=1e-9)


def test_model_learns_and_is_calibrated(trained: Trained) -> None:
    r = trained.result
    y = r.data.y_valid
    assert average_precision(y, r.valid_scores) > 0.5
    # calibrated: mean predicted close to the observed fraud rate on the later slice
    assert abs(r.valid_scores.mean() - y.mean()) < 0.5 * y.mean() + 0.002


def test_thresholds_respect_the_budget(trained: Trained) -> None:
    r = trained.result
    t = r.model.thresholds
    y = r.data.y_valid
    g = r.valid_scores[y == 0]
    assert (g > t.decline).mean() <= t.budget.decline + 1e-12
    assert (g > t.step_up).mean() <= t.budget.decline + t.budget.step_up + 1e-12
    assert t.step_up <= t.decline


def test_metrics_on_hand_examples() -> None:
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert threshold_at(np.array([0.1, 0.2, 0.3, 0.4]), 0.25) == 0.3
    assert recall_at(y, s, 0.0) == 0.5  # only 0.9 is above every genuine score
    assert recall_at(y, s, 0.34) == 1.0
    a, _b = fit_platt(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1]))
    assert a > 0


def test_save_load_roundtrip(tmp_path, trained: Trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.result.model
    m.save(tmp_path / "m")
    m2 = RiskModel.load(tmp_path / "m")
    x = m.matrix(trained.result.data.eng_valid[:100], None)
    np.testing.assert_array_equal(m.forest.raw(x), m2.forest.raw(x))
    assert m2.thresholds == m.thresholds and m2.version == m.version


def test_gate_keeps_a_better_current_model(trained: Trained) -> None:
    g = gate(trained.result, trained.result.model)
    assert not g.promote  # equal is not better
    assert g.candidate["average_precision"] == pytest.approx(g.current["average_precision"])


RULES = {
    "version": "rules-test-1",
    "rules": [
        {"id": "big-new-device", "when": "user_device_cnt_30d == 0 and amount > 300",
         "action": "step_up", "reason": "NEW_DEVICE_LARGE"},
        {"id": "hw6", "when": "device_model == 'HW-6' and amount > 200", "action": "decline",
         "mode": "shadow"},
        {"id": "tiny-nfc", "when": "amount < 2 and channel in ['nfc']", "action": "approve"},
    ],
    "lists": {"deny": {"device_id": ["d4"]}, "allow": {"user_id": ["u7"]}},
}


def test_one_request_and_batch_give_the_same_decisions(trained: Trained) -> None:
    req, lab = trained.requests, trained.labels
    m = trained.result.model
    rules = load_rules(RULES, known=known_name())
    test = req.tail(3_000)
    hist = req.head(req.height - 3_000)
    # batch
    st_b = FeatureState(m.feature_config)
    st_b.batch(hist, lab)
    eb = RiskEngine(m, rules, state=st_b)
    out_b = eb.decide_batch(test, lab)
    # one by one (labels as they are reported)
    st_o = FeatureState(m.feature_config)
    st_o.batch(hist, lab)
    eo = RiskEngine(m, rules, state=st_o)
    rows = []
    pending = lab.filter(pl.col("reported_at") > hist["ts"].max()).sort("reported_at")
    feed = pending.iter_rows(named=True)
    nxt = next(feed, None)
    for r in test.iter_rows(named=True):
        while nxt is not None and nxt["reported_at"] < r["ts"]:
            eo.label(nxt["event_id"], nxt["label"], nxt["reported_at"])
            nxt = next(feed, None)
        d = eo.decide(request_from_row(r))
        rows.append((d.event_id, d.score, d.decision, ";".join(d.reasons), ";".join(d.shadow)))
    out_o = pl.DataFrame(rows, schema=["event_id", "score", "decision", "reasons", "shadow"],
                         orient="row")
    np.testing.assert_allclose(out_o["score"].to_numpy(), out_b["score"].to_numpy(),
                               rtol=1e-12)
    assert out_o["decision"].to_list() == out_b["decision"].to_list()
    assert out_o["reasons"].to_list() == out_b["reasons"].to_list()
    assert out_o["shadow"].to_list() == out_b["shadow"].to_list()
    assert set(out_b["decision"]) >= {"approve", "decline"}
    assert (out_b["rule_version"] == "rules-test-1").all()
    assert out_b["model_version"][0] == m.version


def test_shadow_rule_logs_and_never_decides(trained: Trained) -> None:
    req, lab = trained.requests, trained.labels
    m = trained.result.model
    shadow_only = {"version": "s1", "rules": [
        {"id": "all-hw6", "when": "device_model == 'HW-6'", "action": "decline",
         "mode": "shadow"}]}
    active = {"version": "a1", "rules": [dict(shadow_only["rules"][0], mode="active")]}
    test = req.tail(2_000)
    base = RiskEngine(m, state=FeatureState(m.feature_config)).decide_batch(test, lab)
    sh = RiskEngine(m, load_rules(shadow_only, known=known_name()),
                    state=FeatureState(m.feature_config)).decide_batch(test, lab)
    ac = RiskEngine(m, load_rules(active, known=known_name()),
                    state=FeatureState(m.feature_config)).decide_batch(test, lab)
    hw6 = (test["device_model"] == "HW-6").to_numpy()
    assert hw6.any()
    assert sh["decision"].to_list() == base["decision"].to_list()  # costs customers nothing
    assert (sh["shadow"].to_numpy()[hw6] == "rule:all-hw6=decline").all()
    assert (sh["shadow"].to_numpy()[~hw6] == "").all()
    assert (ac["decision"].to_numpy()[hw6] == "decline").all()


def test_lists_restrictions_and_step_up_evidence(trained: Trained) -> None:
    req, lab = trained.requests, trained.labels
    m = trained.result.model
    rules = load_rules(RULES, known=known_name())
    eng = RiskEngine(m, rules, state=FeatureState(m.feature_config))
    eng.state.batch(req.head(5_000), lab)
    rows = req.slice(5_000, 200).iter_rows(named=True)
    r = request_from_row(next(rows))
    base = r.ts
    d = eng.decide(r.__class__(event_id="x1", ts=base, amount_fen=1000, user_id="u1",
                               device_id="d4", merchant_id="m1"))
    assert d.decision == "decline" and d.reasons == ("DENY_LIST_DEVICE",)
    d = eng.decide(r.__class__(event_id="x2", ts=base, amount_fen=1000, user_id="u7",
                               device_id="d9", merchant_id="m1"))
    assert d.decision == "approve" and d.reasons == ("ALLOW_LIST_USER",)
    eng.restrict("user", "u3", action="decline", until=base + timedelta(hours=1))
    d = eng.decide(r.__class__(event_id="x3", ts=base + timedelta(minutes=1), amount_fen=100,
                               user_id="u3", device_id="d6", merchant_id="m1"))
    assert d.decision == "decline" and "RESTRICTED_USER" in d.reasons
    d = eng.decide(r.__class__(event_id="x4", ts=base + timedelta(hours=2), amount_fen=100,
                               user_id="u3", device_id="d6", merchant_id="m1"))
    assert "RESTRICTED_USER" not in d.reasons  # expired
    eng.restrict("device", "d8", action="step_up", until=base + timedelta(days=1))
    assert eng.lift("device", "d8") is not None
    d = eng.decide(r.__class__(event_id="x5", ts=base + timedelta(hours=3), amount_fen=100,
                               user_id="u5", device_id="d8", merchant_id="m1"))
    assert "RESTRICTED_DEVICE" not in d.reasons
    # a passed step-up spares the same customer and device the next one
    eng.restrict("device", "d10", action="step_up", until=base + timedelta(days=1))
    d = eng.decide(r.__class__(event_id="x6", ts=base + timedelta(hours=4), amount_fen=100,
                               user_id="u5", device_id="d10", merchant_id="m1"))
    assert d.decision == "step_up"
    eng.observe_result("x6", passed=False, at=base + timedelta(hours=4, seconds=20))
    assert ("device", "d10") in eng.restrictions
    eng.lift("device", "d10")
    d = eng.decide(r.__class__(event_id="x7", ts=base + timedelta(hours=5), amount_fen=50_000,
                               user_id="u5", device_id="d11", merchant_id="m1"))
    assert d.decision == "step_up"  # large amount on a new device (rule)
    eng.observe_result("x7", passed=True, at=base + timedelta(hours=5, seconds=30))
    assert ("u5", "d11") in eng.trusted


def test_engine_snapshot_restore(tmp_path, trained: Trained) -> None:  # type: ignore[no-untyped-def]
    req, lab = trained.requests, trained.labels
    m = trained.result.model
    a = RiskEngine(m, state=FeatureState(m.feature_config))
    a.decide_batch(req.head(4_000), lab)
    a.restrict("user", "u1", action="decline", until=req["ts"][5_000] + timedelta(days=3))
    a.snapshot(tmp_path / "snap")
    b = RiskEngine.restore(tmp_path / "snap", m)
    nxt = req.slice(4_000, 500)
    ra = a.decide_batch(nxt, lab)
    rb = b.decide_batch(nxt, lab)
    assert ra.equals(rb)
    assert ("user", "u1") in b.restrictions
