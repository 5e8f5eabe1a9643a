"""Alert lifecycle rules: grouping, inhibition, flapping, silences, maintenance."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import polars as pl
import pytest

from tapshield.events.changes import CHANGES
from tapshield.monitor import MonitorConfig
from tapshield.monitor.config import Silence
from tapshield.monitor.slices import intersects

from .helpers import Run, run
from .synth import Fault, at, events


@pytest.fixture(scope="module")
def channel_outage() -> Run:
    # qr down everywhere: every region, carrier, os ... slice with qr traffic fails too
    fault = Fault(1500, 2100, {"channel": "qr"}, "technical", 0.7)
    return run(events(2700, rate=40, faults=(fault,), seed=31))


def test_one_wave_is_one_alert_with_its_children_inhibited(channel_outage: Run) -> None:
    waves = {aid: evs for aid, evs in channel_outage.alerts().items()
             if evs[0].signal in ("technical", "latency", "traffic_drop")}
    assert len(waves) == 1, [(e.state, e.slice, e.signal) for e in channel_outage.events]
    (evs,) = waves.values()
    fig = evs[-1].figures
    # the regions, carriers, the whole flow ... fired too, and were absorbed
    assert len(fig["also_affected"]) >= 3
    for e in evs:
        assert intersects(e.slice, {"channel": "qr"})
    assert sum(e.notify for e in evs) <= 3


def test_two_separate_waves_are_two_alerts() -> None:
    f1 = Fault(1200, 1800, {"channel": "nfc", "region": "CN-GD"}, "technical", 0.8)
    f2 = Fault(2400, 3000, {"channel": "wallet"}, "technical", 0.8)
    r = run(events(3300, rate=40, faults=(f1, f2), seed=37))
    fired = r.firing("technical")
    assert len(fired) == 2
    assert intersects(fired[0].slice, {"channel": "nfc", "region": "CN-GD"})
    assert intersects(fired[1].slice, {"channel": "wallet"})
    assert fired[0].alert_id != fired[1].alert_id


def test_overlapping_wave_under_an_open_one_gets_its_own_alert() -> None:
    f1 = Fault(1200, 2700, {"region": "CN-GD"}, "technical", 0.5)
    f2 = Fault(1800, 2400, {"channel": "wallet"}, "technical", 0.8)
    r = run(events(3000, rate=40, faults=(f1, f2), seed=41))
    fired = r.firing("technical")
    assert len(fired) == 2, [(e.state, e.slice, e.ts) for e in r.events]
    assert at(1800) <= fired[1].ts <= at(1800) + timedelta(minutes=2)


def test_a_flapping_link_fires_once_and_resolves_once() -> None:
    fault = Fault(1200, 2400, {"channel": "qr"}, "technical", 0.9, flap_period=120)
    r = run(events(3000, rate=40, faults=(fault,), seed=43))
    waves = {a: evs for a, evs in r.alerts().items() if evs[0].signal == "technical"}
    assert len(waves) == 1
    (evs,) = waves.values()
    states = [e.state for e in evs]
    assert states.count("firing") == 1 and states.count("resolved") == 1
    assert evs[-1].ts >= at(2400)
    assert evs[-1].figures.get("flaps", 0) >= 1 or evs[0].figures.get("flaps", 0) >= 0


def test_a_silence_suppresses_matching_alerts() -> None:
    fault = Fault(1200, 1800, {"channel": "wallet"}, "technical", 0.8)
    cfg = replace(MonitorConfig(), silences=(
        Silence({"channel": "wallet"}, at(1000), at(3000), None, "known partner issue"),))
    r = run(events(2400, rate=40, faults=(fault,), seed=47), cfg)
    states = [e.state for e in r.events if e.signal == "technical"]
    assert "suppressed" in states and "firing" not in states
    assert not r.paging()


def _maintenance(start: float, end: float, component: str) -> pl.DataFrame:
    raw = pl.DataFrame({"ts": [at(start).isoformat()], "kind": ["maintenance"],
                        "component": [component], "end_ts": [at(end).isoformat()]})
    return CHANGES.validate(raw).valid


def test_failures_inside_an_announced_maintenance_window_page_no_one() -> None:
    fault = Fault(1200, 1800, {"channel": "wallet"}, "technical", 0.9)
    r = run(events(2700, rate=40, faults=(fault,), seed=53),
            changes=_maintenance(1150, 1830, "channel:wallet"))
    assert not r.paging(), [(e.state, e.slice, e.notify) for e in r.events]
    assert any(e.state == "suppressed" for e in r.events)


def test_a_wave_outliving_its_maintenance_window_fires() -> None:
    fault = Fault(1200, 2400, {"channel": "wallet"}, "technical", 0.9)
    r = run(events(3000, rate=40, faults=(fault,), seed=59),
            changes=_maintenance(1150, 1500, "channel:wallet"))
    firing = [e for e in r.events if e.state == "firing"]
    assert firing, [(e.state, e.ts) for e in r.events]
    # window end + 2 min grace, evaluated at the next bucket
    assert firing[0].ts >= at(1500) + timedelta(minutes=2)
    assert firing[0].ts <= at(1500) + timedelta(minutes=3)
    assert firing[0].notify


def _returning_fault() -> pl.DataFrame:
    # the same interface fault twice, 6 minutes each, 20 minutes apart
    f1 = Fault(1200, 1560, {"channel": "nfc", "region": "CN-GD"}, "technical", 0.85)
    f2 = Fault(2760, 3120, {"channel": "nfc", "region": "CN-GD"}, "technical", 0.85)
    return events(3600, rate=40, faults=(f1, f2), seed=59)


def test_a_fault_returning_within_the_reopen_window_reopens_its_alert() -> None:
    frame = _returning_fault()
    r = run(frame)
    tech = {a: evs for a, evs in r.alerts().items() if evs[0].signal == "technical"}
    assert len(tech) == 1, [(e.alert_id, e.state, e.slice, e.ts) for e in r.events]
    (evs,) = tech.values()
    states = [e.state for e in evs]
    assert states.count("resolved") >= 1 and states.count("firing") == 2
    back = [e for e in evs if e.state == "firing"][1]
    assert back.figures["reopened"] == 1 and back.figures["flaps"] >= 1
    assert not back.notify  # no worse than what was paged: the incident reopens, no page
    assert sum(1 for e in evs if e.notify and e.state in ("firing", "escalated")) == 1
    # before issue 15 (one_page off) the return was a second alert and a second page
    old = run(frame, MonitorConfig(one_page=False))
    assert len({e.alert_id for e in old.events if e.signal == "technical"
                and e.state == "firing"}) == 2


def test_a_fault_back_after_the_reopen_window_is_a_new_alert() -> None:
    r = run(_returning_fault(), MonitorConfig(reopen_window=timedelta(minutes=5)))
    fired = [e for e in r.events if e.signal == "technical" and e.state == "firing"]
    assert len({e.alert_id for e in fired}) == 2


def _flash_sale(silence: bool = False) -> pl.DataFrame:
    # 20 minutes of normal traffic, 30 at four times normal, then normal again
    quiet = (Fault(3400, 3700, {}, "silence", 0.97),) if silence else ()
    parts = [events(1200, rate=30, seed=61),
             events(1800, rate=120, seed=62, start=at(1200)),
             events(1200, rate=30, seed=63, start=at(3000), faults=tuple(
                 replace(f, start=f.start - 3000, end=f.end - 3000) for f in quiet))]
    return pl.concat(parts)


def test_a_surge_falling_back_is_not_a_silence() -> None:
    frame = _flash_sale()
    national_drop = [e for e in run(frame).events
                     if e.signal == "traffic_drop" and not e.slice and e.state == "firing"]
    assert national_drop == []
    old = run(frame, MonitorConfig(one_page=False))
    assert any(e.signal == "traffic_drop" and not e.slice and e.notify for e in old.events)


def test_a_silence_after_a_surge_still_pages() -> None:
    r = run(_flash_sale(silence=True))
    drops = [e for e in r.events if e.signal == "traffic_drop" and e.state == "firing"]
    assert drops and drops[0].notify
    assert at(3400) <= drops[0].ts <= at(3400) + timedelta(minutes=3)


def test_two_waves_with_the_same_scope_at_the_same_time_are_one_alert() -> None:
    # the wallet partner fails and declines at once: one fault, one alert
    faults = (Fault(1200, 1800, {"channel": "wallet"}, "technical", 0.6),
              Fault(1230, 1800, {"channel": "wallet"}, "decline", 0.6))
    frame = events(2400, rate=40, faults=faults, seed=67)
    opened = {e.alert_id for e in run(frame).events
              if e.state == "firing" and intersects(e.slice, {"channel": "wallet"})
              and e.signal in ("technical", "decline")}
    assert len(opened) == 1
    old = {e.alert_id for e in run(frame, MonitorConfig(one_page=False)).events
           if e.state == "firing" and intersects(e.slice, {"channel": "wallet"})
           and e.signal in ("technical", "decline")}
    assert len(old) == 2
