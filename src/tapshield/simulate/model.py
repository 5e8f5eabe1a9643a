"""The simulator's inputs: the traffic model and scenarios, validated.

Both are YAML files a payment-operations team edits by hand, so a mistake must
come back as one line naming the file, the line and the field
(``demo.yaml line 14: faults[0].failure_rate: must be <= 1 (got 1.5)``), never
as a traceback or, worse, a silently ignored typo: unknown fields are errors.

The shapes are Pydantic models (nested configuration is what Pydantic does
well); cross-field rules that need the traffic model (a fault's channel must be
a channel the model has, a region must be one of its regions) are checked in
:func:`check_scenario` once both are loaded.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tapshield.config import load_model
from tapshield.errors import ContractError
from tapshield.events.codes import BUSINESS_CODES, RISK_CODES, TECHNICAL_CODES
from tapshield.events.schema import DIMENSIONS
from tapshield.timeutil import DURATION_HELP, parse_duration, parse_rfc3339

# -- small value types -------------------------------------------------------------

_CODE_RE = re.compile(r"^[0-9A-Z]{2}$")
_REGION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
_TEXT_RE = re.compile(r"^[A-Za-z0-9_.:/+-]{1,64}$")


class ScenarioError(ContractError):
    """A traffic model or scenario that cannot be used, with the field to fix."""


Duration = Annotated[timedelta, Field(description=DURATION_HELP)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
Weights = dict[str, Annotated[float, Field(ge=0.0)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _durations(*names: str) -> Any:
    return field_validator(*names, mode="before")(lambda v: None if v is None
                                                  else parse_duration(v))


def _positive_weights(name: str, weights: dict[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError(f"{name} must list at least one entry")
    if sum(weights.values()) <= 0:
        raise ValueError(f"{name} weights must not all be zero")
    return weights


def _check_codes(codes: dict[str, float], allowed: frozenset[str], what: str) -> dict[str, float]:
    for code in codes:
        if not _CODE_RE.match(code):
            raise ValueError(f"response code {code!r} is not two digits/capital letters")
        if code not in allowed:
            allowed_text = ", ".join(sorted(allowed))
            raise ValueError(f"{code!r} is not a {what} code (allowed: {allowed_text})")
    return codes


DECLINE_CODES = frozenset(BUSINESS_CODES | RISK_CODES)


# -- the traffic model -------------------------------------------------------------


class Latency(_Strict):
    """Long-tailed latency: a log-normal body with a Pareto tail."""

    median_ms: Positive
    sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.5
    tail_share: Share = 0.01
    tail_alpha: Annotated[float, Field(gt=1.0)] = 1.8


class Channel(_Strict):
    eligible_share: Annotated[float, Field(gt=0.0, le=1.0)]
    preference: Positive
    technical_failure: Share
    timeout: Share
    failure_codes: Weights
    declines: dict[str, Share]
    latency: Latency

    @field_validator("failure_codes")
    @classmethod
    def _fcodes(cls, v: dict[str, float]) -> dict[str, float]:
        return _positive_weights("failure_codes", _check_codes(v, TECHNICAL_CODES, "technical"))

    @field_validator("declines")
    @classmethod
    def _dcodes(cls, v: dict[str, float]) -> dict[str, float]:
        _check_codes(v, DECLINE_CODES, "decline")
        if sum(v.values()) >= 0.5:
            raise ValueError("the decline probabilities must sum to less than 0.5")
        return v


class OsModel(_Strict):
    share: Positive
    models: Weights

    @field_validator("models")
    @classmethod
    def _models(cls, v: dict[str, float]) -> dict[str, float]:
        return _positive_weights("models", v)


class Category(_Strict):
    share: Positive
    name: str = ""
    amount_median_yuan: Positive
    amount_sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.8


class Population(_Strict):
    users: Annotated[int, Field(ge=100, le=50_000_000)]
    merchants: Annotated[int, Field(ge=10, le=10_000_000)]
    merchant_size_alpha: Annotated[float, Field(gt=0.5, le=5.0)] = 1.16
    user_activity_shape: Annotated[float, Field(gt=0.05, le=20.0)] = 0.7
    merchant_in_home_region: Share = 0.92


class TimeModel(_Strict):
    taps_per_second: Positive
    hourly: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=24, max_length=24)]
    weekly: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=7, max_length=7)]
    drift_per_day: Annotated[float, Field(ge=-0.2, le=0.2)] = 0.0
    timezone: str = "Asia/Shanghai"


class FestivalShape(_Strict):
    multiplier: Annotated[float, Field(ge=1.0, le=100.0)] = 10.0
    ramp: Duration = timedelta(minutes=30)
    latency_factor: Annotated[float, Field(ge=1.0, le=5.0)] = 1.15

    _d = _durations("ramp")


ChurnCause = Literal["interface", "network", "risk_control", "release", "maintenance",
                     "small_merchant"]


_DEFAULT_CAUSES: tuple[ChurnCause, ...] = ("interface", "network", "risk_control", "release")


class Churn(_Strict):
    """Whether customers whose tap an incident lost come back (docs/simulator.md, churn).

    Off by default, so a traffic model or scenario that does not ask for it
    makes exactly the events it always made. The defaults are assumptions,
    stated: a lost tap at the till is the moment a customer decides whether
    flash pay is worth keeping; a fifth of them stop (``hazard``); being told
    promptly what happened and what to use instead halves that (``prompt_relief``),
    the effect customer-service leads report for proactive outage messages.
    The simulator models the notice the way the playbooks send it: to the
    customers of a paging fault, ``notice_after`` its start (detection plus the
    playbook's first step) or at once for a customer who fails later, to the
    ``reach`` share that has a contact on file.
    """

    enabled: bool = False
    hazard: Share = 0.2
    """Chance that a customer stops paying with flash pay after a tap lost in a fault."""
    prompt_relief: Share = 0.5
    """Share of the hazard removed when a notice reaches the customer within ``prompt_within``."""
    prompt_within: Duration = timedelta(minutes=30)
    notice_after: Duration = timedelta(minutes=10)
    """From a paging fault's start to the first customer notice (detection + playbook)."""
    reach: Share = 0.9
    """Share of affected customers a notice reaches (contact on file, not opted out)."""
    causes: list[ChurnCause] = Field(default_factory=lambda: list(_DEFAULT_CAUSES))
    """Faults whose lost taps drive customers away (fraud attacks: the attacker's taps)."""
    horizon: Duration = timedelta(hours=2)
    """Window after a fault over which ``truth.json`` states the true retention effect."""

    _d = _durations("prompt_within", "notice_after", "horizon")

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("horizon must be positive")
        return v


class Reaction(_Strict):
    retry_same: Share
    switch: Share
    give_up: Share

    @model_validator(mode="after")
    def _sum(self) -> Reaction:
        total = self.retry_same + self.switch + self.give_up
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"retry_same + switch + give_up must be 1 (got {total:g})")
        return self


