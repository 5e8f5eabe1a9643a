"""The drill scorecard on hand-made incidents and truth: every rule, one case each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from tapshield.cli import app
from tapshield.drill import assign, compatible, scope_f1, score
from tapshield.incident import Incident, write_incidents
from tapshield.monitor.alerts import AlertEvent
from tapshield.simulate.truth import FaultTruth, Truth

T0 = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def fault(
    fid: str,
    cause: str,
    scope: list[dict[str, str]],
    start: float,
    end: float,
    must_page: bool = True,
    failed: int = 100,
) -> FaultTruth:
    return FaultTruth(
        id=fid,
        cause=cause,
        must_page=must_page,
        scope=scope,
        start=minutes(start),
        end=minutes(end),
        failed_attempts=3 * failed,
        failed_payments=failed,
        affected_users=failed,
        affected_merchants=10,
        lost_fen=100 * failed,
        decoy=not must_page,
        window_failed_payments=failed + 5,
    )


def incident(
    iid: str,
    start: float,
    detected: float,
    scope: list[dict[str, str]],
    cause: str,
    level: int = 2,
    end: float | None = None,
    failed: int = 90,
) -> Incident:
    return Incident(
        id=iid,
        start=minutes(start),
        detected_at=minutes(detected),
        level=level,
        end=minutes(end) if end is not None else None,
        scope=scope,
        cause=cause,
        failed_payments=failed,
    )


NFC = [{"channel": "nfc"}]
TRUTH = Truth(
    scenario="hand-made",
    start=T0,
    end=minutes(600),
    faults=[
        fault("nfc", "interface", NFC, 60, 100),
        fault("gd", "network", [{"region": "CN-GD"}], 200, 260),
        fault("maint", "maintenance", [{"channel": "wallet"}], 300, 360, must_page=False),
        fault("shop", "small_merchant", [{"merchant_id": "m7"}], 400, 500, must_page=False),
    ],
)


def test_scope_f1_is_exact_combinations() -> None:
    assert scope_f1(NFC, NFC) == 1.0
    assert scope_f1([], []) == 1.0
    assert scope_f1([{"channel": "nfc", "region": "CN-GD"}], NFC) == 0.0
    both = [{"channel": "nfc", "region": "CN-GD"}, {"channel": "nfc", "region": "CN-GX"}]
    assert scope_f1(both[:1], both) == 2 / 3


def test_compatible_scopes() -> None:
    assert compatible([], NFC) and compatible(NFC, [])
    assert compatible([{"channel": "nfc", "region": "CN-GD"}], NFC)
    assert compatible([{"region": "CN-GD"}], NFC)  # different dimensions can overlap
    assert not compatible([{"channel": "qr"}], NFC)


def test_perfect_response() -> None:
    incs = [
        incident("i1", 61, 63, NFC, "interface", failed=100),
        incident("i2", 201, 205, [{"region": "CN-GD"}], "network"),
    ]
    card = score(incs, TRUTH)
    s = card.summary()
    assert s["detected"] == 2 and s["detection_rate"] == 1.0
    assert s["median_delay_s"] == (180 + 300) / 2
    assert s["cause_right"] == 2 and s["scope_right"] == 2 and s["mean_scope_f1"] == 1.0
    assert s["false_pages"] == 0 and s["decoys_paged"] == 0
    nfc = card.faults[0]
    assert nfc.failed_payments_reported == 100 and nfc.failed_payments_true == 100
    assert nfc.failed_payments_window == 105


def test_missed_wrong_cause_wrong_scope_and_false_pages() -> None:
    incs = [
        incident("late-notice", 70, 72, NFC, "interface", level=4),  # a notice does not page
        incident("wrong", 199, 230, [{"region": "CN-GD", "carrier": "china_mobile"}], "interface"),
        incident("maint-page", 301, 303, [{"channel": "wallet"}], "interface", level=3),
        incident("nothing", 520, 521, [{"channel": "qr"}], "unknown", level=2),
        incident("quiet-shop", 410, 415, [{"merchant_id": "m7"}], "unknown", level=4),
    ]
    card = score(incs, TRUTH)
    by = {f.fault_id: f for f in card.faults}
    assert not by["nfc"].detected and by["nfc"].noticed
    gd = by["gd"]
    assert gd.detected and gd.cause_right is False and gd.scope_right is False
    assert gd.scope_f1 == 0.0 and gd.delay_s == 30 * 60
    assert by["maint"].detected  # a decoy that drew a page
    assert not by["shop"].detected and by["shop"].noticed
    assert card.false_pages == ["maint-page", "nothing"]
    s = card.summary()
    assert s["decoys_paged"] == 1 and s["detection_rate"] == 0.5


def test_overlapping_faults_each_get_their_incident_and_duplicates_are_listed() -> None:
    truth = Truth(
        scenario="overlap",
        start=T0,
        end=minutes(300),
        faults=[
            fault("gd", "network", [{"region": "CN-GD"}], 100, 180),
            fault("qr", "interface", [{"channel": "qr"}], 120, 160),
        ],
    )
    incs = [
        incident("a", 101, 104, [{"region": "CN-GD"}], "network"),
        incident("b", 121, 123, [{"channel": "qr"}], "interface", end=135),
        incident("b2", 140, 141, [{"channel": "qr"}], "interface", failed=30),
    ]
    assert assign(incs, truth) == {"a": "gd", "b": "qr", "b2": "qr"}
    card = score(incs, truth)
    qr = card.faults[1]
    assert qr.incident_ids == ["b", "b2"] and qr.duplicates == 1
    assert qr.failed_payments_reported == 120
    assert card.summary()["false_pages"] == 0


def test_an_incident_raised_before_the_fault_is_not_its_detection() -> None:
    before = incident("before", 50, 55, NFC, "interface")  # open, detected 5 min early
    assert assign([before], TRUTH)["before"] is None
    card = score([before], TRUTH)
    assert not card.faults[0].detected and card.false_pages == ["before"]


def test_time_slack_and_open_incidents() -> None:
    early = incident("early", 56, 62, NFC, "interface")  # change point 4 min before the truth
    assert assign([early], TRUTH)["early"] == "nfc"
    too_early = incident("too-early", 20, 30, NFC, "interface", end=40)
    assert assign([too_early], TRUTH)["too-early"] is None
    still_open = incident("open", 95, 96, NFC, "interface")
    assert assign([still_open], TRUTH)["open"] == "nfc"


def test_alert_pages_that_match_nothing_are_false() -> None:
    def alert(aid: str, ts: float, sl: dict[str, str], notify: bool = True) -> AlertEvent:
        return AlertEvent(
            alert_id=aid,
            ts=minutes(ts),
            state="firing",
            level=2,
            started_at=minutes(ts - 2),
            slice=sl,
            signal="technical",
            notify=notify,
        )

    alerts = [
        alert("ok", 62, {"channel": "nfc"}),
        alert("decoy", 310, {"channel": "wallet"}),
        alert("silent", 311, {"channel": "wallet"}, notify=False),
    ]
    card = score([], TRUTH, alerts=alerts)
    assert card.false_alert_pages == ["decoy"]


def test_saved_by_failover_is_reported_when_given() -> None:
    card = score([incident("i1", 61, 63, NFC, "interface")], TRUTH, saved_by_failover={"nfc": 80})
    assert card.faults[0].saved_by_failover == 80
    assert card.summary()["saved_by_failover"] == 80
    assert score([], TRUTH).summary()["saved_by_failover"] is None


def test_drill_cli_grades_existing_output(tmp_path: Path) -> None:
    truth = {
        "scenario": "hand-made",
        "start": "2026-11-27T12:00:00.000+08:00",
        "end": "2026-11-27T22:00:00.000+08:00",
        "faults": [
            {
                "id": "nfc",
                "cause": "interface",
                "must_page": True,
                "scope": [{"channel": "nfc"}],
                "start": "2026-11-27T13:00:00.000+08:00",
                "end": "2026-11-27T13:40:00.000+08:00",
                "failed_attempts": 30,
                "failed_payments": 10,
                "affected_users": 10,
                "affected_merchants": 5,
                "lost_amount": "100.00",
                "window": {"failed_payments": 12},
            }
        ],
    }
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    inc = Incident(
        id="i1",
        start=minutes(60),
        detected_at=minutes(62),
        level=1,
        scope=NFC,
        cause="interface",
        failed_payments=11,
    )
    write_incidents(tmp_path / "incidents.json", [inc])
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "drill",
            "--truth",
            str(tmp_path / "truth.json"),
            "--incidents",
            str(tmp_path / "incidents.json"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["summary"]["detected"] == 1 and data["faults"][0]["delay_s"] == 120
    res = runner.invoke(
        app,
        [
            "drill",
            "--truth",
            str(tmp_path / "truth.json"),
            "--incidents",
            str(tmp_path / "incidents.json"),
        ],
    )
    assert res.exit_code == 0 and "drill scorecard" in res.output
    res = runner.invoke(app, ["drill", "--truth", str(tmp_path / "truth.json")])
    assert res.exit_code == 2


def test_incidents_overlapping_in_time_and_scope_are_counted_once() -> None:
    """A region's attack and the notices on the same traffic: the paging incident's count."""
    truth = Truth(scenario="nested", start=T0, end=minutes(300),
                  faults=[fault("farm", "fraud_attack", [{"region": "CN-GD"}], 100, 160)])
    incs = [
        incident("region", 100, 101, [{"region": "CN-GD"}], "fraud_attack", level=1,
                 end=160, failed=100),
        incident("shop", 110, 111, [{"region": "CN-GD", "merchant_id": "m1"}], "fraud_attack",
                 level=4, end=120, failed=40),
        incident("again", 130, 131, [{"region": "CN-GD"}, {"region": "CN-FJ"}],
                 "fraud_attack", level=4, end=150, failed=60),
        incident("later", 165, 166, [{"region": "CN-GD", "merchant_id": "m2"}],
                 "fraud_attack", level=4, end=170, failed=7),
    ]
    assert set(assign(incs, truth).values()) == {"farm"}
    farm = score(incs, truth).faults[0]
    assert farm.failed_payments_reported == 100 + 7


def test_incidents_of_another_cause_are_not_the_faults_failed_payments() -> None:
    truth = Truth(scenario="other", start=T0, end=minutes(300),
                  faults=[fault("gd", "network", [{"region": "CN-GD"}], 100, 160)])
    incs = [
        incident("net", 100, 101, [{"region": "CN-GD"}], "network", end=130, failed=80),
        incident("later", 140, 141, [{"region": "CN-GD"}], "unknown", level=4, end=160,
                 failed=20),
        incident("fraud", 150, 151, [{"merchant_id": "m1"}], "fraud_attack", level=4,
                 end=155, failed=9),
    ]
    gd = score(incs, truth).faults[0]
    assert gd.failed_payments_reported == 100
