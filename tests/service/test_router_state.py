"""Router health survives a checkpoint: export, restore, decide the same."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.route import ChannelProfile, Router, RouterConfig

ALL = frozenset({"nfc", "qr", "debit_card", "wallet"})
QUIET = ChannelProfile(normal_failure_rate=0.002, slow_ms=2_000.0, typical_ms=250.0)


def config() -> RouterConfig:
    return RouterConfig(profiles=dict.fromkeys(ALL, QUIET))


def test_an_eliminated_channel_is_still_eliminated_after_restore() -> None:
    r = Router(config())
    for t in (1.0, 1.1, 1.2):
        r.observe("nfc", "CN-GD", t, "failed", "91", 200.0)
    assert r.is_down("nfc", "CN-GD")
    doc = json.loads(json.dumps(r.export_state()))  # through JSON, as stored
    fresh = Router(config())
    assert fresh.restore_state(doc) == len(r.snapshot(2.0))
    assert fresh.is_down("nfc", "CN-GD")
    assert fresh.eliminated() == r.eliminated()
    assert fresh.choose("CN-GD", ALL, 2.0).channel == "qr"
    assert [p.channel for p in fresh.due_probes(3.0)] == [p.channel for p in r.due_probes(3.0)]


def test_restore_drops_channels_no_longer_routed() -> None:
    r = Router(config())
    r.observe("wallet", "CN-GD", 1.0, "approved", "00", 100.0)
    fewer = Router(RouterConfig(order=("nfc", "qr"), profiles=dict.fromkeys(("nfc", "qr"), QUIET)))
    assert fewer.restore_state(r.export_state()) == 0
    assert fewer.snapshot(2.0) == []


kinds = st.sampled_from([("approved", "00"), ("failed", "91"), ("timeout", None),
                         ("declined", "05"), ("declined", "96")])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(ALL)), st.sampled_from(["CN-GD", "CN-BJ"]),
                          kinds, st.floats(0.0, 5.0)), max_size=40),
       st.lists(st.tuples(st.sampled_from(sorted(ALL)), st.booleans()), max_size=15))
def test_a_restored_router_decides_like_the_original(obs: list, probes: list) -> None:
    from tapshield.route import Probe

    a, t = Router(config()), 0.0
    for ch, region, (outcome, code), dt in obs:
        t += dt
        a.observe(ch, region, t, outcome, code, 300.0)
    for ch, ok in probes:
        t += 0.5
        a.observe_probe(Probe(ch, "CN-GD"), ok, t)
    b = Router(config())
    b.restore_state(json.loads(json.dumps(a.export_state())))
    later = t + 30.0
    assert a.snapshot(later) == b.snapshot(later)
    for region in ("CN-GD", "CN-BJ"):
        for tried in (frozenset(), frozenset({"nfc"})):
            assert a.choose(region, ALL, later, tried=tried) == b.choose(region, ALL, later,
                                                                         tried=tried)
    assert math.isclose(a.next_probe_at(), b.next_probe_at()) or (
        a.next_probe_at() == b.next_probe_at())
