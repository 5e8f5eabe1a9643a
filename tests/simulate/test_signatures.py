"""Every fault kind and decoy leaves its documented signature in the events,
and the ground truth counts exactly what the events show."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tapshield.events import EventReader
from tapshield.events.changes import read_changes
from tapshield.events.codes import risk_decline_expr, technical_expr
from tapshield.incident import measure, scope_expr
from tapshield.simulate import SimulationResult, simulate
from tapshield.timeutil import parse_rfc3339

from .conftest import write_scenario

FAULTS: list[dict[str, Any]] = [
    {
        "id": "gw",
        "kind": "release",
        "target": "gateway",
        "version": "gw-2026.11.9",
        "start": "+20m",
        "duration": "20m",
        "share": 0.3,
        "failure_rate": 0.5,
    },
    {
        "id": "iface",
        "kind": "interface",
        "channel": "nfc",
        "regions": ["CN-GD", "CN-JS"],
        "start": "+1h50m",
        "duration": "40m",
        "ramp_up": "2m",
        "failure_rate": 0.8,
    },
    {
        "id": "net",
        "kind": "network",
        "region": "CN-SD",
        "carrier": "china_mobile",
        "start": "+2h30m",
        "duration": "40m",
        "timeout_rate": 0.5,
        "latency_factor": 5,
    },
    {
        "id": "risk",
        "kind": "risk_control",
        "segment": {"device_model": "HW-6"},
        "start": "+3h30m",
        "duration": "40m",
        "decline_rate": 0.7,
        "rule_version": "r-bad",
    },
    {
        "id": "fraud",
        "kind": "fraud_attack",
        "pattern": "device_farm",
        "region": "CN-HA",
        "start": "+4h30m",
        "duration": "40m",
        "taps_per_minute": 60,
    },
    {
        "id": "app",
        "kind": "release",
        "target": "app",
        "version": "8.2.0",
        "start": "+5h",
        "duration": "2h",
        "rollout": "90m",
        "rollout_max": 0.6,
        "failure_rate": 0.4,
    },
    {"id": "shop", "kind": "small_merchant", "start": "+5h", "duration": "3h", "decline_rate": 0.8},
    {"id": "maint", "kind": "maintenance", "channel": "wallet", "start": "+7h", "duration": "40m"},
]


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, small_traffic: Path
) -> Iterator[tuple[SimulationResult, pl.DataFrame]]:
    folder = tmp_path_factory.mktemp("kitchen-sink")
    sc = write_scenario(
        folder,
        small_traffic,
        name="kitchen-sink",
        start="2026-11-24T06:00:00+08:00",
        duration="8h",
        scale=1.5,
        faults=FAULTS,
    )
    result = simulate(sc, folder / "out")
    reader = EventReader(result.events_path)
    events = reader.read_all()
    assert reader.stats.rejected == 0
    labels = pl.read_parquet(result.labels_path)  # type: ignore[arg-type]
    yield result, events.join(labels, on="event_id", how="left")


Run = tuple[SimulationResult, pl.DataFrame]


def _truth(result: SimulationResult, fid: str) -> dict[str, Any]:
    return next(f for f in result.truth["faults"] if f["id"] == fid)


def _window(t: dict[str, Any]) -> tuple[datetime, datetime]:
    return parse_rfc3339(t["start"]), parse_rfc3339(t["end"])


def _during(ev: pl.DataFrame, t: dict[str, Any]) -> pl.DataFrame:
    s, e = _window(t)
    return ev.filter((pl.col("ts") >= s) & (pl.col("ts") < e))


def _rate(frame: pl.DataFrame, expr: pl.Expr) -> float:
    return float(frame.select(expr.mean()).item()) if frame.height else 0.0


def _truth_matches_events(
    result: SimulationResult, ev: pl.DataFrame, fid: str, failure: pl.Expr
) -> None:
    """truth.json counts = measure() on the events (caused and exact-window counts)."""
    t = _truth(result, fid)
    s, e = _window(t)
    caused = measure(ev, [], ev["ts"].min(), None, pl.col("fault_id") == fid)  # type: ignore[arg-type]
    assert (
        caused.failed_attempts,
        caused.failed_payments,
        caused.affected_users,
        caused.affected_merchants,
    ) == (t["failed_attempts"], t["failed_payments"], t["affected_users"], t["affected_merchants"])
    whole, _, frac = t["lost_amount"].partition(".")
    assert caused.lost_fen == int(whole) * 100 + int(frac)
    window = measure(ev, t["scope"], s, e, failure)
    assert window.failed_payments == t["window"]["failed_payments"]
    assert window.failed_attempts == t["window"]["failed_attempts"]


def test_interface_fault_hits_only_its_channel_and_regions(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "iface")
    assert t["cause"] == "interface" and t["must_page"] is True
    assert t["scope"] == [
        {"channel": "nfc", "region": "CN-GD"},
        {"channel": "nfc", "region": "CN-JS"},
    ]
    mine = ev.filter(pl.col("fault_id") == "iface")
    assert mine.height > 300
    assert set(mine["channel"].unique()) == {"nfc"}
    assert set(mine["region"].unique()) == {"CN-GD", "CN-JS"}
    assert set(mine["response_code"].unique()) <= {"91", "96", "68"}
    assert set(mine["outcome"].cast(pl.String).unique()) <= {"failed", "timeout"}
    d = _during(ev, t)
    inside = d.filter(scope_expr(t["scope"]))
    other_regions = d.filter(
        (pl.col("channel") == "nfc") & ~pl.col("region").is_in(["CN-GD", "CN-JS"])
    )
    other_channels = d.filter(
        (pl.col("channel") != "nfc") & pl.col("region").is_in(["CN-GD", "CN-JS"])
    )
    assert _rate(inside, technical_expr()) > 0.6
    assert _rate(other_regions, technical_expr()) < 0.03
    assert _rate(other_channels, technical_expr()) < 0.03
    assert t["rates"]["during"] > 0.6 > 0.03 > t["rates"]["before"]
    _truth_matches_events(result, ev, "iface", technical_expr())


def test_network_fault_times_out_every_channel_in_its_region_and_carrier(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "net")
    mine = ev.filter(pl.col("fault_id") == "net")
    assert set(mine["response_code"].unique()) == {"68"}
    assert set(mine["outcome"].cast(pl.String).unique()) == {"timeout"}
    assert set(mine["region"].unique()) == {"CN-SD"}
    assert set(mine["carrier"].unique()) == {"china_mobile"}
    assert mine["channel"].n_unique() >= 3  # every channel there, not one interface
    s, e = _window(t)
    scope = scope_expr(t["scope"])
    ok = pl.col("outcome") == "approved"
    during = ev.filter(scope & ok & (pl.col("ts") >= s + timedelta(minutes=5)) & (pl.col("ts") < e))
    before = ev.filter(scope & ok & (pl.col("ts") < s))
    assert during["latency_ms"].median() > 3 * before["latency_ms"].median()  # type: ignore[operator]
    other = _during(ev, t).filter(
        (pl.col("region") == "CN-SD") & (pl.col("carrier") != "china_mobile")
    )
    assert _rate(other, technical_expr()) < 0.03
    _truth_matches_events(result, ev, "net", technical_expr())


def test_risk_control_declines_its_segment_with_a_rule_change(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "risk")
    mine = ev.filter(pl.col("fault_id") == "risk")
    assert set(mine["response_code"].unique()) == {"59"}
    assert set(mine["risk_decision"].cast(pl.String).unique()) == {"decline"}
    assert set(mine["outcome"].cast(pl.String).unique()) == {"declined"}
    assert set(mine["device_model"].unique()) == {"HW-6"}
    d = _during(ev, t)
    assert _rate(d.filter(pl.col("device_model") == "HW-6"), risk_decline_expr()) > 0.5
    assert _rate(d.filter(pl.col("device_model") != "HW-6"), risk_decline_expr()) < 0.02
    assert _rate(d, technical_expr()) < 0.03  # the path is healthy
    changes = read_changes(result.changes_path).valid
    rules = changes.filter(pl.col("kind") == "rule_change")
    s, e = _window(t)
    assert rules.filter(pl.col("ts") == s)["version"].to_list() == ["r-bad"]
    assert rules.filter(pl.col("ts") == e).height == 1  # the rollback
    _truth_matches_events(result, ev, "risk", risk_decline_expr())


def test_fraud_attack_declines_concentrate_on_new_devices_and_accounts(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "fraud")
    assert t["cause"] == "fraud_attack" and t["scope"] == [{"region": "CN-HA"}]
    s, _ = _window(t)
    seen_before = set(ev.filter(pl.col("ts") < s)["device_id"].unique().to_list())
    d = _during(ev, t).filter(pl.col("region") == "CN-HA")
    declines = d.filter(risk_decline_expr())
    new_device = ~pl.col("device_id").is_in(sorted(seen_before))
    share_new = _rate(declines, new_device)
    assert share_new > 0.8, share_new
    mine = ev.filter(pl.col("fault_id") == "fraud")
    assert mine["device_id"].n_unique() < mine["user_id"].n_unique() / 3  # a device farm
    assert mine.filter(pl.col("device_id").is_in(sorted(seen_before))).height == 0
    users = mine["user_id"].str.strip_prefix("u").cast(pl.Int64)
    assert (users >= 20_000).all()  # accounts opened for the attack
    assert set(mine["response_code"].unique()) == {"59"}
    _truth_matches_events(result, ev, "fraud", risk_decline_expr())


def test_app_release_errors_grow_with_the_rollout_and_deploy_is_logged(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "app")
    s, e = _window(t)
    mine = ev.filter(pl.col("fault_id") == "app")
    assert set(mine["app_version"].unique()) == {"8.2.0"}
    assert set(mine["response_code"].unique()) <= {"96", "06", "68"}
    halves = [(s, s + (e - s) / 4), (s + (e - s) / 2, s + 3 * (e - s) / 4)]
    counts = [mine.filter((pl.col("ts") >= a) & (pl.col("ts") < b)).height for a, b in halves]
    shares = [
        _rate(ev.filter((pl.col("ts") >= a) & (pl.col("ts") < b)), pl.col("app_version") == "8.2.0")
        for a, b in halves
    ]
    assert shares[0] < shares[1] and counts[0] < counts[1]
    assert ev.filter((pl.col("ts") < s) & (pl.col("app_version") == "8.2.0")).height == 0
    changes = read_changes(result.changes_path).valid
    deploy = changes.filter((pl.col("kind") == "deploy") & (pl.col("component") == "app"))
    assert deploy["version"].to_list() == ["8.2.0"] and deploy["ts"].to_list() == [s]
    _truth_matches_events(result, ev, "app", technical_expr())


def test_gateway_release_hits_only_its_server_version(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "gw")
    mine = ev.filter(pl.col("fault_id") == "gw")
    assert set(mine["server_version"].unique()) == {"gw-2026.11.9"}
    d = _during(ev, t)
    share = _rate(d, pl.col("server_version") == "gw-2026.11.9")
    assert 0.25 < share < 0.35
    assert _rate(d.filter(pl.col("server_version") != "gw-2026.11.9"), technical_expr()) < 0.03
    assert (
        ev.filter(
            ~pl.col("ts").is_between(*_window(t), closed="left")
            & (pl.col("server_version") == "gw-2026.11.9")
        ).height
        == 0
    )
    changes = read_changes(result.changes_path).valid
    gw = changes.filter(pl.col("component") == "gateway")
    assert gw["version"].to_list()[0] == "gw-2026.11.9"
    _truth_matches_events(result, ev, "gw", technical_expr())


def test_maintenance_decoy_is_announced_and_does_not_page(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "maint")
    assert t["must_page"] is False and t["cause"] == "maintenance" and t["decoy"] is True
    s, e = _window(t)
    changes = read_changes(result.changes_path).valid
    m = changes.filter(pl.col("kind") == "maintenance")
    assert m.select("component", "ts", "end_ts").rows() == [("channel:wallet", s, e)]
    mine = ev.filter(pl.col("fault_id") == "maint")
    assert set(mine["channel"].unique()) == {"wallet"} and mine.height > 0
    before = ev.filter((pl.col("ts") >= s - (e - s)) & (pl.col("ts") < s))
    assert _rate(_during(ev, t), pl.col("channel") == "wallet") < 0.5 * _rate(
        before, pl.col("channel") == "wallet"
    )  # the app hides the channel


def test_small_merchant_decoy_is_one_merchants_declines(
    run: Run,
) -> None:
    result, ev = run
    t = _truth(result, "shop")
    assert t["must_page"] is False and t["cause"] == "small_merchant"
    (combo,) = t["scope"]
    merchant = combo["merchant_id"]
    mine = ev.filter(pl.col("fault_id") == "shop")
    assert set(mine["merchant_id"].unique()) == {merchant}
    assert set(mine["response_code"].unique()) <= {"05", "57"}
    assert set(mine["outcome"].cast(pl.String).unique()) == {"declined"}
    d = _during(ev, t)
    assert 0 < d.filter(pl.col("merchant_id") == merchant).height < 0.005 * d.height


def test_every_attempt_not_labelled_is_background(
    run: Run,
) -> None:
    _, ev = run
    assert ev["fault_id"].drop_nulls().n_unique() == len(FAULTS)
    assert set(ev["fraud"].drop_nulls().unique()) <= {
        "account_takeover",
        "device_farm",
        "card_testing",
    }
    assert (ev.filter(pl.col("outcome") == "approved")["authorised"]).all()
    assert not ev.filter(pl.col("outcome").is_in(["declined", "failed"]))["authorised"].any()
    timeouts = ev.filter(pl.col("outcome") == "timeout")["authorised"]
    assert 0.15 < timeouts.mean() < 0.45  # type: ignore[operator]


def test_festival_spike_raises_traffic_not_failures(tmp_path: Path, small_traffic: Path) -> None:
    sc = write_scenario(
        tmp_path,
        small_traffic,
        name="festival",
        duration="3h",
        scale=0.25,
        start="2026-11-10T18:00:00+08:00",
        festival={"start": "2026-11-10T19:00:00+08:00", "duration": "2h"},
    )
    result = simulate(sc, tmp_path / "out", labels=False)
    t = _truth(result, "festival")
    assert t["must_page"] is False and t["cause"] == "festival" and t["scope"] == []
    assert t["failed_payments"] == 0
    ev = EventReader(result.events_path).read_all()
    s, e = _window(t)
    during = ev.filter(
        pl.col("ts").is_between(s + timedelta(minutes=30), e - timedelta(minutes=30), closed="left")
    )
    before = ev.filter(pl.col("ts").is_between(s - timedelta(minutes=30), s, closed="left"))
    assert during.height > 6 * before.height
    assert _rate(during, technical_expr()) < 2 * _rate(before, technical_expr()) + 0.005
