"""Each alerting stage on its own (tapshield.monitor.alerting), without a stream."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tapshield.events.changes import CHANGES
from tapshield.monitor import MonitorConfig
from tapshield.monitor.alerting.escalate import NotifyPolicy
from tapshield.monitor.alerting.inhibit import Inhibitor, is_window, window_key
from tapshield.monitor.alerting.measure import WaveMeter, noise
from tapshield.monitor.alerting.suppress import Suppressor, maintenance_windows
from tapshield.monitor.alerting.views import SliceViews
from tapshield.monitor.alerting.waves import Alert, Member
from tapshield.monitor.alerts import AlertEvent
from tapshield.monitor.config import Silence
from tapshield.monitor.detectors import DetectorBank
from tapshield.monitor.levels import LevelTracker
from tapshield.monitor.recent import RecentEvents
from tapshield.monitor.slices import SliceRegistry
from tapshield.timeutil import epoch_us

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
MIN = 60_000_000


def _us(t: datetime) -> int:
    return epoch_us(t)


def _alert(cfg: MonitorConfig, level: int = 4, aid: str = "A-1") -> Alert:
    a = Alert(aid, "technical", 0, 1, _us(T0), _us(T0), LevelTracker(cfg.levels))
    a.tracker.level = level
    a.members[(1, 0)] = Member(1, 0, "scope", _us(T0), _us(T0))
    return a


# -- the state machine ---------------------------------------------------------------

def test_alert_state_moves_only_along_its_edges() -> None:
    cfg = MonitorConfig()
    a = _alert(cfg)
    a.suppress("silence x", _us(T0) + MIN)
    assert a.state == "suppressed" and a.suppressed_until == _us(T0) + MIN
    with pytest.raises(ValueError, match="cannot be suppressed"):
        a.suppress("again", 0)
    a.release(_us(T0) + 5)
    assert a.state == "firing" and a.started_us == _us(T0) + 5
    with pytest.raises(ValueError, match="not suppressed"):
        a.release(0)
    a.resolve(_us(T0) + 7)
    assert a.state == "resolved" and a.ended_us == _us(T0) + 7
    with pytest.raises(ValueError, match="already resolved"):
        a.resolve(None)


def test_scope_follows_roles_and_membership() -> None:
    a = _alert(MonitorConfig())
    child = Member(2, 0, "scope", 0, 0)
    a.members[(2, 0)] = child
    assert [m.slice for m in a.scope()] == [1, 2]
    a.set_role(child, "absorbed")
    assert [m.slice for m in a.scope()] == [1]
    assert a.explaining(0, traffic=False) == [1]
    assert a.explaining(0, traffic=True) == [1, 2]  # a traffic drop: every member
    child.flaps = 2
    assert a.flaps() == 2


# -- suppression ---------------------------------------------------------------------

def test_maintenance_window_mutes_its_scope_and_freezes_it() -> None:
    raw = pl.DataFrame({"ts": [T0.isoformat()], "kind": ["maintenance"],
                        "component": ["channel:nfc"], "note": ["upgrade"],
                        "end_ts": [(T0 + timedelta(hours=1)).isoformat()]})
    ch = CHANGES.validate(raw).valid
    windows = maintenance_windows(ch)
    assert len(windows) == 1 and windows[0].scope == {"channel": "nfc"}
    sup = Suppressor(windows, [], grace_us=5 * MIN)
    inside = _us(T0) + 10 * MIN
    got = sup.check({"channel": "nfc", "region": "CN-GD"}, "technical", inside)
    assert got is not None and got.window is windows[0] and got.by.startswith("maintenance")
    assert got.until_us == windows[0].end_us + 5 * MIN
    assert sup.check({"channel": "qr"}, "technical", inside) is None
    assert sup.check({"channel": "nfc"}, "technical", _us(T0) + 70 * MIN) is None  # past grace
    assert sup.frozen([{}, {"channel": "nfc"}, {"channel": "qr"}], inside) == [False, True, False]
    assert sup.frozen([{}, {"channel": "nfc"}], _us(T0) + 2 * 60 * MIN) == [False, False]
    assert Suppressor([], [], 0).frozen([{}], inside) is None  # no window: nothing to do
    # a window touching a slice (sharing events) is offered to inhibition
    assert sup.touching({"region": "CN-GD"}, inside) == windows


def test_config_and_runtime_silences() -> None:
    silence = Silence({"region": "CN-GD"}, T0, T0 + timedelta(hours=1), comment="drill")
    sup = Suppressor([], [silence], 0)
    got = sup.check({"region": "CN-GD", "channel": "nfc"}, "technical", _us(T0) + MIN)
    assert got is not None and got.by == "silence drill" and got.window is None

    @dataclasses.dataclass
    class Muting:
        id: str = "S-1"
        comment: str = "carrier ticket"
        ends_at: datetime = T0 + timedelta(hours=2)

        def mutes(self, labels: dict[str, str], at: datetime) -> bool:
            return labels.get("carrier") == "unicom" and labels["signal"] == "technical"

    sup.runtime = (Muting(),)
    got = sup.check({"carrier": "unicom"}, "technical", _us(T0))
    assert got is not None and got.by == "silence S-1 carrier ticket"
    assert sup.check({"carrier": "unicom"}, "latency", _us(T0)) is None


# -- notification policy -------------------------------------------------------------

def test_notice_is_recorded_only_and_pages_when_it_escalates() -> None:
    cfg = MonitorConfig()
    pol = NotifyPolicy(cfg)
    a = _alert(cfg, level=4)
    now = _us(T0)
    assert pol.on_fire(a, now) is False and not a.paged
    a.tracker.level = 2
    assert pol.on_level(a, now + MIN, before=4) == ("escalated", True)
    assert a.paged and a.notified_level == 2
    assert a.next_reminder_us == now + MIN + pol.reminders_us[0]
    a.tracker.level = 3
    assert pol.on_level(a, now + 2 * MIN, before=2) == ("deescalated", False)
    assert pol.on_resolve(a) is True


def test_fast_escalation_waits_for_the_renotify_interval() -> None:
    cfg = MonitorConfig()
    pol = NotifyPolicy(cfg)
    a = _alert(cfg, level=2)
    now = _us(T0)
    assert pol.on_fire(a, now) is True
    a.tracker.level = 1
    soon = now + pol.renotify_us // 2
    assert pol.on_level(a, soon, before=2) == ("escalated", False)
    assert a.pending_escalation and pol.waiting(a, soon)
    later = now + pol.renotify_us
    assert pol.on_level(a, later, before=1) == ("escalated", True)
    assert not a.pending_escalation and a.notified_level == 1
    assert pol.on_level(a, later + 1, before=1) is None
    due = a.next_reminder_us
    assert due is not None
    assert pol.on_level(a, due, before=1) == ("reminder", True)
    assert a.reminders_sent == 1 and a.next_reminder_us == due + pol.reminders_us[1]


# -- measuring and inhibition helpers --------------------------------------------------

def test_noise_and_one_actor() -> None:
    assert noise(0.0) == 0.0
    assert noise(10.0) > 10.0  # the 99.9th percentile of Poisson(10)
    cfg = MonitorConfig()
    reg = SliceRegistry(cfg.slices, cfg.min_slice_events, cfg.max_slices)
    bank = DetectorBank(cfg, len(cfg.slices))
    recent = RecentEvents(MIN, 1000)
    meter = WaveMeter(cfg, reg, bank, recent, SliceViews(reg, bank), level_us=MIN, hold_us=MIN)
    one_phone = np.array([7] * 50 + [1, 2], dtype=np.uint64)
    verdict, share = meter.one_actor(one_phone, expected=2.0)
    assert verdict and share == pytest.approx(50 / 52)
    many = np.arange(60, dtype=np.uint64)
    assert meter.one_actor(many, expected=2.0) == (False, pytest.approx(1 / 60))


def test_same_wave_groups_technical_waves_by_start_not_declines() -> None:
    cfg = MonitorConfig()
    reg = SliceRegistry(((), ("channel",), ("region",)), 1, 100)
    nfc = reg._add(1, ("channel",), ("nfc",))
    gd = reg._add(2, ("region",), ("CN-GD",))
    bank = DetectorBank(cfg, 3)
    bank.ensure(len(reg))
    recent = RecentEvents(MIN, 1000)
    views = SliceViews(reg, bank)
    inh = Inhibitor(reg, bank, recent, views, Suppressor([], [], 0), explain_us=MIN,
                    group_us=3 * MIN)
    tech = Alert("A-1", "technical", 0, nfc, _us(T0), _us(T0), LevelTracker(cfg.levels))
    tech.members[(nfc, 0)] = Member(nfc, 0, "scope", _us(T0), _us(T0))
    assert inh.same_wave(tech, gd, _us(T0) + 2 * MIN)
    assert not inh.same_wave(tech, gd, _us(T0) + 4 * MIN)
    biz = Alert("A-2", "business", 1, nfc, _us(T0), _us(T0), LevelTracker(cfg.levels))
    biz.members[(nfc, 1)] = Member(nfc, 1, "scope", _us(T0), _us(T0))
    assert not inh.same_wave(biz, gd, _us(T0))  # declines are not grouped by time
    assert views.meets(nfc, gd) and views.meets(gd, nfc)
    assert is_window("window:abc") and window_key("window:abc") == "abc"


# -- the detector arrays behind methods -------------------------------------------------

def test_bank_freeze_seed_and_read_only_snapshot() -> None:
    cfg = MonitorConfig()
    bank = DetectorBank(cfg, len(cfg.slices))
    bank.ensure(3)
    bank.freeze([False, True, False])
    assert bank.ext_frozen[:3].tolist() == [False, True, False]
    with pytest.raises(ValueError):
        bank.freeze([False] * 4)
    bank.seed(2, [10.0, 20.0, 5.0], 1000.0, weight=100.0)
    assert bank.xe[2, :3].tolist() == [1.0, 2.0, 0.5] and bank.ne[2, :3].tolist() == [100.0] * 3
    with pytest.raises(ValueError):
        bank.seed(5, [1.0, 1.0, 1.0], 10.0, 1.0)
    snap = bank.snapshot()
    assert snap.n == 3 and snap.ext_frozen.tolist() == [False, True, False]
    with pytest.raises(ValueError):
        snap.p_mean[0, 0] = 1.0  # read-only
    bank.p_mean[0, 0] = 0.5  # the bank itself still writes its arrays
    assert snap.p_mean[0, 0] == 0.5


# -- immutable events ---------------------------------------------------------------------

def test_alert_events_are_immutable_and_placed_by_copy() -> None:
    ev = AlertEvent("A-1", T0, "firing", 2, T0, {"channel": "nfc"}, "technical", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.incident_id = "INC-1"  # type: ignore[misc]
    placed = ev.with_incident("INC-1")
    assert placed.incident_id == "INC-1" and ev.incident_id is None
    assert placed.to_dict()["incident_id"] == "INC-1"
    assert ev.with_incident(None) is ev
