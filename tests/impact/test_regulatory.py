"""Regulatory classifiers: one case per criterion on each side of every threshold."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from helpers import T0, Merchant, Outage, incident, regular_events

from tapshield.errors import ContractError
from tapshield.impact import assess, load_regulatory
from tapshield.impact.regulatory import IncidentFacts, classify_dora, classify_prc

REG = load_regulatory()
QUIET = IncidentFacts(
    incident_id="x", duration=timedelta(hours=1), downtime=timedelta(minutes=30),
    clients_affected=10, clients_total=10_000, transactions_affected=10,
    transactions_affected_fen=1_000, daily_transactions=10_000, daily_value_fen=100_000_000,
    net_lost_fen=0, regions=["CN-GD"],
)


def dora_met(f: IncidentFacts) -> dict[str, bool]:
    d = classify_dora(f, REG)
    return {p["name"]: p["met"] for c in d["criteria"] for p in c["parts"]}


def test_quiet_incident_meets_nothing() -> None:
    assert not any(dora_met(QUIET).values())
    assert classify_dora(QUIET, REG)["major"] is False


@pytest.mark.parametrize(("name", "below", "above"), [
    ("clients_share", {"clients_affected": 1_000}, {"clients_affected": 1_001}),
    ("clients_count", {"clients_affected": 100_000, "clients_total": 10**7},
     {"clients_affected": 100_001, "clients_total": 10**7}),
    ("counterparts_share", {"counterparts_share": Decimal("0.30")},
     {"counterparts_share": Decimal("0.31")}),
    ("transactions_count_share", {"transactions_affected": 1_000},
     {"transactions_affected": 1_001}),
    ("transactions_value_share", {"transactions_affected_fen": 10_000_000},
     {"transactions_affected_fen": 10_000_001}),
    ("duration_hours", {"duration": timedelta(hours=24)},
     {"duration": timedelta(hours=24, seconds=1)}),
    ("downtime_hours", {"downtime": timedelta(hours=2)},
     {"downtime": timedelta(hours=2, minutes=5)}),
    ("member_states", {"regions": ["DE-BY", "DE-BE", "CN-GD"]}, {"regions": ["DE-BY", "FR-75"]}),
    ("data_losses", {"data_losses": False}, {"data_losses": True}),
    ("reputational_impact", {"reputational_impact": False}, {"reputational_impact": True}),
    # EUR 100,000 at 7.80 CNY/EUR is 780,000.00 yuan of costs and losses
    ("economic_eur", {"other_costs_fen": 78_000_000}, {"other_costs_fen": 78_000_001}),
    ("economic_eur", {"net_lost_fen": 13_000_000_000}, {"net_lost_fen": 13_000_000_100}),
])
def test_dora_threshold_each_side(name: str, below: dict, above: dict) -> None:  # type: ignore[type-arg]
    assert dora_met(replace(QUIET, **below))[name] is False
    met = dora_met(replace(QUIET, **above))
    assert met[name] is True
    assert sum(met.values()) == 1  # only that criterion moved


def test_dora_major_rule() -> None:
    one = replace(QUIET, data_losses=True)
    two = replace(one, duration=timedelta(hours=25))
    assert classify_dora(one, REG)["major"] is False
    d = classify_dora(two, REG)
    assert d["major"] is True and d["criteria_met"] == 2
    assert classify_dora(replace(two, critical_service=False), REG)["major"] is False
    # a malicious unauthorised access that may lose data is major on its own
    assert classify_dora(replace(QUIET, malicious_access=True), REG)["major"] is True


def prc(**kw: object) -> str:
    return str(classify_prc(replace(QUIET, **kw), REG)["grade"])  # type: ignore[arg-type]


@pytest.mark.parametrize(("facts", "grade"), [
    ({"province_minutes": {"CN-GD": (180, 180), "CN-JS": (200, 180)}}, "especially_major"),
    ({"province_minutes": {"CN-GD": (180, 175), "CN-JS": (200, 180)}}, "major"),
    ({"province_minutes": {"CN-GD": (360, 360)}}, "especially_major"),
    ({"province_minutes": {"CN-GD": (400, 355)}}, "major"),
    ({"province_minutes": {"CN-GD": (60, 60), "CN-JS": (60, 60)}}, "major"),
    ({"province_minutes": {"CN-GD": (60, 55), "CN-JS": (60, 60)}}, "relatively_major"),
    ({"province_minutes": {"CN-GD": (180, 180)}}, "major"),
    ({"province_minutes": {"CN-GD": (180, 175)}}, "relatively_major"),
    ({"clients_affected": 1_000_000}, "major"),
    ({"clients_affected": 999_999}, "relatively_major"),
    ({"clients_affected": 100_000}, "relatively_major"),
    ({"clients_affected": 99_999}, "general"),
    ({"net_lost_fen": 1_000_000_000}, "relatively_major"),
    ({"net_lost_fen": 999_999_999}, "general"),
    ({"province_minutes": {"CN-GD": (30, 0)}}, "general"),
    ({"province_minutes": {"CN-GD": (25, 0)}}, "below_reporting"),
    ({"clients_affected": 9_999}, "below_reporting"),
])
def test_prc_grades_each_side(facts: dict, grade: str) -> None:  # type: ignore[type-arg]
    assert prc(**facts) == grade


def test_prc_criteria_carry_their_figures() -> None:
    r = classify_prc(replace(QUIET, province_minutes={"CN-GD": (200, 190), "CN-JS": (190, 185)}),
                     REG)
    top = r["grades"][0]["criteria"][0]
    assert top["met"] is True and top["provinces"] == ["CN-GD", "CN-JS"]
    assert "PBOC" in top["source"]
    assert r["provinces"][0] == {"region": "CN-GD", "interrupted_minutes": 200,
                                 "peak_interrupted_minutes": 190}


def test_measured_from_events_two_provinces_in_peak_hours() -> None:
    start = T0 + 29 * timedelta(days=1) + timedelta(hours=10, minutes=55)
    o = Outage(start=start, end=start + timedelta(hours=3, minutes=10))
    ms = [Merchant("m1", taps_per_day={"nfc": 200, "qr": 50}),
          Merchant("m2", region="CN-JS", taps_per_day={"nfc": 200, "qr": 50})]
    ev = regular_events(ms, days=30, outages=[o])
    r = assess(ev, [incident(o.start, o.end, [{"channel": "nfc"}])])
    i = r.incidents[0]
    assert {p["region"]: p["peak_interrupted_minutes"] for p in i.prc["provinces"]} == {
        "CN-GD": 180, "CN-JS": 180}
    assert i.prc["grade"] == "especially_major"
    assert i.facts.downtime >= timedelta(hours=3)
    dora = {c["name"]: c["met"] for c in i.dora["criteria"]}
    assert dora["duration_and_downtime"] is True  # 3 h of downtime > 2 h
    assert dora["clients_counterparts_transactions"] is True
    assert i.dora["major"] is True


def test_operator_inputs_come_from_the_incident() -> None:
    start = T0 + 29 * timedelta(days=1) + timedelta(hours=10)
    o = Outage(start=start, end=start + timedelta(hours=1))
    ev = regular_events([Merchant("m1")], days=30, outages=[o])
    inc = incident(o.start, o.end, [{"channel": "nfc"}])
    inc.extra["regulatory_inputs"] = {"critical_service": False, "data_losses": True,
                                      "costs_cny": "900000", "clients_total": 5}
    r = assess(ev, [inc])
    d = r.incidents[0].dora
    assert d["critical_service"]["value"] is False and d["major"] is False
    met = {c["name"]: c["met"] for c in d["criteria"]}
    assert met["data_losses"] and met["economic_impact"]
    inc.extra["regulatory_inputs"] = {"typo": 1}
    with pytest.raises(ContractError, match="unknown regulatory_inputs"):
        assess(ev, [inc])


def test_threshold_file_errors(tmp_path: Path) -> None:
    text = resources.files("tapshield.impact").joinpath("regulatory.yaml").read_text()
    bad = tmp_path / "r.yaml"
    bad.write_text(text.replace("  economic_eur:", "  economic_euro:"))
    with pytest.raises(ContractError, match=r"dora\.economic_eur is missing"):
        load_regulatory(bad)
    bad.write_text(text.replace('"07:00-09:30"', '"7am-9am"'))
    with pytest.raises(ContractError, match="peak hour span"):
        load_regulatory(bad)
    bad.write_text(text.replace("kind: affected_users, count: 1000000",
                                "kind: users, count: 1000000"))
    with pytest.raises(ContractError, match="kind must be one of"):
        load_regulatory(bad)
    # an institution's stricter copy is used as given
    strict = tmp_path / "s.yaml"
    strict.write_text(text.replace("{kind: affected_users, count: 10000, source: \"institution\"}",
                                   "{kind: affected_users, count: 10, source: \"institution\"}"))
    assert str(classify_prc(QUIET, load_regulatory(strict))["grade"]) == "general"
