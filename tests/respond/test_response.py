"""Lifecycle, playbooks, notice policy and the partner protocol, on hand-made incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tapshield.errors import ContractError
from tapshield.incident import Incident
from tapshield.respond.drafts import regulatory_drafts
from tapshield.respond.lifecycle import Lifecycle, TransitionError
from tapshield.respond.notices import NoticePolicy, Recipient, personal_data_in
from tapshield.respond.partners import (
    Partner,
    ReplayGuard,
    SignatureError,
    body_bytes,
    signed_headers,
)
from tapshield.respond.playbooks import load_playbooks, parse_playbooks
from tapshield.respond.responder import Responder

T0 = datetime(2026, 11, 24, 3, 40, tzinfo=UTC)  # 11:40 in Shanghai
SCOPE = [{"channel": "nfc", "region": "CN-GD"}]


def incident(iid: str = "INC-1", *, start: datetime = T0, minutes: int = 50, level: int = 2,
             cause: str = "interface", signal: str = "technical") -> Incident:
    inc = Incident(id=iid, start=start, detected_at=start + timedelta(minutes=1), level=level,
                   end=start + timedelta(minutes=minutes), scope=SCOPE, cause=cause,
                   confidence=0.9)
    inc.extra["signal"] = signal
    inc.extra["level_history"] = [
        {"ts": (start + timedelta(minutes=1)).isoformat(), "state": "firing", "level": level},
        {"ts": (start + timedelta(minutes=minutes)).isoformat(), "state": "resolved",
         "level": level}]
    return inc


def events(start: datetime = T0, users: int = 5) -> pl.DataFrame:
    rows = []
    for u in range(users):
        ts = start + timedelta(minutes=2 + u)
        rows.append({"ts": ts, "payment_id": f"p{u}", "user_id": f"u{u}", "channel": "nfc",
                     "region": "CN-GD", "outcome": "failed", "response_code": "91",
                     "amount_fen": 1234 + u, "merchant_id": "m1", "risk_decision": None})
    # u0 retried on QR and succeeded: not lost, not told
    rows.append({"ts": start + timedelta(minutes=3), "payment_id": "p0", "user_id": "u0",
                 "channel": "qr", "region": "CN-GD", "outcome": "approved",
                 "response_code": "00", "amount_fen": 1234, "merchant_id": "m1",
                 "risk_decision": None})
    return pl.DataFrame(rows, schema_overrides={"ts": pl.Datetime("us", "UTC")})


def directory(user: str) -> Recipient:
    return Recipient(user, f"tok-{user}", "sms", "en" if user == "u1" else "zh-CN",
                     account_last4="1234")


def test_lifecycle_allows_only_its_moves() -> None:
    lc = Lifecycle.opened("INC-1", T0, "tapshield/monitor", "paged")
    lc.move("acknowledged", T0, "alice", "on it")
    with pytest.raises(TransitionError, match="cannot go from acknowledged to postmortem"):
        lc.move("postmortem", T0, "alice", "too early")
    with pytest.raises(TransitionError, match="needs a reason"):
        lc.move("mitigating", T0, "alice", " ")
    lc.move("resolved", T0, "partner:card-network", "node restored")
    assert [e.what for e in lc.timeline] == ["open", "acknowledged", "resolved"]


def test_each_lost_customer_gets_one_notice_and_one_followup() -> None:
    plan = Responder(directory=directory).respond(
        [incident("INC-1"), incident("INC-2", start=T0 + timedelta(minutes=55))], events())
    notices = [m for m in plan.messages if m.kind == "notice"]
    followups = [m for m in plan.messages if m.kind == "followup"]
    # u0 was rescued by a retry; INC-2 overlaps INC-1's case: nobody told twice
    assert sorted(m.recipient for m in notices) == ["u1", "u2", "u3", "u4"]
    assert sorted(m.recipient for m in followups) == ["u1", "u2", "u3", "u4"]
    assert plan.cases["INC-2"] == "INC-1"
    assert len({m.key for m in plan.messages}) == len(plan.messages)
    en = next(m for m in notices if m.recipient == "u1")
    assert "CNY 12.35" in en.body and "ending 1234" in en.body and "QR" in en.body
    assert all(f.due_at > n.due_at for f in followups for n in notices
               if n.recipient == f.recipient)
    assert plan.lifecycles["INC-1"].state == "resolved"
    assert "mitigating" in [e.what for e in plan.lifecycles["INC-1"].timeline]


def test_quiet_hours_defer_all_but_fraud_warnings() -> None:
    night = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    policy = NoticePolicy()
    outage = Responder(directory=directory).respond([incident(start=night)], events(night))
    assert all(not policy.in_quiet_hours(m.due_at, "Asia/Shanghai")
               for m in outage.messages if m.kind != "webhook")
    assert min(m.due_at for m in outage.messages if m.kind == "notice").astimezone(
        policy_tz()).hour == 8
    fraud = Responder(directory=directory).respond(
        [incident(start=night, cause="fraud_attack", signal="technical")], events(night))
    assert any(policy.in_quiet_hours(m.due_at, "Asia/Shanghai")
               for m in fraud.messages if m.kind == "notice")


def policy_tz():  # type: ignore[no-untyped-def]
    from tapshield.timeutil import zone

    return zone("Asia/Shanghai")


def test_daily_cap_suppresses_and_records() -> None:
    incs = [incident(f"INC-{n}", start=T0 + timedelta(hours=2 * n), minutes=30,
                     cause=c) for n, c in enumerate(["interface", "network", "release"])]
    ev = pl.concat([events(i.start, users=2) for i in incs])
    ev = ev.with_columns(pl.concat_str([pl.col("payment_id"), pl.col("ts").dt.hour()
                                        .cast(pl.String)]).alias("payment_id"))
    plan = Responder(directory=directory, policy=NoticePolicy(daily_cap=4)).respond(incs, ev)
    u1 = [m for m in plan.messages if m.recipient == "u1"]
    assert len(u1) == 6
    assert sum(1 for m in u1 if m.suppressed == "daily_cap") == 2


def test_personal_data_is_found() -> None:
    assert [f.kind for f in personal_data_in("call 138 1234 5678")] == ["phone"]
    assert [f.kind for f in personal_data_in("mail zhang.wei@example.com")] == ["email"]
    assert [f.kind for f in personal_data_in("card 4111 1111 1111 1111")] == ["card_number"]
    assert personal_data_in("账户尾号1234在11-24 11:41的一笔264.57元") == []
    assert [f.kind for f in personal_data_in("for u123", known=frozenset({"u123"}))] == [
        "identifier"]


def test_partner_signature_replay_window_and_replays() -> None:
    body = body_bytes({"incident_id": "INC-1", "status": "identified"})
    h = signed_headers("s3cret", 1_000_000, body, "k1")
    guard = ReplayGuard()
    assert guard.verify("s3cret", h, body, 1_000_100) == "k1"
    assert guard.is_new("k1", 1_000_100) and not guard.is_new("k1", 1_000_101)
    with pytest.raises(SignatureError, match="does not verify"):
        guard.verify("s3cret", h, body + b" ", 1_000_100)
    with pytest.raises(SignatureError, match="replay window"):
        guard.verify("s3cret", h, body, 1_000_000 + 301)
    with pytest.raises(SignatureError, match="does not verify"):
        guard.verify("other", h, body, 1_000_100)


def test_partner_webhooks_only_to_the_owner_and_without_customers() -> None:
    partners = [Partner("nfc-net", {"channel": "nfc"}, "http://x", "s"),
                Partner("wallet", {"channel": "wallet"}, "http://y", "s")]
    plan = Responder(directory=directory, partners=partners).respond([incident()], events())
    hooks = [m for m in plan.messages if m.kind == "webhook"]
    assert {m.recipient for m in hooks} == {"nfc-net"}
    assert [m.payload["event"] for m in hooks] == ["incident.opened", "incident.resolved"]
    text = str([m.payload for m in hooks])
    assert "u1" not in text and "tok-" not in text


def test_misfire_playbook_uses_the_guard() -> None:
    inc = incident(cause="risk_control", signal="risk_decline")
    verdict = {"version": "rules-v2", "detected_at": (T0 + timedelta(minutes=3)).isoformat(),
               "segment": {"region": "CN-GD"}, "action": "flag", "summary": "declines 40%"}
    plan = Responder(directory=directory, guard_verdicts=[verdict]).respond([inc], events())
    step = next(s for s in plan.steps if s.step.name == "rollback_risk_change")
    assert step.done and "rules-v2" in step.outcome
    none = Responder(directory=directory).respond([inc], events())
    assert not next(s for s in none.steps if s.step.name == "rollback_risk_change").done


def test_playbooks_validate() -> None:
    assert load_playbooks().for_phase("interface", "open", 2)
    with pytest.raises(ContractError, match="unknown action"):
        parse_playbooks("version: x\nplaybooks:\n  unknown:\n    open:\n"
                        "      - {action: reboot_the_internet}\n", "p.yaml")


def test_dora_deadlines() -> None:
    inc = incident()
    d = regulatory_drafts(inc, {"dora": {"major": True}}, classified_at=inc.detected_at)
    due = {r["report"]: r["due"] for r in d["reports"]}
    assert set(due) == {"dora_initial", "dora_intermediate", "dora_final"}
    assert due["dora_initial"].startswith("2026-11-24T15:41")  # 4 h after classification
    assert regulatory_drafts(inc, None)["reports"] == []


def _population(n_users: int = 3000, seed: int = 5) -> tuple[pl.DataFrame, Incident, set[str]]:
    """Customers paying at random over 6 hours; an incident in the middle loses the taps
    of a third of those who pay in its scope while it lasts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    rows_ts, rows_user, rows_ok, rows_region = [], [], [], []
    for u in range(n_users):
        k = rng.poisson(3.0)
        for t in rng.uniform(0, 6 * 3600, size=k):
            rows_ts.append(start + timedelta(seconds=float(t)))
            rows_user.append(f"u{u}")
            rows_ok.append(True)
            rows_region.append("CN-GD" if u % 2 else "CN-GX")
    ev = pl.DataFrame({"ts": rows_ts, "user_id": rows_user, "region": rows_region,
                       "channel": ["nfc"] * len(rows_ts),
                       "outcome": ["approved"] * len(rows_ts),
                       "amount_fen": [2000] * len(rows_ts)},
                      schema_overrides={"ts": pl.Datetime("us", "UTC")})
    inc = Incident(id="INC-T", start=start + timedelta(hours=2),
                   detected_at=start + timedelta(hours=2, minutes=1), level=2,
                   end=start + timedelta(hours=3), scope=[{"region": "CN-GD"}])
    during = ev.filter((pl.col("ts") >= inc.start) & (pl.col("ts") <= inc.end)
                       & (pl.col("region") == "CN-GD"))["user_id"].unique().sort().to_list()
    affected = {u for i, u in enumerate(during) if i % 3 == 0}
    return ev, inc, affected