class Behaviour(_Strict):
    after_technical: Reaction
    after_decline: Reaction
    after_risk_decline: Reaction
    retry_delay_median_s: Positive = 4.0
    retry_delay_sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.6
    persistence_decay: Share = 0.7
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 4


class Risk(_Strict):
    review_share: Share = 0.01
    insufficient_credit_elasticity: Annotated[float, Field(ge=0.0, le=3.0)] = 0.6
    reference_amount_yuan: Positive = 100.0


class Fraud(_Strict):
    share_of_taps: Annotated[float, Field(ge=0.0, le=0.05)] = 0.003
    block_rate: Share = 0.85
    patterns: Weights = Field(default_factory=lambda: {
        "account_takeover": 0.4, "device_farm": 0.3, "card_testing": 0.3})

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            if name not in FRAUD_PATTERNS:
                known = ", ".join(FRAUD_PATTERNS)
                raise ValueError(f"unknown fraud pattern {name!r} (one of {known})")
        return _positive_weights("patterns", v)


FRAUD_PATTERNS: tuple[str, ...] = ("account_takeover", "device_farm", "card_testing")


class TrafficModel(_Strict):
    """Everything that makes normal traffic look like normal traffic."""

    version: Literal[1] = 1
    population: Population
    regions: Weights
    carriers: Weights
    os: dict[str, OsModel]
    app_versions: Weights
    server_versions: Weights
    merchant_categories: dict[str, Category]
    channels: dict[str, Channel]
    client_timeout_ms: Annotated[float, Field(ge=1000.0, le=120_000.0)] = 15_000.0
    timeout_authorised_share: Share = 0.3
    time: TimeModel
    festival: FestivalShape = FestivalShape()
    behaviour: Behaviour
    risk: Risk = Risk()
    fraud: Fraud = Fraud()
    churn: Churn = Churn()

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: dict[str, float]) -> dict[str, float]:
        for r in v:
            if not _REGION_RE.match(r):
                raise ValueError(f"region {r!r} is not ISO 3166-2 (e.g. CN-GD)")
        return _positive_weights("regions", v)

    @field_validator("carriers", "app_versions", "server_versions")
    @classmethod
    def _names(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            if not _TEXT_RE.match(name):
                raise ValueError(f"{name!r}: use 1-64 letters, digits or _ . : / + -")
        return _positive_weights("values", v)

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: dict[str, Channel]) -> dict[str, Channel]:
        if not v:
            raise ValueError("at least one channel is needed")
        if len(v) > 8:
            raise ValueError("at most 8 channels")
        return v


