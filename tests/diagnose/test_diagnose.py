"""Each cause from a hand-built event set, multi-cause scopes, thin evidence."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from tapshield.diagnose import Diagnosis, DiagnosisRequest, diagnose
from tapshield.incident import Incident, validate_incident
from tests.diagnose.factory import NOW, START, T0, Flow


def run(flow: Flow, signal: str, fired: dict[str, str] | None = None) -> Diagnosis:
    return diagnose(DiagnosisRequest(
        events=flow.events(), changes=flow.changes_frame(), baseline_start=T0,
        start=START, now=NOW, fired_slice=fired or {}, signal=signal,
    ))


def test_interface_outage_of_one_channel() -> None:
    d = run(Flow().technical({"channel": "nfc"}, 0.4, ["91", "96"]), "technical")
    assert d.scope == [{"channel": "nfc"}]
    assert d.cause == "interface"
    assert d.failure == "technical"
    assert d.confidence >= 0.7
    text = " ".join(d.evidence)
    assert "only channel nfc" in text and "91" in text
    assert "carriers up" in text  # cuts across carriers


def test_network_degradation_of_a_carrier_in_a_region() -> None:
    flow = Flow().technical({"carrier": "china_unicom", "region": "CN-GD"}, 0.5, ["68"],
                            timeout=True, latency=5.0)
    d = run(flow, "technical")
    assert d.scope == [{"carrier": "china_unicom", "region": "CN-GD"}]
    assert d.cause == "network"
    assert any("68" in e for e in d.evidence)
    assert any("channels up" in e for e in d.evidence)  # every channel there fails


def test_release_of_a_gateway_version_with_its_deploy() -> None:
    flow = (Flow().technical({"server_version": "gw-2026.10.2"}, 0.3, ["96", "06"])
            .change(START - timedelta(minutes=3), "deploy", "gateway", "gw-2026.10.2"))
    d = run(flow, "technical")
    assert d.scope == [{"server_version": "gw-2026.10.2"}]
    assert d.cause == "release"
    assert any("deploy gateway gw-2026.10.2" in e and "matches the scope" in e
               for e in d.evidence)


def test_risk_rule_misfire_on_a_device_model() -> None:
    flow = (Flow().risk({"device_model": "HW-2"}, 0.5)
            .change(START - timedelta(minutes=10), "rule_change", "risk_rules", "r-2026.11"))
    d = run(flow, "risk_decline")
    assert d.scope == [{"device_model": "HW-2"}]
    assert d.cause == "risk_control"
    assert d.failure == "risk_decline"
    assert any("rule_change risk_rules" in e for e in d.evidence)


def test_fraud_attack_card_testing_at_one_merchant() -> None:
    flow = Flow().attack(taps=400, devices=2, accounts=3, merchant="m77", tiny=True)
    d = run(flow, "risk_decline")
    assert d.cause == "fraud_attack"
    assert d.scope == [{"merchant_id": "m77"}]
    assert any("tiny amounts" in e for e in d.evidence)


def test_fraud_attack_scope_is_where_it_hits_not_the_phones() -> None:
    flow = Flow().attack(taps=500, devices=6, accounts=150, region="CN-SC")
    d = run(flow, "risk_decline")
    assert d.cause == "fraud_attack"
    assert d.scope == [{"region": "CN-SC"}]
    assert any("look alike" in e and "HW-6" in e for e in d.evidence)


def test_decline_signal_made_of_risk_declines_is_treated_as_one() -> None:
    flow = (Flow().risk({"region": "CN-ZJ"}, 0.5)
            .change(START - timedelta(minutes=20), "rule_change", "risk_rules", "m-1"))
    d = run(flow, "decline")
    assert d.failure == "risk_decline"
    assert d.cause == "risk_control"
    assert d.scope == [{"region": "CN-ZJ"}]


def test_several_combinations_in_one_scope() -> None:
    flow = (Flow().technical({"channel": "nfc", "region": "CN-GD"}, 0.6, ["91"], seed=4)
            .technical({"channel": "nfc", "region": "CN-SH"}, 0.6, ["91"], seed=5))
    d = run(flow, "technical")
    assert sorted(d.scope, key=str) == sorted(
        [{"channel": "nfc", "region": "CN-GD"}, {"channel": "nfc", "region": "CN-SH"}], key=str)
    assert d.cause == "interface"


def test_overlapping_fault_already_running_is_not_blamed() -> None:
    """A carrier outage ongoing for 20 minutes is the baseline for a new QR wave."""
    flow = (Flow().technical({"carrier": "china_telecom", "region": "CN-BJ"}, 0.5, ["68"],
                             timeout=True, since=START - timedelta(minutes=20), seed=8)
            .technical({"channel": "qr"}, 0.4, ["91", "96"], seed=9))
    d = run(flow, "technical")
    assert d.scope == [{"channel": "qr"}]
    assert d.cause == "interface"


def test_two_faults_starting_together_are_both_in_scope() -> None:
    flow = (Flow().technical({"channel": "wallet"}, 0.5, ["91"], seed=10)
            .technical({"region": "CN-SC", "carrier": "china_unicom"}, 0.6, ["68"],
                       timeout=True, seed=11))
    d = run(flow, "technical")
    key = lambda c: sorted(c.items())  # noqa: E731
    assert sorted(d.scope, key=key) == sorted(
        [{"channel": "wallet"}, {"region": "CN-SC", "carrier": "china_unicom"}], key=key)


def test_thin_evidence_is_unknown_not_a_guess() -> None:
    flow = Flow(rate_per_min=200).technical({"channel": "wallet", "region": "CN-SC"}, 0.2,
                                            ["96"])
    d = run(flow, "technical", fired={"channel": "wallet"})
    assert d.cause == "unknown"
    assert d.confidence < 0.9
    assert any("unknown" in e for e in d.evidence)


def test_quiet_flow_localises_nothing_and_names_no_cause() -> None:
    d = run(Flow(), "technical", fired={"region": "CN-BJ"})
    assert d.cause == "unknown"
    assert d.scope == [{"region": "CN-BJ"}]  # falls back to where monitoring fired


def test_whole_flow_down_is_scope_everything() -> None:
    d = run(Flow().technical({}, 0.5, ["91", "96"]), "technical")
    assert d.scope == []


def test_traffic_drop_of_a_dead_channel() -> None:
    flow = Flow()
    dead = (pl.col("ts") >= START) & (pl.col("channel") == "wallet")
    flow.frame = flow.frame.filter(~dead)
    d = run(flow, "traffic_drop")
    assert d.scope == [{"channel": "wallet"}]
    assert d.cause == "interface"


def test_empty_window() -> None:
    d = diagnose(DiagnosisRequest(
        events=Flow().events().head(0), changes=Flow().changes_frame(), baseline_start=T0,
        start=START, now=NOW, fired_slice={"channel": "qr"}, signal="technical"))
    assert d.cause == "unknown" and d.scope == [{"channel": "qr"}]


def test_diagnosis_fits_the_incident_contract() -> None:
    d = run(Flow().technical({"channel": "qr"}, 0.4, ["96"]), "technical")
    inc = Incident(id="i1", start=START, detected_at=NOW, level=2, scope=d.scope,
                   cause=d.cause, confidence=d.confidence, evidence=d.evidence)
    validate_incident(inc.to_dict())
