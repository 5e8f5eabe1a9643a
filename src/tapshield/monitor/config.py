"""Monitoring configuration: what is watched, how sure a detector must be, how alerts live.

Every default below carries its reason in the field's docstring. The ones that
decide false alarms are not free knobs: the CUSUM thresholds follow from
``false_alerts_per_week`` (see :mod:`tapshield.monitor.thresholds`), and the
warning levels from ``levels.yaml``. A YAML file can override any of them::

    detector:   {bucket: 10s, false_alerts_per_week: 1, ...}
    lifecycle:  {resolve_hold: 5m, group_window: 3m, reminders: [1h, 2h, 4h], ...}
    slices:     [[], [channel], [region], [channel, region], ...]
    levels:     my-levels.yaml        # or the same keys inline
    festivals:  [{start: "2026-11-11T00:00:00+08:00", end: "2026-11-12T00:00:00+08:00"}]
    silences:   [{matchers: {channel: wallet}, starts_at: ..., ends_at: ..., comment: ...}]
    profile:    last-week-profile.parquet
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tapshield import timeutil
from tapshield.errors import ContractError
from tapshield.events.schema import DIMENSIONS
from tapshield.monitor.levels import LevelCriteria
from tapshield.signals import SIGNALS
from tapshield.timeutil import DEFAULT_TZ, parse_rfc3339, zone

DEFAULT_SLICES: tuple[tuple[str, ...], ...] = (
    (),
    ("channel",),
    ("region",),
    ("carrier",),
    ("os",),
    ("app_version",),
    ("device_model",),
    ("server_version",),
    ("merchant_category",),
    ("merchant_id",),
    ("channel", "region"),
    ("channel", "carrier"),
    ("region", "carrier"),
    ("channel", "app_version"),
    ("channel", "server_version"),
)
"""The slices watched: the whole flow, each dimension, and the pairs along which
flash-pay waves actually run: a channel's interface in some regions
(channel x region), a carrier's network in a region (region x carrier), a
channel on one carrier, and a release on one channel (x app_version /
server_version). Deeper combinations are diagnosis' job, not the detector's:
each extra set of slices costs detection delay through the family-wise
correction (``ln`` of the number of tests)."""

SLICE_DIMENSIONS: frozenset[str] = frozenset(DIMENSIONS)

def parse_duration(value: Any, where: str) -> timedelta:
    """A duration in the one grammar of every config (:func:`tapshield.timeutil.parse_duration`)."""
    try:
        return timeutil.parse_duration(value)
    except ValueError as exc:
        raise ContractError(f"{where}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute alerts whose slice matches every matcher (as an Alertmanager silence)."""

    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    signal: str | None = None
    comment: str = ""

    def matches(self, slice_: dict[str, str], signal: str, at: datetime) -> bool:
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.signal is not None and self.signal != signal:
            return False
        return all(slice_.get(k) == v for k, v in self.matchers.items())