# -- scenarios ---------------------------------------------------------------------


class Flapping(_Strict):
    """On for ``duty`` of every ``period`` (a link that keeps dropping and coming back)."""

    period: Duration
    duty: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5

    _d = _durations("period")


class _FaultBase(_Strict):
    id: str | None = None
    start: str
    """RFC 3339 with offset, or ``+<duration>`` from the scenario start."""
    end: str | None = None
    duration: Duration | None = None
    ramp_up: Duration = timedelta(0)
    ramp_down: Duration = timedelta(0)
    flapping: Flapping | None = None
    must_page: bool | None = None
    note: str = ""

    _d = _durations("duration", "ramp_up", "ramp_down")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is not None and not _TEXT_RE.match(v):
            raise ValueError(f"{v!r}: use 1-64 letters, digits or _ . : / + -")
        return v

    @model_validator(mode="after")
    def _window(self) -> _FaultBase:
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of end or duration")
        return self


class InterfaceFault(_FaultBase):
    """The card network's or a partner's interface fails for one channel."""

    kind: Literal["interface"]
    channel: str
    regions: list[str] = Field(default_factory=list)
    share: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    failure_rate: Share = 0.8
    codes: Weights = Field(default_factory=lambda: {"91": 0.5, "96": 0.5})
    timeout_share: Share = 0.15

    @field_validator("codes")
    @classmethod
    def _codes(cls, v: dict[str, float]) -> dict[str, float]:
        return _positive_weights("codes", _check_codes(v, TECHNICAL_CODES, "technical"))


class NetworkFault(_FaultBase):
    """A region's mobile network (optionally one carrier) degrades: slow, then timing out."""

    kind: Literal["network"]
    region: str | None = None
    """``None``: the carrier's network everywhere (then ``carrier`` is required)."""
    carrier: str | None = None
    timeout_rate: Share = 0.35
    latency_factor: Annotated[float, Field(ge=1.0, le=50.0)] = 4.0

    @model_validator(mode="after")
    def _where(self) -> NetworkFault:
        if self.region is None and self.carrier is None:
            raise ValueError("a network fault needs a region, a carrier, or both")
        return self


