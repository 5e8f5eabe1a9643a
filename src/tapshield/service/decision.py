"""The decision port of ``POST /v1/authorize``: approve, step up or decline.

The service asks a :class:`Decider` once per attempt, before routing. Until
the risk engine (issue 14, ``tapshield.risk.RiskEngine``) is merged the
decider is :class:`RuleSetDecider`, a small configured rule set whose default
is ``approve``; the engine plugs in behind the same two-member protocol
(``version`` and ``decide``), so nothing else in the service changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from tapshield.money import parse_yuan
from tapshield.service.config import DecisionRule, DecisionSettings

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

    version: str

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