@dataclass(frozen=True, slots=True)
class Festival:
    """A shopping festival: its hours get their own seasonal profile."""

    start: datetime
    end: datetime
    name: str = "festival"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    # -- what is watched ---------------------------------------------------------
    slices: tuple[tuple[str, ...], ...] = DEFAULT_SLICES
    min_slice_events: int = 30
    """A slice gets detector state from its 30th event on: thousands of merchants
    seen once a day would otherwise cost memory and time and could never be
    tested meaningfully anyway."""
    min_slice_events_by_dim: dict[str, int] = field(
        default_factory=lambda: {"merchant_id": 1000})
    """Sets containing these dimensions start watching a slice later: a merchant
    from its 1,000th payment. The long tail of small merchants could never page
    on their own (their whole traffic is below the level-3 share) and would
    multiply detector state; their failures still count in every larger slice."""
    max_slices: int = 50_000
    """Hard cap on watched slices (memory); slices beyond it are counted in
    ``unwatched_slices``, never silently dropped from the national figures."""

    # -- detectors ----------------------------------------------------------------
    bucket: timedelta = timedelta(seconds=10)
    """Cadence of expectations, levels and the alert lifecycle, and the timeline's
    resolution. Detection itself is per event; 10 s is well under the minute an
    on-call needs to act, and a day is 8,640 timeline rows."""
    tick: timedelta = timedelta(seconds=1)
    """Resolution of silence detection (a traffic test can only cross between
    events, so it is scanned once a tick)."""
    false_alerts_per_week: float = 1.0
    """Family-wise false-alarm budget of all detectors together, in alerts per
    week of normal traffic. Thresholds follow from it (Lorden's bound, Bonferroni
    over slice sets, signals and designs); pages are rarer still, since a false
    detection of noise has no excess impact and stays a level-4 notice."""
    ratios: tuple[float, ...] = (2.0, 5.0, 20.0, 100.0)
    """Design shifts of the CUSUM bank (failure rate x2 ... x100). A CUSUM tuned to
    ratio r is near-optimal for true ratios within about x2 of r, so a geometric
    bank with step ~4-5 covers every shift that matters at the price of
    ln(4) ~ 1.4 extra nats of threshold. Below x2 is not an outage."""
    traffic_dims: frozenset[str] = frozenset(
        {"channel", "region", "carrier", "os", "device_model", "merchant_category"})
    """Slices made only of these dimensions get a traffic-drop test. Versions
    (app_version, server_version) lose their traffic on purpose when a release is
    rolled forward or back, and single merchants open and close: a drop there is
    not an outage."""
    traffic_ratio: float = 0.1
    """A slice's share of traffic (or the national rate) fell to a tenth: a dead
    channel or region. The test only accumulates while the share is below
    ~39 % of normal ((1 - r) / -ln r), so a regional festival that halves the
    other regions' shares cannot fire it."""
    warmup: timedelta = timedelta(minutes=10)
    """No detector fires in the first 10 minutes of a stream without history:
    the expectation bootstraps from them (a replay of one day has no past)."""
    arm_events: float = 200.0
    """A slice's test arms once its expectation rests on 200 (decayed) attempts;
    before that its shrunken, upper-bounded expectation is too wide to test."""
    rate_half_life: timedelta = timedelta(hours=2)
    """Memory of failure-rate expectations: long against fault ramps (up to 30
    minutes), short against the day's drift."""
    share_half_life: timedelta = timedelta(minutes=30)
    """Memory of a slice's share of traffic: follows the daily mix of channels."""
    national_half_life: timedelta = timedelta(seconds=30)
    """Memory of the national event rate: short, so it follows a festival's
    ramp-down (-15 % a minute) within a few percent (the test only accumulates
    below ~39 % of it), while a real silence is found in h/rate seconds and the
    expectation stops learning as soon as the test starts building up."""
    prior_strength: float = 100.0
    """A slice's expectation starts at the national rate with the weight of 100
    attempts (hierarchical shrinkage): small slices borrow strength, large ones
    quickly speak for themselves."""
    confidence: float = 0.90
    """Tests use the upper 90 % bound of the expected rate, not its mean: an
    underestimated expectation is what makes a CUSUM fire on noise."""
    freeze_fraction: float = 0.5
    """An expectation stops learning while its test is above half its threshold,
    so a slow ramp is not learnt as normal before it is detected."""
    latency_quantile: float = 0.95
    decline_dedup: timedelta = timedelta(0)
    """Optional: count a device's declines at most once per this window in the
    decline and risk-decline tests. Off by default: it makes single-actor bursts
    quieter but also hides a sustained attack from a couple of devices (a card
    tester) for tens of minutes; single actors are handled by the warning levels
    instead (``levels.yaml``: one-device slices and ``page_after_min``)."""
    slow_factor: float = 2.0
    """A payment is *slow* above twice its slice's recent 95th percentile: a tap
    that takes twice as long as the slow end of normal is one a customer
    notices, while a busy festival night (+15 % latency) does not make taps
    slow. The expected share of slow taps is learnt like any failure rate."""
    latency_window: timedelta = timedelta(minutes=10)
    recovery_error: float = 0.01
    """Probability of declaring a wave over while it goes on, over
    ``recovery_horizon`` of the wave (see :mod:`tapshield.monitor.thresholds`)."""
    recovery_horizon: timedelta = timedelta(hours=1)
    """The length of wave over which ``recovery_error`` holds: most outages are
    over within the hour, and a longer one costs at most a second firing."""
    hold_false_alarms: float = 0.01
    """While a resolved wave is on hold, its slice re-fires at a lower threshold:
    one slice, one signal, no family-wise correction; 1 % false re-fires."""

    # -- lifecycle ----------------------------------------------------------------
    resolve_hold: timedelta = timedelta(minutes=5)
    """A wave resolves only after 5 minutes back to normal: a flapping link
    (typical periods of 1-5 minutes) fires once and resolves once."""
    quiet_resolve: timedelta = timedelta(minutes=30)
    """A wave with no excess beyond noise in its slices for 30 minutes is over,
    even if its slowest test has not proved it yet (a weak wave's recovery takes
    long to prove; an alert left open for hours collects unrelated bursts)."""
    group_window: timedelta = timedelta(minutes=3)
    """Slices whose change points lie within 3 minutes of an alert's start belong
    to the same wave (Alertmanager's grouping by time): one alert, not a storm."""
    explain_window: timedelta = timedelta(minutes=10)
    """How far back a firing slice is tested with other alerts' events removed."""
    retention: timedelta = timedelta(minutes=15)
    """Recent events kept (compactly) for those tests and for level figures."""
    max_buffer_events: int = 3_000_000
    level_window: timedelta = timedelta(minutes=1)
    """Level figures are per minute, over the last minute of the wave."""
    reminders: tuple[timedelta, ...] = (timedelta(hours=4), timedelta(hours=8),
                                        timedelta(hours=16))
    """Repeat notifications of a paging alert at growing intervals: first after
    4 h (Alertmanager's default repeat interval: an open incident is already being
    worked, its status lives in the incident), then 8 h, then every 16 h."""
    notify_escalation_to: int = 1
    """An escalation re-pages only when it reaches this level (red): the on-call
    is already working a paged wave; red calls in the incident commander. Every
    escalation is still recorded (alerts.jsonl, database)."""
    renotify_interval: timedelta = timedelta(minutes=5)
    """At most one notification per alert per 5 minutes (Alertmanager's
    group_interval): an escalation inside it is sent when it ends."""
    maintenance_grace: timedelta = timedelta(minutes=2)
    """A maintenance window's failures may run a little over its announced end."""
    one_page: bool = True
    """One page per fault (issue 15): a wave that returns within ``reopen_window``
    reopens its alert, a wave with the same scope as an open one at the same time
    joins it, and traffic drops that a surge explains are not silences. ``false``:
    the behaviour before (kept to measure against, benchmarks/one_page_per_fault.py)."""
    reopen_window: timedelta = timedelta(minutes=30)
    """A wave that starts again within 30 minutes of its *paged* alert resolving, in
    the same slice (or inside its scope), is the same fault returning: the alert reopens
    (one incident, a ``flaps`` mark) and pages again only if it is worse than it
    paged. 30 minutes is about how long an on-call engineer keeps a resolved
    incident in mind; a fault back after that is treated as new."""

    # -- context --------------------------------------------------------------------
    levels: LevelCriteria = field(default_factory=LevelCriteria.default)
    festivals: tuple[Festival, ...] = ()
    silences: tuple[Silence, ...] = ()
    profile: Path | None = None
    """A seasonal profile saved by a previous run (:meth:`Monitor.save_profile`)."""
    tz: str = DEFAULT_TZ

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str | None = None) -> MonitorConfig:
        """Defaults, overridden by a YAML file when given."""
        if path is None:
            return cls()
        p = Path(path)
        if not p.exists():
            raise ContractError(f"{p}: no such monitor config file")
        try:
            data = yaml.safe_load(p.read_text("utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ContractError(f"{p}: not valid YAML: {exc}") from None
        return cls.from_mapping(data, source=str(p), base=p.parent)

    @classmethod
    def from_mapping(
        cls, data: dict[str, Any], source: str = "config", base: Path | None = None
    ) -> MonitorConfig:
        if not isinstance(data, dict):
            raise ContractError(f"{source}: expected a mapping")
        known = {"version", "detector", "lifecycle", "slices", "levels", "festivals",
                 "silences", "profile", "tz"}
        extra = set(data) - known
        if extra:
            raise ContractError(f"{source}: unknown key(s) {', '.join(sorted(extra))}")
        cfg = cls()
        updates: dict[str, Any] = {}
        names = {f.name: f for f in fields(cls)}
        detector_keys = {"traffic_dims", "min_slice_events", "min_slice_events_by_dim",
                         "max_slices", "bucket", "tick",
                         "false_alerts_per_week", "ratios", "traffic_ratio", "warmup",
                         "arm_events", "rate_half_life", "share_half_life",
                         "national_half_life", "prior_strength", "confidence",
                         "freeze_fraction", "latency_quantile", "latency_window",
                         "recovery_error", "recovery_horizon", "hold_false_alarms", "slow_factor",
                         "decline_dedup"}
        lifecycle_keys = {"quiet_resolve", "resolve_hold", "group_window", "explain_window",
                          "retention",
                          "max_buffer_events", "level_window", "reminders",
                          "renotify_interval", "maintenance_grace", "notify_escalation_to",
                          "one_page", "reopen_window"}
        for section, allowed in (("detector", detector_keys), ("lifecycle", lifecycle_keys)):
            sec = data.get(section) or {}
            if not isinstance(sec, dict):
                raise ContractError(f"{source}: `{section}` must be a mapping")
            for key, value in sec.items():
                where = f"{source}: {section}.{key}"
                if key not in allowed:
                    raise ContractError(f"{where}: unknown setting")
                current = getattr(cfg, key)
                updates[key] = _coerce(value, current, where)
                assert key in names
        if "slices" in data:
            updates["slices"] = _slices(data["slices"], f"{source}: slices")
        if "levels" in data:
            lv = data["levels"]
            if isinstance(lv, str):
                lp = Path(lv)
                if not lp.is_absolute() and base is not None:
                    lp = base / lp
                updates["levels"] = LevelCriteria.load(lp)
            else:
                updates["levels"] = LevelCriteria.from_mapping(lv, source=f"{source}: levels")
        if "festivals" in data:
            updates["festivals"] = _festivals(data["festivals"], f"{source}: festivals",
                                              data.get("tz"))
        if "silences" in data:
            updates["silences"] = _silences(data["silences"], f"{source}: silences")
        if data.get("profile") is not None:
            pp = Path(str(data["profile"]))
            if not pp.is_absolute() and base is not None:
                pp = base / pp
            updates["profile"] = pp
        if data.get("tz") is not None:
            try:
                zone(str(data["tz"]))
            except Exception:
                raise ContractError(f"{source}: tz: unknown time zone {data['tz']!r}") from None
            updates["tz"] = str(data["tz"])
        out = replace(cfg, **updates)
        out.check(source)
        return out

    def check(self, source: str = "config") -> None:
        """Reject settings that would make the statistics meaningless."""
        def bad(key: str, why: str) -> ContractError:
            return ContractError(f"{source}: {key}: {why}")

        if self.bucket <= timedelta(0) or self.tick <= timedelta(0):
            raise bad("bucket/tick", "must be positive")
        if self.bucket.total_seconds() % self.tick.total_seconds() > 1e-9:
            raise bad("bucket", "must be a whole number of ticks")
        if self.false_alerts_per_week <= 0:
            raise bad("false_alerts_per_week", "must be > 0")
        if not self.ratios or any(r <= 1.0 for r in self.ratios):
            raise bad("ratios", "design ratios must all be > 1")
        if not 0.0 < self.traffic_ratio < 1.0:
            raise bad("traffic_ratio", "must be between 0 and 1")
        if not 0.5 <= self.confidence < 1.0:
            raise bad("confidence", "must be in [0.5, 1)")
        if not 0.5 < self.latency_quantile < 1.0:
            raise bad("latency_quantile", "must be in (0.5, 1)")
        if self.slow_factor < 1.0:
            raise bad("slow_factor", "must be >= 1")
        for key in ("recovery_error", "hold_false_alarms"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise bad(key, "must be a probability in (0, 1)")
        if not 0.0 < self.freeze_fraction <= 1.0:
            raise bad("freeze_fraction", "must be in (0, 1]")
        if self.min_slice_events < 1 or self.max_slices < 1:
            raise bad("min_slice_events/max_slices", "must be >= 1")
        if () not in self.slices:
            raise bad("slices", "must include [] (the whole flow)")
        if not self.reminders:
            raise bad("reminders", "give at least one interval")


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(current, timedelta):
        return parse_duration(value, where)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ContractError(f"{where}: expected true or false")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{where}: expected a whole number")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError(f"{where}: expected a number")
        return float(value)
    if isinstance(current, dict):
        if not isinstance(value, dict) or not all(
            k in SLICE_DIMENSIONS and isinstance(v, int) and v >= 1 for k, v in value.items()
        ):
            raise ContractError(f"{where}: expected dimension: whole number >= 1")
        return dict(value)
    if isinstance(current, frozenset):
        if not isinstance(value, list) or not all(v in SLICE_DIMENSIONS for v in value):
            raise ContractError(f"{where}: expected a list of dimensions")
        return frozenset(value)
    if isinstance(current, tuple):
        if not isinstance(value, list) or not value:
            raise ContractError(f"{where}: expected a non-empty list")
        if current and isinstance(current[0], timedelta):
            return tuple(parse_duration(v, f"{where}[{i}]") for i, v in enumerate(value))
        out = []
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ContractError(f"{where}[{i}]: expected a number")
            out.append(float(v))
        return tuple(out)
    raise ContractError(f"{where}: cannot be set from a file")


def _slices(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list):
        raise ContractError(f"{where}: expected a list of dimension lists")
    out: list[tuple[str, ...]] = []
    for i, item in enumerate(value):
        if not isinstance(item, list) or len(item) > 2:
            raise ContractError(f"{where}[{i}]: a slice set is a list of at most 2 dimensions")
        for d in item:
            if d not in SLICE_DIMENSIONS:
                raise ContractError(f"{where}[{i}]: {d!r} is not a dimension "
                                    f"(one of {', '.join(DIMENSIONS)})")
        if len(set(item)) != len(item):
            raise ContractError(f"{where}[{i}]: a dimension appears twice")
        key = tuple(item)
        if key in out:
            raise ContractError(f"{where}[{i}]: listed twice")
        out.append(key)
    return tuple(out)


def _instant(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ContractError(f"{where}: needs a UTC offset")
        return value
    try:
        return parse_rfc3339(str(value))
    except ValueError as exc:
        raise ContractError(f"{where}: {exc}") from None


def _festivals(value: Any, where: str, tz: Any) -> tuple[Festival, ...]:
    if not isinstance(value, list):
        raise ContractError(f"{where}: expected a list")
    out: list[Festival] = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if isinstance(item, str) and re.match(r"^\d{4}-\d{2}-\d{2}$", item.strip()):
            day = datetime.fromisoformat(item.strip()).replace(tzinfo=zone(tz))
            out.append(Festival(day, day + timedelta(days=1), item.strip()))
            continue
        if not isinstance(item, dict) or "start" not in item or "end" not in item:
            raise ContractError(f"{w}: give a date (YYYY-MM-DD) or {{start, end, name}}")
        start, end = _instant(item["start"], f"{w}.start"), _instant(item["end"], f"{w}.end")
        if end <= start:
            raise ContractError(f"{w}: end must be after start")
        out.append(Festival(start, end, str(item.get("name", "festival"))))
    return tuple(out)


def _silences(value: Any, where: str) -> tuple[Silence, ...]:
    if not isinstance(value, list):
        raise ContractError(f"{where}: expected a list")
    out: list[Silence] = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ContractError(f"{w}: expected a mapping")
        matchers = item.get("matchers") or {}
        if not isinstance(matchers, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in matchers.items()
        ):
            raise ContractError(f"{w}.matchers: expected dimension: value pairs")
        for k in matchers:
            if k not in SLICE_DIMENSIONS:
                raise ContractError(f"{w}.matchers: {k!r} is not a dimension")
        if "starts_at" not in item or "ends_at" not in item:
            raise ContractError(f"{w}: needs starts_at and ends_at")
        s, e = _instant(item["starts_at"], f"{w}.starts_at"), _instant(item["ends_at"],
                                                                       f"{w}.ends_at")
        if e <= s:
            raise ContractError(f"{w}: ends_at must be after starts_at")
        sig = item.get("signal")
        if sig is not None and sig not in SIGNALS:
            raise ContractError(f"{w}.signal: unknown signal {sig!r}")
        out.append(Silence({k: str(v) for k, v in matchers.items()}, s, e, sig,
                           str(item.get("comment", ""))))
    return tuple(out)