def test_trust_estimate_is_null_without_churn_and_finds_planted_churn() -> None:
    from tapshield.respond.trust import trust_impact

    ev, inc, affected = _population()
    none = trust_impact(ev, inc, affected)
    assert none is not None and none.ci95[0] <= 0.0 <= none.ci95[1]
    # plant churn: 60 % of the affected never pay again after the incident
    gone = {u for i, u in enumerate(sorted(affected)) if i % 5 < 3}
    churned = ev.filter(~(pl.col("user_id").is_in(sorted(gone)) & (pl.col("ts") > inc.end)))
    hit = trust_impact(churned, inc, affected, notified=affected - {sorted(affected)[0]})
    assert hit is not None
    truth = -0.6 * hit.affected.active_before  # roughly: the share that would have paid
    assert hit.ci95[1] < 0, "a 60 % churn must be measurable"
    assert hit.ci95[0] <= hit.estimate <= hit.ci95[1]
    assert abs(hit.estimate - truth) < 0.15
    assert hit.customers_lost > 0 and hit.lost_spending_fen > 0


def test_incidents_still_open_at_the_end_of_the_run() -> None:
    """An incident the run ended inside (no end yet) joins cases and reads the guard's
    verdicts without date arithmetic past the calendar (found by the app-release-rollout
    drill); it gets notices and no follow-up yet."""
    open_one = incident("INC-1", cause="risk_control", signal="technical")
    open_one.end = None
    open_one.extra["level_history"] = open_one.extra["level_history"][:1]
    later = incident("INC-2", start=T0 + timedelta(minutes=20), cause="risk_control")
    verdict = {"version": "rules-v2", "detected_at": (T0 + timedelta(minutes=3)).isoformat(),
               "segment": {"region": "CN-GD"}, "action": "rollback", "summary": "declines"}
    plan = Responder(directory=directory, guard_verdicts=[verdict]).respond(
        [open_one, later], events())
    assert plan.cases["INC-2"] == "INC-1"  # overlaps the open case
    assert sorted(m.recipient for m in plan.messages if m.kind == "notice") == [
        "u1", "u2", "u3", "u4"]
    assert not [m for m in plan.messages if m.kind == "followup"]  # the case is not over
    step = next(s for s in plan.steps if s.step.name == "rollback_risk_change")
    assert step.done and "rules-v2" in step.outcome
    assert plan.lifecycles["INC-1"].state != "resolved"


