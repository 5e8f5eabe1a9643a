"""Replays against an explicit fault model: what failover saves, who charges
twice, and that the baselines behave as described."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.route import (
    POLICIES,
    ChannelProfile,
    RouterConfig,
    compare,
    replay,
    routed_events,
    saved,
    taps_from_events,
)
from tapshield.route.baselines import DecisionEngine, HyperswitchRule, Resilience4jBreaker

from .toyworld import Fault, ToyWorld, make_taps

PROFILES = {
    "nfc": ChannelProfile(0.004, slow_ms=1_500.0, typical_ms=250.0),
    "qr": ChannelProfile(0.007, slow_ms=2_000.0, typical_ms=400.0),
    "debit_card": ChannelProfile(0.007, slow_ms=2_500.0, typical_ms=600.0),
    "wallet": ChannelProfile(0.004, slow_ms=1_500.0, typical_ms=300.0),
}
CFG = RouterConfig(profiles=PROFILES, budget_ms=15_000.0)


@pytest.fixture(scope="module")
def outage() -> dict[str, object]:
    # NFC dies for 20 minutes; a third of its failures are timeouts, and the
    # issuer authorised 40 % of those (the answer was lost).
    world = ToyWorld(
        faults=[Fault("nfc", 600.0, 1_800.0, failure=1.0, timeout_share=0.35,
                      authorised_share=0.4)],
        timeout_ms=8_000.0,
    )
    taps = make_taps(6_000, 2_400.0)
    return {"world": world, "taps": taps,
            "results": compare(taps, world, POLICIES, seed=3, config=CFG)}


def test_failover_saves_payments_and_tapshield_is_near_the_oracle(outage: dict) -> None:
    res = outage["results"]
    assert res["no_failover"].failed > 1_000
    assert saved(res) > 0.95 * res["no_failover"].failed
    assert res["tapshield"].failed <= 2 * res["oracle"].failed + 5
    best_baseline = min(res[p].failed for p in ("decision_engine", "hyperswitch",
                                                "resilience4j"))
    assert res["tapshield"].failed <= best_baseline


def test_blind_retries_charge_twice_and_tapshield_never_does(outage: dict) -> None:
    res = outage["results"]
    assert res["hyperswitch"].double_authorisations > 0  # 20 % of taps still sent to nfc
    assert res["tapshield"].double_authorisations == 0
    assert res["oracle"].double_authorisations == 0
    assert res["tapshield"].unconfirmed_charges == 0


def test_every_tap_is_accounted_for(outage: dict) -> None:
    for r in outage["results"].values():
        assert r.approved + r.declined + r.failed == r.taps == 6_000
        assert r.attempts >= r.taps - r.quick_answers


def test_replay_is_deterministic_and_order_independent(outage: dict) -> None:
    taps: pl.DataFrame = outage["taps"]
    a = replay(taps, outage["world"], "tapshield", seed=3, config=CFG)
    b = replay(taps.sample(fraction=1.0, shuffle=True, seed=9), outage["world"], "tapshield",
               seed=3, config=CFG)
    assert a.to_dict() == b.to_dict() == outage["results"]["tapshield"].to_dict()


def test_replay_never_routes_an_ineligible_channel() -> None:
    world = ToyWorld(faults=[Fault("nfc", 0.0, 600.0)], no_debit_share=0.5, nfc_only_share=0.2)
    taps = make_taps(1_500, 600.0, seed=5)
    r = replay(taps, world, "tapshield", seed=1, config=CFG, record=True)
    assert r.attempt_table is not None
    elig = world.eligible(taps["user_id"].unique())
    routed = r.attempt_table.join(taps.select("payment_id", "user_id"), on="payment_id")
    bad = routed.join(elig, on=["user_id", "channel"], how="anti")
    assert bad.height == 0
    # NFC-only customers with NFC dead get the quick answer, not a 15 s wait.
    assert r.quick_answers > 0
    assert r.tap_table is not None
    quick = r.tap_table.filter(pl.col("attempts") == 0)
    assert quick["duration_ms"].max() == 0.0
    assert quick["reason"].str.starts_with("use another method").all()


def test_taps_from_events_keeps_the_first_attempt_of_each_payment() -> None:
    taps = make_taps(10, 10.0)
    retry = taps.head(3).with_columns(pl.col("event_id") + "-retry",
                                      pl.col("ts") + pl.duration(seconds=20))
    got = taps_from_events(pl.concat([retry, taps]))
    assert got.height == 10
    assert set(got["event_id"]) == set(taps["event_id"])


def test_decision_engine_demotes_after_21_failures_without_traffic_recovery() -> None:
    de = DecisionEngine()
    elig = {"nfc", "qr"}
    for n in range(1, 30):
        de.observe("nfc", "CN-GD", float(n), "failed", "91")
        if de.choose("CN-GD", elig, float(n)).channel == "qr":
            break
    assert n == 21  # 0.95^21 < 0.35 <= 0.95^20
    assert de.choose("CN-GD", elig, 10_000.0).channel == "qr"  # no decay: still demoted
    de2 = DecisionEngine()
    for n in range(30):
        de2.observe("nfc", "CN-GD", float(n), "declined", "51")  # declines count, too
    assert de2.choose("CN-GD", elig, 31.0).channel == "qr"


def test_hyperswitch_eliminates_after_5_failures_in_60s_and_explores_20_percent() -> None:
    hs = HyperswitchRule(seed=1)
    for t in (0.0, 10.0, 20.0, 30.0):
        hs.observe("nfc", "CN-GD", t, "failed", "96")
    assert hs.choose("CN-GD", {"nfc", "qr"}, 31.0).channel == "nfc"
    hs.observe("nfc", "CN-GD", 40.0, "failed", "96")
    picks = [hs.choose("CN-GD", {"nfc", "qr"}, 41.0).channel for _ in range(5_000)]
    assert 0.17 < picks.count("nfc") / 5_000 < 0.23
    # The window slides: 60 s after the first failures it is back.
    assert hs.choose("CN-GD", {"nfc", "qr"}, 61.0).channel == "nfc"


def test_resilience4j_opens_at_half_failures_over_100_calls_and_half_opens_after_60s() -> None:
    cb = Resilience4jBreaker()
    elig = {"nfc", "qr"}
    for i in range(99):
        cb.observe("nfc", "CN-GD", float(i), "failed" if i % 2 else "approved", "96")
    assert cb.choose("CN-GD", elig, 99.0).channel == "nfc"  # fewer than 100 calls
    cb.observe("nfc", "CN-GD", 99.5, "failed", "96")  # 100 calls, 50 % failed
    assert cb.choose("CN-GD", elig, 100.0).channel == "qr"
    assert cb.choose("CN-GD", elig, 159.0).channel == "qr"
    # Half-open: 10 permitted calls, the rest rejected until they complete.
    got = [cb.choose("CN-GD", elig, 160.0).channel for _ in range(12)]
    assert got[:10] == ["nfc"] * 10 and got[10:] == ["qr", "qr"]
    for _ in range(10):
        cb.observe("nfc", "CN-GD", 161.0, "approved", "00")
    assert cb.choose("CN-GD", elig, 162.0).channel == "nfc"


def test_routed_events_are_canonical_and_show_the_failovers() -> None:
    from tapshield.events.schema import CANONICAL_SCHEMA

    world = ToyWorld(faults=[Fault("nfc", 0.0, 300.0)])
    taps = make_taps(400, 300.0, seed=8)
    r = replay(taps, world, "tapshield", seed=2, config=CFG, record=True)
    ev = routed_events(r, taps)
    assert ev.schema == pl.Schema(CANONICAL_SCHEMA)
    assert ev.height == r.attempts
    assert ev["event_id"].is_unique().all()
    per_tap = ev.group_by("payment_id").agg(
        pl.col("outcome").cast(pl.String).eq("approved").any().alias("ok"))
    assert per_tap["ok"].sum() == r.approved


@settings(max_examples=8, deadline=None)
@given(
    timeout_share=st.floats(0.0, 1.0),
    authorised_share=st.floats(0.0, 1.0),
    failure=st.floats(0.2, 1.0),
    timeout_ms=st.sampled_from([3_000.0, 8_000.0, 20_000.0]),
    regional=st.booleans(),
    seed=st.integers(0, 1_000),
)
def test_replayed_tapshield_never_double_authorises(
    timeout_share: float, authorised_share: float, failure: float, timeout_ms: float,
    regional: bool, seed: int,
) -> None:
    world = ToyWorld(
        faults=[Fault("nfc", 60.0, 400.0, failure=failure, timeout_share=timeout_share,
                      authorised_share=authorised_share,
                      regions=("CN-GD", "CN-ZJ") if regional else None),
                Fault("qr", 200.0, 500.0, failure=failure / 2, timeout_share=timeout_share,
                      authorised_share=authorised_share)],
        timeout_ms=timeout_ms, base_authorised_share=authorised_share,
    )
    taps = make_taps(800, 600.0, seed=seed)
    r = replay(taps, world, "tapshield", seed=seed, config=CFG)
    assert r.double_authorisations == 0
    assert r.unconfirmed_charges == 0
    assert r.approved + r.declined + r.failed == r.taps


def test_a_replay_of_taps_with_gaps_accounts_for_every_tap(outage: dict) -> None:
    """``reroute --around-faults`` replays only the minutes around each fault: a
    tap still open when the next kept window starts, windows later, must still
    find its window (it was dropped too early: KeyError)."""
    taps: pl.DataFrame = outage["taps"]
    t = taps["ts"].dt.epoch("us")
    t0 = int(t.min())  # type: ignore[arg-type]
    kept = taps.filter((t < t0 + 300_000_000) | (t > t0 + 1_500_000_000))
    r = replay(kept, outage["world"], "tapshield", seed=3, config=CFG, window_s=60.0)
    assert r.approved + r.declined + r.failed == r.taps == kept.height
