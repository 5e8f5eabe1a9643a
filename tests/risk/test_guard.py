"""The misfire guard on the simulator's risk-control scenarios (a window around the fault)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from tapshield.risk.engine import RiskEngine, known_name
from tapshield.risk.guard import Expectation, GuardConfig, MisfireAlert, MisfireGuard
from tapshield.risk.rules import load_rules
from tapshield.simulate import changes_of, generate, load_scenario
from tapshield.simulate.model import Scenario
from tapshield.timeutil import to_rfc3339


def window(name: str, *, before: timedelta = timedelta(minutes=50),
           after: timedelta = timedelta(minutes=20), drop_faults: bool = False,
           kind: str = "risk_control") -> Scenario:
    """The library scenario cut to its risk fault (+- a margin), so a test runs in seconds."""
    sc = load_scenario(name)
    risk = next(f for f in sc.faults if f.kind == kind)
    f_start = sc.at(risk.start)
    start = f_start - before
    faults = []
    for f in sc.faults:
        if f.kind != kind:
            continue
        faults.append(f.model_copy(update={"start": to_rfc3339(sc.at(f.start))}))
    changes = list(sc.changes)
    if drop_faults or kind == "fraud_attack":  # a harmless rule change at that moment
        from tapshield.simulate.model import ChangeRow

        changes.append(ChangeRow.model_validate({
            "ts": to_rfc3339(f_start), "kind": "rule_change", "component": "risk_rules",
            "version": getattr(risk, "rule_version", "rules-x")}))
        faults = faults if kind == "fraud_attack" else []
    return sc.model_copy(update={"start": to_rfc3339(start),
                                 "duration": before + risk.duration + after,
                                 "faults": faults, "changes": changes})


_EVENTS: dict[str, pl.DataFrame] = {}


def replay(sc: Scenario, guard: MisfireGuard) -> list[MisfireAlert]:
    key = sc.model_dump_json()
    if key not in _EVENTS:  # the same window is replayed by several tests
        _EVENTS.clear()
        _EVENTS[key] = pl.concat(list(generate(sc)))
    events = _EVENTS[key]
    minute = events["ts"].dt.truncate("1m")
    out: list[MisfireAlert] = []
    for _, b in events.with_columns(minute.alias("_m")).group_by("_m", maintain_order=True):
        out += guard.observe(b.drop("_m"))
    return out


@pytest.fixture(scope="module")
def misfire() -> Scenario:
    return window("risk-rule-misfire")


def test_guard_names_the_rule_and_the_segment_within_minutes(misfire: Scenario) -> None:
    alerts = replay(misfire, MisfireGuard(changes_of(misfire)))
    assert len(alerts) == 1
    a = alerts[0]
    assert a.version == "rules-2026.11.24-device-spoof"
    assert a.segment == {"device_model": "HW-6"}
    assert a.delay <= timedelta(minutes=5)
    assert a.action == "flag"
    assert a.observed_rate > 0.3 and a.expected_rate < 0.05
    assert "rules-2026.11.24-device-spoof" in a.summary()


def test_auto_rollback_returns_the_engine_to_the_previous_rules(misfire: Scenario) -> None:
    engine = RiskEngine(None)
    old = load_rules({"version": "rules-2026.11.23", "rules": []}, known=known_name())
    new = load_rules({"version": "rules-2026.11.24-device-spoof", "rules": [
        {"id": "spoof", "when": "device_model == 'HW-6'", "action": "decline"}]},
        known=known_name())
    engine.set_rules(old)
    engine.set_rules(new)
    rolled: list[str] = []

    def rollback(alert: MisfireAlert) -> None:
        if alert.version == engine.rules.version:
            rolled.append(engine.rollback_rules().version)

    guard = MisfireGuard(changes_of(misfire), config=GuardConfig(auto_rollback=True),
                         on_rollback=rollback)
    alerts = replay(misfire, guard)
    assert [a.action for a in alerts] == ["rollback"]
    assert rolled == ["rules-2026.11.24-device-spoof"]
    assert engine.rules.version == "rules-2026.11.23"


def test_a_change_whose_backtest_predicted_the_declines_is_not_flagged(
        misfire: Scenario) -> None:
    """The backtest (here: the same rule replayed on another seed's traffic) said the
    rule would decline most HW-6 taps: intended, so no flag."""
    other = misfire.model_copy(update={"seed": misfire.seed + 100})
    ev = pl.concat(list(generate(other))).filter(pl.col("risk_decision").is_not_null())
    start = changes_of(other)["ts"][0]
    during = ev.filter((pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(minutes=80)))
    segs: dict[tuple[str, str], float] = {}
    for dim in GuardConfig().segments:
        g = during.group_by(dim).agg((pl.col("risk_decision") == "decline").mean().alias("r"),
                                     pl.len().alias("n"))
        for value, rate, n in g.iter_rows():
            if value is not None and n >= 50:
                segs[(dim, str(value))] = float(rate)
    exp = Expectation("rules-2026.11.24-device-spoof", None, segs)
    assert segs[("device_model", "HW-6")] > 0.5
    assert replay(misfire, MisfireGuard(changes_of(misfire), expectations=[exp])) == []


def test_a_harmless_rule_change_is_not_flagged() -> None:
    sc = window("risk-model-region", drop_faults=True)
    guard = MisfireGuard(changes_of(sc))
    assert replay(sc, guard) == []
    assert guard._watches, "the change was watched"


def test_an_attack_after_a_harmless_change_is_not_blamed_on_it() -> None:
    """A device farm's declines (many per phone) right after a rule change are the
    attack being blocked, not the change misfiring."""
    sc = window("fraud-device-farm", kind="fraud_attack", after=timedelta(minutes=0))
    assert any(c.version == "rules-x" for c in sc.changes)
    events = pl.concat(list(generate(sc)))
    assert (events["risk_decision"] == "decline").sum() > 300  # the attack is there
    assert replay(sc, MisfireGuard(changes_of(sc))) == []