def test_a_persons_move_runs_the_phase_of_the_state_entered() -> None:
    """``on_move``: resolving by hand queues a follow-up for every customer told and the
    partner update; acknowledging runs the acknowledge phase; a move not allowed raises."""
    from tapshield.respond.partners import Partner
    from tapshield.respond.responder import Told

    inc = incident()
    inc.end = None
    partner = Partner("card-network", {"channel": "nfc"}, "http://127.0.0.1:9/x", "s")
    r = Responder(directory=directory, partners=[partner])
    lc = Lifecycle.opened(inc.id, T0, "tapshield/monitor", "paged")
    at = T0 + timedelta(minutes=10)
    entries, msgs = r.on_move(inc, lc, "acknowledged", at, "alice", "on it")
    assert [e.kind for e in entries] == ["transition", "step"]
    assert [m.payload["event"] for m in msgs] == ["incident.acknowledged"]
    told = [Told(f"u{i}", f"tok-u{i}", "sms", "zh-CN", "Asia/Shanghai", T0 + timedelta(
        minutes=2)) for i in range(3)]
    entries, msgs = r.on_move(inc, lc, "resolved", at + timedelta(minutes=30), "alice",
                              "fixed", told=told)
    assert entries[0].what == "resolved"
    assert {e.data.get("phase") for e in entries[1:]} == {"resolve"}
    followups = [m for m in msgs if m.kind == "followup"]
    assert sorted(m.recipient for m in followups) == ["u0", "u1", "u2"]
    assert all("恢复" in m.body and not personal_data_in(m.body) for m in followups)
    # the same keys as the automatic path's follow-ups: recorded once whoever is first
    auto = Responder(directory=directory).respond([incident()], events())
    auto_keys = {m.key for m in auto.messages if m.kind == "followup"}
    assert {m.key for m in followups if m.recipient in {"u1", "u2"}} <= auto_keys
    assert [m.payload["event"] for m in msgs if m.kind == "webhook"] == ["incident.resolved"]
    with pytest.raises(TransitionError):
        r.on_move(inc, lc, "mitigating", at, "alice", "too late")
