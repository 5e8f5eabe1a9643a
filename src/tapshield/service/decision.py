"""The decision port of ``POST /v1/authorize``: approve, step up or decline.

The service asks a :class:`Decider` once per attempt, before routing. The
config chooses it: :class:`EngineDecider`, the risk engine of issue 14
(``tapshield.risk.RiskEngine``: rules only, or a trained model), when
``risk:`` is set; else :class:`RuleSetDecider`, a small configured rule set
whose default is ``approve``. Both fill the same two-member protocol
(``version`` and ``decide``), so nothing else in the service changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tapshield.money import parse_yuan
from tapshield.service.config import DecisionRule, DecisionSettings, RiskSettings

SEVERITY = {"approve": 0, "step_up": 1, "decline": 2}


@dataclass(frozen=True, slots=True)
class TapRequest:
    """One authorisation request: the event-contract fields known before the answer."""

    payment_id: str
    attempt_id: str
    user_id: str
    device_id: str
    merchant_id: str
    amount_fen: int
    region: str
    channels: tuple[str, ...] | None = None
    """Channels the customer can use (``None``: every routed channel)."""
    carrier: str | None = None
    os: str | None = None
    app_version: str | None = None
    device_model: str | None = None
    merchant_category: str | None = None
    ts: float = 0.0
    """When the service received it (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: str
    """``approve``, ``step_up`` (strong verification first) or ``decline``."""
    reasons: tuple[str, ...]
    version: str
    """Rule set or model version, carried on the answer so a diagnosis can name it."""


class Decider(Protocol):
    """What the service needs from a risk decision (rules now, the engine later).

    ``decide`` runs on the service's tap-book thread once per new attempt;
    it must not block on the network.
    """

    @property
    def version(self) -> str: ...

    def decide(self, request: TapRequest) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    decision: str
    reason: str
    when: tuple[tuple[str, frozenset[str]], ...]
    at_least_fen: int | None
    below_fen: int | None

    def matches(self, r: TapRequest) -> bool:
        if self.at_least_fen is not None and r.amount_fen < self.at_least_fen:
            return False
        if self.below_fen is not None and r.amount_fen >= self.below_fen:
            return False
        return all(getattr(r, f) in values for f, values in self.when)


def _fen(v: object) -> int | None:
    return None if v is None else parse_yuan(f"{v:f}")


class RuleSetDecider:
    """The configured rule set (see :class:`~tapshield.service.config.DecisionSettings`)."""

    def __init__(self, settings: DecisionSettings | None = None) -> None:
        s = settings or DecisionSettings()
        self.default = s.default
        self.version = s.version
        self._rules: Sequence[_Rule] = [self._compile(r) for r in s.rules]

    @staticmethod
    def _compile(r: DecisionRule) -> _Rule:
        return _Rule(r.name, r.decision, r.reason,
                     tuple((k, frozenset(v)) for k, v in r.when.items()),
                     _fen(r.amount_at_least), _fen(r.amount_below))

    def decide(self, request: TapRequest) -> Verdict:
        hit = [r for r in self._rules if r.matches(request)]
        if not hit:
            return Verdict(self.default, (), self.version)
        worst = max(SEVERITY[r.decision] for r in hit)
        reasons = tuple(f"{r.name}: {r.reason}" if r.reason else r.name
                        for r in hit if SEVERITY[r.decision] == worst)
        return Verdict(next(r.decision for r in hit if SEVERITY[r.decision] == worst),
                       reasons, self.version)


class EngineDecider:
    """The risk engine (``tapshield.risk.RiskEngine``, docs/risk.md) behind the port.

    Config ``risk:`` chooses rules only (``model_dir`` unset: the engine with no
    model, its YAML rules, lists and restrictions) or a trained model directory
    (its feature state restored from the directory). Each tap is one engine
    request keyed by ``payment_id``: a failover attempt of the same tap gets the
    tap's decision again and is counted once in the velocity features.

    ``decide`` runs on the tap book's thread; ``observe``, ``label``,
    ``restrict`` and ``lift`` on request threads: the engine's own lock orders
    them.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, risk: RiskSettings) -> EngineDecider:
        from tapshield.risk.engine import EngineConfig, RiskEngine, known_name
        from tapshield.risk.rules import EMPTY_RULES, load_rules

        cfg = EngineConfig(model_mode=risk.model_mode)
        if risk.model_dir is not None:
            return cls(RiskEngine.from_dir(risk.model_dir, risk.rules_file, config=cfg))
        rules = (load_rules(risk.rules_file, known=known_name())
                 if risk.rules_file is not None else EMPTY_RULES)
        return cls(RiskEngine(None, rules, config=cfg))

    @property
    def version(self) -> str:
        e = self.engine
        return f"rules:{e.rules.version}+model:{e.model_version}"

    def decide(self, request: TapRequest) -> Verdict:
        from tapshield.risk.engine import Request

        ctx = {"payment_id": request.payment_id, "region": request.region,
               "carrier": request.carrier, "os": request.os,
               "app_version": request.app_version, "device_model": request.device_model,
               "merchant_category": request.merchant_category, "channel": None}
        d = self.engine.decide(Request(
            event_id=request.payment_id, ts=datetime.fromtimestamp(request.ts, UTC),
            amount_fen=request.amount_fen, user_id=request.user_id,
            device_id=request.device_id, merchant_id=request.merchant_id, context=ctx))
        return Verdict(d.decision, tuple(d.reasons),
                       f"rules:{d.rule_version}+model:{d.model_version}")

    # -- what the service feeds back ------------------------------------------------

    def settled(self, outcomes: Sequence[Any]) -> None:
        """OutcomeListener: a stepped-up tap that was approved passed its strong
        verification (or the gateway said so, ``step_up_passed``)."""
        for s in outcomes:
            if s.decision != "step_up":
                continue
            passed = s.step_up_passed if s.step_up_passed is not None else (
                s.outcome == "approved")
            self.engine.observe_result(s.request.get("payment_id") or s.attempt_id,
                                       bool(passed), datetime.fromtimestamp(s.at, UTC))