class RiskControlFault(_FaultBase):
    """A bad risk rule or model declines normal customers in a segment."""

    kind: Literal["risk_control"]
    segment: dict[str, str]
    decline_rate: Share = 0.6
    rule_version: str | None = None
    rollback: bool = True

    @field_validator("segment")
    @classmethod
    def _segment(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("a risk_control fault needs a segment, e.g. {device_model: HW-6}")
        for dim in v:
            if dim not in DIMENSIONS:
                raise ValueError(f"{dim!r} is not a dimension (one of {', '.join(DIMENSIONS)})")
        return v


class FraudAttackFault(_FaultBase):
    """A real attack the risk engine rightly blocks (not an outage to fail over from)."""

    kind: Literal["fraud_attack"]
    pattern: Literal["account_takeover", "device_farm", "card_testing"] = "device_farm"
    region: str | None = None
    merchant_id: str | None = None
    taps_per_minute: Annotated[float, Field(gt=0.0, le=100_000.0)] = 40.0
    block_rate: Share = 0.95
    scope: list[dict[str, str]] | None = None


class ReleaseFault(_FaultBase):
    """An app rollout or a gateway deploy that breaks taps."""

    kind: Literal["release"]
    target: Literal["app", "gateway"]
    version: str
    rollout: Duration = timedelta(hours=1)
    """App: time for the new version to reach ``rollout_max`` of users."""
    rollout_max: Share = 0.5
    share: Share = 0.25
    """Gateway: share of traffic the new server version takes (a canary)."""
    failure_rate: Share = 0.35
    codes: Weights = Field(default_factory=lambda: {"96": 0.7, "06": 0.3})

    _d2 = _durations("rollout")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not _TEXT_RE.match(v):
            raise ValueError(f"{v!r}: use 1-64 letters, digits or _ . : / + -")
        return v

    @field_validator("codes")
    @classmethod
    def _codes(cls, v: dict[str, float]) -> dict[str, float]:
        return _positive_weights("codes", _check_codes(v, TECHNICAL_CODES, "technical"))


class MaintenanceDecoy(_FaultBase):
    """An announced maintenance window (in the changes file): must not page."""

    kind: Literal["maintenance"]
    channel: str
    failure_rate: Share = 0.9
    hide_share: Share = 0.7
    """Share of customers whose app hides the channel during the window."""
    codes: Weights = Field(default_factory=lambda: {"91": 1.0})


class SmallMerchantDecoy(_FaultBase):
    """One small merchant's declines (a terminal or contract problem): must not page."""

    kind: Literal["small_merchant"]
    merchant_id: str | None = None
    decline_rate: Share = 0.6
    codes: Weights = Field(default_factory=lambda: {"05": 0.5, "57": 0.5})

    @field_validator("codes")
    @classmethod
    def _codes(cls, v: dict[str, float]) -> dict[str, float]:
        return _positive_weights("codes", _check_codes(v, DECLINE_CODES, "decline"))


FaultSpec = Annotated[
    InterfaceFault | NetworkFault | RiskControlFault | FraudAttackFault | ReleaseFault
    | MaintenanceDecoy | SmallMerchantDecoy,
    Field(discriminator="kind"),
]

FAULT_KINDS: tuple[str, ...] = ("interface", "network", "risk_control", "fraud_attack", "release")
DECOY_KINDS: tuple[str, ...] = ("maintenance", "small_merchant", "festival")


class Festival(_Strict):
    start: str
    duration: Duration
    multiplier: Annotated[float, Field(ge=1.0, le=100.0)] | None = None
    ramp: Duration | None = None
    """How fast traffic builds up and falls back (default: the traffic model's); a
    flash sale starts and ends within a minute or two."""
    name: str = "shopping festival"

    _d = _durations("duration", "ramp")


class ChangeRow(_Strict):
    """An extra (harmless) row for the changes file."""

    ts: str
    kind: Literal["deploy", "config", "rule_change", "maintenance"]
    component: str
    version: str | None = None
    end_ts: str | None = None
    note: str = ""


class Scenario(_Strict):
    """One simulated stretch of time: traffic, a festival maybe, faults and decoys."""

    name: str
    description: str = ""
    why: str = ""
    start: str
    duration: Duration
    seed: int = 1
    traffic: str = "default"
    scale: Annotated[float, Field(gt=0.0, le=1000.0)] = 1.0
    festival: Festival | None = None
    changes: list[ChangeRow] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    churn: Churn | None = None
    """Replaces the traffic model's churn block for this scenario (``churn: {enabled: true}``)."""
    source: Path | None = Field(default=None, exclude=True)

    _d = _durations("duration")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TEXT_RE.match(v):
            raise ValueError(f"{v!r}: use 1-64 letters, digits or _ . : / + -")
        return v

    @field_validator("duration")
    @classmethod
    def _dur(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0) or v > timedelta(days=120):
            raise ValueError("duration must be positive and at most 120 days")
        return v

    @model_validator(mode="after")
    def _ids(self) -> Scenario:
        seen: set[str] = set()
        for i, f in enumerate(self.faults):
            fid = f.id or f"{f.kind}-{i + 1}"
            if fid in seen or fid == "festival":
                raise ValueError(f"fault id {fid!r} is used twice")
            seen.add(fid)
        return self

    # -- derived -------------------------------------------------------------------

    @property
    def start_ts(self) -> datetime:
        return parse_rfc3339(self.start)

    @property
    def end_ts(self) -> datetime:
        return self.start_ts + self.duration

    def at(self, text: str) -> datetime:
        """An instant written in the scenario: RFC 3339, or ``+<duration>`` after its start."""
        if text.startswith("+"):
            return self.start_ts + parse_duration(text[1:])
        return parse_rfc3339(text)

    def fault_ids(self) -> list[str]:
        return [f.id or f"{f.kind}-{i + 1}" for i, f in enumerate(self.faults)]

    def window(self, fault: _FaultBase) -> tuple[datetime, datetime]:
        start = self.at(fault.start)
        if fault.end is not None:
            return start, self.at(fault.end)
        assert fault.duration is not None
        return start, start + fault.duration

    def with_changes(self, **updates: Any) -> Scenario:
        """A copy with some top-level fields replaced (e.g. ``scale``, ``duration``)."""
        data = self.model_dump(exclude={"source"})
        data.update(updates)
        out = Scenario.model_validate(data)
        object.__setattr__(out, "source", self.source)
        return out


# -- loading -----------------------------------------------------------------------


FAULT_KIND_TAGS = frozenset(("interface", "network", "risk_control", "fraud_attack", "release",
                             "maintenance", "small_merchant"))


def _load(model: type[BaseModel], text: str, source: str) -> Any:
    return load_model(model, text, source, error=ScenarioError, tags=FAULT_KIND_TAGS,
                      docs="docs/simulator.md")


_PACKAGE = "tapshield.simulate"


@cache
def _default_traffic_text() -> str:
    return resources.files(_PACKAGE).joinpath("traffic.yaml").read_text(encoding="utf-8")


def load_traffic(name_or_path: str | Path = "default", *, base: Path | None = None) -> TrafficModel:
    """The traffic model: ``default`` (the packaged one) or a YAML file."""
    if str(name_or_path) == "default":
        model: TrafficModel = _load(TrafficModel, _default_traffic_text(), "traffic.yaml")
        return model
    path = Path(name_or_path)
    if not path.is_absolute() and base is not None and not path.exists():
        path = base / path
    if not path.exists():
        raise ScenarioError(f"traffic model {str(name_or_path)!r}: no such file")
    traffic: TrafficModel = _load(TrafficModel, path.read_text(encoding="utf-8"), path.name)
    return traffic


def scenario_names() -> list[str]:
    """Names of the packaged scenario library."""
    folder = resources.files(_PACKAGE).joinpath("scenarios")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario from the packaged library (by name) or from a YAML file (by path).

    The scenario is checked against its traffic model too, so a fault on a
    channel or region the model does not have is refused here, not halfway
    through a ten-million-event run.
    """
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ScenarioError(f"{path}: no such scenario file")
        scenario: Scenario = _load(Scenario, path.read_text(encoding="utf-8"), path.name)
        object.__setattr__(scenario, "source", path.resolve())
    else:
        names = scenario_names()
        if text_name not in names:
            raise ScenarioError(
                f"unknown scenario {text_name!r}: give a YAML file or one of {', '.join(names)}"
            )
        res = resources.files(_PACKAGE).joinpath(f"scenarios/{text_name}.yaml")
        scenario = _load(Scenario, res.read_text(encoding="utf-8"), f"{text_name}.yaml")
    check_scenario(scenario, traffic_of(scenario))
    return scenario


def traffic_of(scenario: Scenario) -> TrafficModel:
    base = scenario.source.parent if scenario.source is not None else None
    return load_traffic(scenario.traffic, base=base)


def check_scenario(scenario: Scenario, traffic: TrafficModel) -> None:
    """Rules that need both files: every name a fault uses must exist in the traffic."""
    src = scenario.source.name if scenario.source is not None else f"{scenario.name}.yaml"
    problems: list[str] = []

    def bad(where: str, msg: str) -> None:
        problems.append(f"{src}: {where}: {msg}")

    def instant(where: str, text: str) -> datetime | None:
        try:
            return scenario.at(text)
        except ValueError as exc:
            bad(where, f"not an RFC 3339 time with an offset or '+<duration>' ({exc})")
            return None

    start = instant("start", scenario.start) if not scenario.start.startswith("+") else None
    if scenario.start.startswith("+"):
        bad("start", "the scenario start must be an absolute RFC 3339 time")
    if start is None:
        raise ScenarioError("\n".join(problems))
    end = scenario.end_ts
    versions_app = set(traffic.app_versions)
    versions_srv = set(traffic.server_versions)
    for f in scenario.faults:
        if isinstance(f, ReleaseFault):
            (versions_app if f.target == "app" else versions_srv).add(f.version)
    if scenario.festival is not None:
        instant("festival.start", scenario.festival.start)
    for i, c in enumerate(scenario.changes):
        instant(f"changes[{i}].ts", c.ts)
        if c.end_ts is not None:
            instant(f"changes[{i}].end_ts", c.end_ts)
    known: dict[str, set[str]] = {
        "channel": set(traffic.channels),
        "region": set(traffic.regions),
        "carrier": set(traffic.carriers),
        "os": set(traffic.os),
        "device_model": {m for o in traffic.os.values() for m in o.models},
        "app_version": versions_app,
        "server_version": versions_srv,
        "merchant_category": set(traffic.merchant_categories),
    }

    def value(where: str, dim: str, v: str) -> None:
        if dim == "merchant_id":
            if not re.match(r"^m\d+$", v) or int(v[1:]) >= traffic.population.merchants:
                bad(where, f"merchant {v!r} is not in the population "
                           f"(m0 .. m{traffic.population.merchants - 1})")
        elif v not in known[dim]:
            bad(where, f"{dim} {v!r} is not in the traffic model (one of "
                       f"{', '.join(sorted(known[dim]))})")

    for i, f in enumerate(scenario.faults):
        w = f"faults[{i}]"
        s = instant(f"{w}.start", f.start)
        e = instant(f"{w}.end", f.end) if f.end is not None else (
            s + f.duration if s is not None and f.duration is not None else None)
        if s is not None and e is not None:
            if e <= s:
                bad(f"{w}.end", "must be after start")
            if s >= end or e <= start:
                bad(f"{w}.start", "the fault lies outside the scenario's time window")
        if isinstance(f, InterfaceFault | MaintenanceDecoy):
            value(f"{w}.channel", "channel", f.channel)
        if isinstance(f, InterfaceFault):
            for j, r in enumerate(f.regions):
                value(f"{w}.regions[{j}]", "region", r)
        if isinstance(f, NetworkFault):
            if f.region is not None:
                value(f"{w}.region", "region", f.region)
            if f.carrier is not None:
                value(f"{w}.carrier", "carrier", f.carrier)
        if isinstance(f, RiskControlFault):
            for dim, v in f.segment.items():
                value(f"{w}.segment.{dim}", dim, v)
        if isinstance(f, FraudAttackFault):
            if f.region is not None:
                value(f"{w}.region", "region", f.region)
            if f.merchant_id is not None:
                value(f"{w}.merchant_id", "merchant_id", f.merchant_id)
            for j, combo in enumerate(f.scope or []):
                for dim in combo:
                    if dim not in DIMENSIONS:
                        bad(f"{w}.scope[{j}]", f"{dim!r} is not a dimension")
        if isinstance(f, SmallMerchantDecoy) and f.merchant_id is not None:
            value(f"{w}.merchant_id", "merchant_id", f.merchant_id)
        if isinstance(f, ReleaseFault):
            base = traffic.app_versions if f.target == "app" else traffic.server_versions
            if f.version in base:
                bad(f"{w}.version", f"{f.version!r} is already deployed in the traffic model; "
                                    "a release brings a new version")
    if problems:
        raise ScenarioError("\n".join(problems))

