"""Faults and decoys, compiled from a scenario into vectorised masks and rates.

A compiled fault answers three questions about a batch of attempts, all as
arrays: *is this attempt in my scope* (:meth:`CompiledFault.mask`), *how hard
am I hitting right now* (:meth:`CompiledFault.intensity`: the peak rate times
the ramp and the flapping duty cycle), and *what does my failure look like*
(codes, timeouts, latency). Its ground truth (cause, scope as an incident
would write it, whether it must page) and the rows it leaves in the changes
file are derived here too, so the truth can never disagree with the effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import polars as pl

from tapshield.events.changes import CHANGES
from tapshield.simulate.clock import ramp_shape
from tapshield.simulate.model import (
    FraudAttackFault,
    InterfaceFault,
    MaintenanceDecoy,
    NetworkFault,
    ReleaseFault,
    RiskControlFault,
    Scenario,
    SmallMerchantDecoy,
    TrafficModel,
)
from tapshield.simulate.population import Population, Vocab
from tapshield.timeutil import DEFAULT_TZ, epoch_us, to_rfc3339

Arrays = dict[str, np.ndarray]
Stage = Literal["technical", "risk", "business", "traffic"]
Signature = Literal["technical", "risk_decline", "decline", "traffic"]

DIM_KEYS: dict[str, str] = {
    "channel": "ch",
    "region": "region",
    "carrier": "carrier",
    "os": "os",
    "device_model": "model",
    "app_version": "app",
    "server_version": "srv",
    "merchant_id": "merchant",
    "merchant_category": "category",
}
"""Scope dimension -> key of the attempt arrays holding its code."""

STAGE_OF: dict[str, Stage] = {
    "interface": "technical", "network": "technical", "release": "technical",
    "maintenance": "technical", "risk_control": "risk", "fraud_attack": "risk",
    "small_merchant": "business", "festival": "traffic",
}
SIGNATURE_OF: dict[str, Signature] = {
    "technical": "technical", "risk": "risk_decline", "business": "decline",
    "traffic": "traffic",
}


def dim_code(vocab: Vocab, dim: str, value: str) -> int:
    """The integer code of ``value`` in dimension ``dim`` (-1 if unknown)."""
    if dim == "merchant_id":
        return int(value[1:]) if value[:1] == "m" and value[1:].isdigit() else -1
    values = vocab.values(dim)
    return values.index(value) if value in values else -1


def scope_mask(scope: list[dict[str, str]], arrays: Arrays, vocab: Vocab) -> np.ndarray:
    """Attempts inside any combination of ``scope`` (``[]`` = all), like
    :func:`tapshield.incident.scope_expr` but on code arrays."""
    n = arrays["ts"].size
    if not scope:
        return np.ones(n, dtype=bool)
    out = np.zeros(n, dtype=bool)
    for combo in scope:
        term = np.ones(n, dtype=bool)
        for dim, value in combo.items():
            term &= arrays[DIM_KEYS[dim]] == dim_code(vocab, dim, value)
        out |= term
    return out


@dataclass(slots=True)
class CompiledFault:
    """One fault or decoy, ready to act on arrays of attempts."""

    index: int
    id: str
    kind: str
    must_page: bool
    start: datetime
    end: datetime
    start_us: int
    end_us: int
    ramp_up_us: int
    ramp_down_us: int
    peak: float
    scope: list[dict[str, str]]
    note: str = ""
    flap_period_us: int = 0
    flap_duty: float = 1.0
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    code_p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    timeout_share: float = 0.0
    latency_factor: float = 1.0
    share: float = 1.0
    channel: int = -1
    regions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    carrier: int = -1
    version: int = -1
    target: str = ""
    merchant: int = -1
    rollout_us: int = 0
    rollout_max: float = 0.0
    hide_share: float = 0.0
    pattern: str = ""
    region: int = -1
    params: dict[str, object] = field(default_factory=dict)

    @property
    def stage(self) -> Stage:
        return STAGE_OF[self.kind]

    @property
    def signature(self) -> Signature:
        return SIGNATURE_OF[self.stage]

    @property
    def cause(self) -> str:
        return self.kind

    def intensity(self, ts: np.ndarray) -> np.ndarray:
        """Peak rate x ramp x flapping at each instant (0 outside the window)."""
        shape = ramp_shape(ts, self.start_us, self.end_us, self.ramp_up_us, self.ramp_down_us)
        if self.flap_period_us > 0:
            phase = ((ts - self.start_us) % self.flap_period_us) / self.flap_period_us
            shape = shape * (phase < self.flap_duty)
        return shape * self.peak

    def active(self, ts: np.ndarray) -> np.ndarray:
        return (ts >= self.start_us) & (ts < self.end_us)

    def mask(self, a: Arrays, vocab: Vocab) -> np.ndarray:
        """Attempts this fault acts on (before its rate and time window)."""
        k = self.kind
        if k in ("interface", "maintenance"):
            m = a["ch"] == self.channel
            if self.regions.size:
                m &= np.isin(a["region"], self.regions)
            return np.asarray(m)
        if k == "network":
            m = (a["region"] == self.region) if self.region >= 0 else np.ones(
                a["carrier"].shape[0], dtype=np.bool_)
            if self.carrier >= 0:
                m &= a["carrier"] == self.carrier
            return np.asarray(m)
        if k == "release":
            return np.asarray(a["app" if self.target == "app" else "srv"] == self.version)
        if k == "small_merchant":
            return np.asarray(a["merchant"] == self.merchant)
        if k == "fraud_attack":
            return np.asarray(a["attack"] == self.index)
        return scope_mask(self.scope, a, vocab)  # risk_control: its segment

    def rollout_share(self, ts: np.ndarray) -> np.ndarray:
        """App release: share of customers on the new version at each instant."""
        if self.rollout_us <= 0:
            return np.where(ts >= self.start_us, self.rollout_max, 0.0)
        return self.rollout_max * np.clip((ts - self.start_us) / self.rollout_us, 0.0, 1.0)


def _codes(vocab: Vocab, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return np.asarray([vocab.code(n) for n in names], dtype=np.int16), p / p.sum()


def _us(td: object) -> int:
    from datetime import timedelta

    assert isinstance(td, timedelta)
    return int(td.total_seconds() * 1_000_000)


def compile_faults(
    scenario: Scenario, traffic: TrafficModel, vocab: Vocab, pop: Population
) -> list[CompiledFault]:
    """Every fault and decoy of the scenario, in the order they are listed."""
    out: list[CompiledFault] = []
    ids = scenario.fault_ids()
    for i, f in enumerate(scenario.faults):
        start, end = scenario.window(f)
        base: dict[str, Any] = {
            "index": i, "id": ids[i], "kind": f.kind, "start": start, "end": end,
            "start_us": epoch_us(start), "end_us": epoch_us(end),
            "ramp_up_us": _us(f.ramp_up), "ramp_down_us": _us(f.ramp_down), "note": f.note,
            "flap_period_us": _us(f.flapping.period) if f.flapping else 0,
            "flap_duty": f.flapping.duty if f.flapping else 1.0,
        }
        decoy = isinstance(f, MaintenanceDecoy | SmallMerchantDecoy)
        must_page = f.must_page if f.must_page is not None else not decoy
        cf: CompiledFault
        if isinstance(f, InterfaceFault):
            codes, p = _codes(vocab, f.codes)
            regs = np.asarray([vocab.regions.index(r) for r in f.regions], dtype=np.int16)
            scope = ([{"channel": f.channel, "region": r} for r in f.regions]
                     if f.regions else [{"channel": f.channel}])
            cf = CompiledFault(**base, must_page=must_page, peak=f.failure_rate, scope=scope,
                               codes=codes, code_p=p, timeout_share=f.timeout_share,
                               share=f.share, channel=vocab.channels.index(f.channel),
                               regions=regs)
        elif isinstance(f, NetworkFault):
            combo = {"region": f.region} if f.region is not None else {}
            if f.carrier is not None:
                combo["carrier"] = f.carrier
            cf = CompiledFault(**base, must_page=must_page, peak=f.timeout_rate, scope=[combo],
                               codes=np.asarray([vocab.code("68")], dtype=np.int16),
                               code_p=np.ones(1), timeout_share=1.0,
                               latency_factor=f.latency_factor,
                               region=vocab.regions.index(f.region) if f.region else -1,
                               carrier=vocab.carriers.index(f.carrier) if f.carrier else -1)
        elif isinstance(f, RiskControlFault):
            cf = CompiledFault(**base, must_page=must_page, peak=f.decline_rate,
                               scope=[dict(f.segment)],
                               codes=np.asarray([vocab.code("59")], dtype=np.int16),
                               code_p=np.ones(1),
                               params={"rule_version": f.rule_version or f"rules-{ids[i]}",
                                       "rollback": f.rollback})
        elif isinstance(f, FraudAttackFault):
            merchant = int(f.merchant_id[1:]) if f.merchant_id else -1
            if f.pattern == "card_testing" and merchant < 0:
                merchant = pop.small_merchant()
            region = vocab.regions.index(f.region) if f.region else -1
            if f.scope is not None:
                scope = [dict(c) for c in f.scope]
            elif merchant >= 0:
                scope = [{"merchant_id": f"m{merchant}"}]
            elif region >= 0:
                scope = [{"region": f.region or ""}]
            else:
                scope = []
            cf = CompiledFault(**base, must_page=must_page, peak=f.block_rate, scope=scope,
                               codes=np.asarray([vocab.code("59")], dtype=np.int16),
                               code_p=np.ones(1), pattern=f.pattern, merchant=merchant,
                               region=region, params={"taps_per_minute": f.taps_per_minute})
        elif isinstance(f, ReleaseFault):
            codes, p = _codes(vocab, f.codes)
            dim = "app_version" if f.target == "app" else "server_version"
            versions = vocab.app_versions if f.target == "app" else vocab.server_versions
            cf = CompiledFault(**base, must_page=must_page, peak=f.failure_rate,
                               scope=[{dim: f.version}], codes=codes, code_p=p,
                               target=f.target, version=versions.index(f.version),
                               share=f.share, rollout_us=_us(f.rollout),
                               rollout_max=f.rollout_max)
        elif isinstance(f, MaintenanceDecoy):
            codes, p = _codes(vocab, f.codes)
            cf = CompiledFault(**base, must_page=must_page, peak=f.failure_rate,
                               scope=[{"channel": f.channel}], codes=codes, code_p=p,
                               channel=vocab.channels.index(f.channel),
                               hide_share=f.hide_share)
        else:
            assert isinstance(f, SmallMerchantDecoy)
            merchant = int(f.merchant_id[1:]) if f.merchant_id else pop.small_merchant()
            codes, p = _codes(vocab, f.codes)
            cf = CompiledFault(**base, must_page=must_page, peak=f.decline_rate,
                               scope=[{"merchant_id": f"m{merchant}"}], codes=codes, code_p=p,
                               merchant=merchant)
        out.append(cf)
    return out


# -- the changes file ------------------------------------------------------------------


def change_rows(scenario: Scenario, traffic: TrafficModel, faults: list[CompiledFault],
                tz: str = DEFAULT_TZ) -> list[dict[str, str | None]]:
    """The changes a real team would have logged: deploys, rule changes, maintenance."""
    rows: list[tuple[datetime, dict[str, str | None]]] = []

    def add(ts: datetime, kind: str, component: str, version: str | None = None,
            end: datetime | None = None, note: str = "") -> None:
        rows.append((ts, {"ts": to_rfc3339(ts, tz), "kind": kind, "component": component,
                          "version": version, "end_ts": to_rfc3339(end, tz) if end else None,
                          "note": note}))

    old_gateway = max(traffic.server_versions, key=lambda k: traffic.server_versions[k])
    for f in faults:
        if f.kind == "risk_control":
            version = str(f.params["rule_version"])
            add(f.start, "rule_change", "risk_rules", version, note=f"rule set {version}")
            if f.params.get("rollback"):
                add(f.end, "rule_change", "risk_rules", f"rollback:{version}",
                    note=f"rolled back {version}")
        elif f.kind == "release" and f.target == "app":
            version = f"{_version(f)}"
            add(f.start, "deploy", "app", version, note="app rollout started")
            add(f.end, "config", "app", f"kill-switch:{version}",
                note="feature of the new version switched off")
        elif f.kind == "release":
            add(f.start, "deploy", "gateway", _version(f), note=f"canary at {f.share:.0%}")
            add(f.end, "deploy", "gateway", old_gateway, note="rolled back")
        elif f.kind == "maintenance":
            add(f.start, "maintenance", f"channel:{_channel(f, traffic)}", None, end=f.end,
                note="announced maintenance window")
    for c in scenario.changes:
        ts = scenario.at(c.ts)
        end = scenario.at(c.end_ts) if c.end_ts else None
        add(ts, c.kind, c.component, c.version, end=end, note=c.note)
    rows.sort(key=lambda r: r[0])
    return [r for _, r in rows]


def _version(f: CompiledFault) -> str:
    return str(f.scope[0].get("app_version") or f.scope[0].get("server_version"))


def _channel(f: CompiledFault, traffic: TrafficModel) -> str:
    return list(traffic.channels)[f.channel]


def changes_frame(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    """The changes rows as the canonical (validated) changes frame."""
    raw = pl.DataFrame(rows, schema=dict.fromkeys(CHANGES.names, pl.String()))
    result = CHANGES.validate(raw, source="simulated changes")
    if result.rejects.height:  # pragma: no cover - a bug in the simulator, not in input
        raise AssertionError(f"simulated changes break the contract: {result.errors()}")
    return result.valid.sort("ts")

