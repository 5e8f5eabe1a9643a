"""The router: elimination, declines, slowness, regions, probes, staleness,
eligibility and the quick answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.route import ChannelProfile, Probe, Router, RouterConfig, failures_to_eliminate

ALL = frozenset({"nfc", "qr", "debit_card", "wallet"})
QUIET = ChannelProfile(normal_failure_rate=0.002, slow_ms=2_000.0, typical_ms=250.0)


def router(**kw: object) -> Router:
    kw.setdefault("profiles", dict.fromkeys(("nfc", "qr", "debit_card", "wallet"), QUIET))
    return Router(RouterConfig(**kw))  # type: ignore[arg-type]


def fail(r: Router, n: int, *, channel: str = "nfc", region: str = "CN-GD", t0: float = 0.0,
         outcome: str = "failed", code: str | None = "91") -> float:
    t = t0
    for _ in range(n):
        t += 0.1
        r.observe(channel, region, t, outcome, code, 300.0)
    return t


def test_three_technical_failures_eliminate_a_channel_that_almost_never_fails() -> None:
    r = router()
    assert failures_to_eliminate(0.002, 0.5, 1e6) == 3
    t = fail(r, 2)
    assert r.choose("CN-GD", ALL, t).channel == "nfc"
    t = fail(r, 1, t0=t)
    d = r.choose("CN-GD", ALL, t)
    assert d.channel == "qr"
    assert r.is_down("nfc")


def test_timeouts_and_technical_codes_inside_declines_count() -> None:
    r = router()
    t = fail(r, 2, outcome="timeout", code="68")
    t = fail(r, 1, t0=t, outcome="declined", code="96")
    assert r.is_down("nfc")


@pytest.mark.parametrize("code", ["05", "51", "59", "61", "55"])
def test_business_and_risk_declines_never_count_against_a_channel(code: str) -> None:
    r = router()
    fail(r, 500, outcome="declined", code=code)
    assert not r.is_down("nfc")
    assert r.choose("CN-GD", ALL, 100.0).channel == "nfc"


def test_slowness_counts_as_failure() -> None:
    r = router()
    for i in range(3):
        r.observe("nfc", "CN-GD", 1.0 + i, "approved", "00", 5_000.0)
    assert r.is_down("nfc")


def test_a_regional_fault_eliminates_the_channel_only_in_its_region() -> None:
    r = router()
    t = 0.0
    for _ in range(3):
        t += 1.0
        r.observe("nfc", "CN-GD", t, "failed", "91", 200.0)
        for region in ("CN-ZJ", "CN-SH", "CN-BJ", "CN-JS"):
            r.observe("nfc", region, t, "approved", "00", 200.0)
    assert r.choose("CN-GD", ALL, t).channel == "qr"
    assert r.choose("CN-ZJ", ALL, t).channel == "nfc"
    assert r.eliminated() == [("nfc", "CN-GD")]


def test_isolated_failures_spread_over_hours_never_add_up() -> None:
    r = router()
    t = 0.0
    for _ in range(10):
        t += 3_600.0
        r.observe("nfc", "CN-GD", t, "failed", "96", 200.0)
    assert not r.is_down("nfc", "CN-GD")


def test_a_channel_without_traffic_does_not_keep_a_stale_score() -> None:
    r = router()
    t = 0.0
    for _ in range(2):
        t += 0.1
        r.observe("qr", "CN-GD", t, "failed", "96", 200.0)
    fresh = r.snapshot(t)
    qr = next(s for s in fresh if s["channel"] == "qr" and s["region"] is None)
    assert qr["score"] < 0.5
    later = r.snapshot(t + 3_600.0)
    qr = next(s for s in later if s["channel"] == "qr" and s["region"] is None)
    assert qr["score"] > 0.99  # back to the prior: "normal", not "two failures ago"


def test_recovery_is_checked_with_probes_not_customers() -> None:
    r = router(probe_interval_s=1.0)
    t = fail(r, 3)
    assert r.is_down("nfc")
    # While probes fail, customers keep going elsewhere.
    for _ in range(30):
        t += 1.0
        probes = r.due_probes(t)
        assert Probe("nfc", None) in probes
        for p in probes:
            r.observe_probe(p, p.channel != "nfc", t)
        assert r.choose("CN-GD", ALL, t).channel == "qr"
    # The interface comes back: a run of good probes readmits it.
    readmitted_after = None
    for k in range(1, 30):
        t += 1.0
        for p in r.due_probes(t):
            r.observe_probe(p, True, t)
        if not r.is_down("nfc"):
            readmitted_after = k
            break
    assert readmitted_after == 10  # ln(1000) / ln(0.998 / 0.5), rounded up
    assert r.due_probes(t + 0.5) == []


def test_after_readmission_only_taps_that_can_afford_a_failover_ride_the_trial() -> None:
    r = router(probe_interval_s=1.0)
    t = fail(r, 3)
    for _ in range(10):
        t += 1.0
        for p in r.due_probes(t):
            r.observe_probe(p, True, t)
    assert not r.is_down("nfc")
    ride = r.choose("CN-GD", ALL, t, budget_left_ms=15_000.0)
    assert ride.channel == "nfc" and ride.reason.startswith("trial")
    # Too little budget to fail over from a trial channel: take the healthy one.
    assert r.choose("CN-GD", ALL, t, budget_left_ms=2_500.0).channel == "qr"
    # No healthy alternative: the trial channel is still better than nothing.
    assert r.choose("CN-GD", {"nfc"}, t, budget_left_ms=2_500.0).channel == "nfc"
    # Still broken: the fast initial response re-eliminates it after 2 failures.
    t = fail(r, 2, t0=t)
    assert r.is_down("nfc")


def test_an_idle_fallback_is_heartbeat_probed_before_a_customer_needs_it() -> None:
    r = router(heartbeat_after_s=60.0)
    t = 0.0
    for _ in range(200):
        t += 1.0
        r.observe("nfc", "CN-GD", t, "approved", "00", 200.0)
        for p in r.due_probes(t):
            r.observe_probe(p, p.channel != "qr", t)  # qr died while unused
    assert r.is_down("qr")
    t = fail(r, 3, t0=t)
    assert r.choose("CN-GD", ALL, t).channel == "debit_card"


def test_no_eligible_channel_gets_the_quick_answer_with_its_reason() -> None:
    r = router()
    d = r.choose("CN-GD", frozenset({"bank_transfer"}), 0.0)
    assert d.fallback
    assert d.reason == "use another method: no eligible channel for this customer"


def test_every_channel_down_answers_at_once_instead_of_timing_out() -> None:
    r = router()
    t = 0.0
    for ch in ("nfc", "qr", "wallet"):
        t = fail(r, 60, channel=ch, t0=t)
    d = r.choose("CN-GD", frozenset({"nfc", "qr", "wallet"}), t)
    assert d.fallback
    assert d.reason.startswith("use another method: nfc, qr, wallet down in CN-GD")


def test_every_channel_down_but_one_still_mostly_works_is_a_last_resort() -> None:
    r = router()
    t = fail(r, 3, channel="nfc")
    # qr: 3 failures then a majority of successes: eliminated, but the score says ~60 %
    t = fail(r, 3, channel="qr", t0=t)
    d = r.choose("CN-GD", frozenset({"nfc", "qr"}), t)
    assert d.channel in {"nfc", "qr"} and d.last_resort


def test_out_of_budget_is_a_quick_answer() -> None:
    r = router()
    d = r.choose("CN-GD", ALL, 0.0, budget_left_ms=100.0)
    assert d.fallback and "budget" in d.reason


def test_priority_order_is_configurable() -> None:
    r = router(order=("wallet", "qr", "nfc", "debit_card"))
    assert r.choose("CN-GD", ALL, 0.0).channel == "wallet"
    t = fail(r, 3, channel="wallet")
    assert r.choose("CN-GD", ALL, t).channel == "qr"


def test_config_rejects_inconsistent_rates() -> None:
    with pytest.raises(ValueError, match="outage_failure_rate"):
        RouterConfig(outage_failure_rate=0.001)
    with pytest.raises(ValueError, match="repeats"):
        RouterConfig(order=("nfc", "nfc"))


@settings(max_examples=150, deadline=None)
@given(
    eligible=st.frozensets(st.sampled_from(["nfc", "qr", "debit_card", "wallet", "cash"])),
    tried=st.frozensets(st.sampled_from(["nfc", "qr", "debit_card", "wallet"])),
    history=st.lists(
        st.tuples(st.sampled_from(["nfc", "qr", "debit_card", "wallet"]),
                  st.sampled_from(["CN-GD", "CN-ZJ"]),
                  st.sampled_from(["approved", "declined", "failed", "timeout"]),
                  st.sampled_from(["00", "05", "51", "91", "96", "68"])),
        max_size=80,
    ),
    budget=st.floats(0.0, 20_000.0),
)
def test_never_routes_to_an_ineligible_channel_and_retries_only_as_a_last_resort(
    eligible: frozenset[str], tried: frozenset[str],
    history: list[tuple[str, str, str, str]], budget: float,
) -> None:
    r = router()
    t = 0.0
    for ch, region, outcome, code in history:
        t += 0.5
        r.observe(ch, region, t, outcome, code, 300.0)
        for p in r.due_probes(t):
            r.observe_probe(p, False, t)
    d = r.choose("CN-GD", eligible, t, tried=tried, budget_left_ms=budget)
    if d.channel is not None:
        assert d.channel in eligible
        if d.channel in tried:  # only once nothing untried is healthy
            assert d.reason == "retry" and d.last_resort
            assert all(not (c in eligible and c not in tried and not r.is_down(c, "CN-GD"))
                       for c in ("nfc", "qr", "debit_card", "wallet"))
        assert d.deadline_ms is not None and d.deadline_ms <= max(budget, 0.0)
    else:
        assert d.reason.startswith("use another method")


def test_prometheus_shows_which_key_is_out_and_how_close_others_are() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from tapshield.metrics.route import RouterCollector

    r = router()
    t = fail(r, 3)
    reg = CollectorRegistry()
    reg.register(RouterCollector(r, clock=lambda: t))
    text = generate_latest(reg).decode()
    assert 'tapshield_route_key_eliminated{channel="nfc",region=""} 1.0' in text
    assert 'tapshield_route_key_eliminated{channel="nfc",region="CN-GD"} 1.0' in text
    assert "tapshield_route_eliminations_total 2.0" in text
