"""The routing policies tapshield is measured against, re-implemented from
their public descriptions (no code copied), plus the oracle.

All of them fail over inside the tap like tapshield does (except
:class:`NoFailover`), so the comparison isolates *which channel* each policy
picks and *how it treats a timeout*. Like the originals they:

* count every non-approved answer against the channel, business declines
  included (they see a failed call, not an ISO 8583 class);
* retry blindly after a timeout (:class:`BlindTap`), which is how a timeout
  that was in fact authorised turns into a double authorisation;
* wait for the channel's own timeout instead of a router-side deadline.

Policies:

* :class:`NoFailover`: first eligible channel in priority order, one attempt.
* :class:`DecisionEngine`: Juspay decision-engine style elimination: a
  multiplicative health score per channel starting at 1, x0.95 on failure,
  x1.0526 on success (capped at 1); below 0.35 the channel's score is divided
  by 5, which demotes it behind every healthy channel; priority order
  otherwise. No time decay: a demoted channel that gets no traffic stays
  demoted.
* :class:`HyperswitchRule`: a channel with at least 5 failures in the last
  60 s is eliminated; 20 % of the taps that would have used it still do
  (exploration, i.e. customers as probes).
* :class:`Resilience4jBreaker`: a count-based circuit breaker per channel:
  window of 100 calls, opens at a failure rate of 50 % once 100 calls were
  seen, stays open 60 s, then half-open with 10 permitted calls that close
  it (failure rate below 50 %) or open it again.
* :class:`Oracle`: knows each channel's true technical failure probability
  for the tap (from the simulator) and at every step takes the channel with
  the highest true success probability per millisecond of attempt deadline
  (retries included), resolving timeouts like tapshield (by inquiry, or by
  an immediate reversal when the channel truly fails at the outage rate):
  the floor no router can realistically beat.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from tapshield.route.config import DEFAULT_ORDER, RouterConfig
from tapshield.route.router import Decision
from tapshield.route.tap import Action, Attempt, AttemptState, TapSession

_NONE: frozenset[str] = frozenset()


def _first(order: tuple[str, ...], eligible: Collection[str], tried: Collection[str]) -> str | None:
    for ch in order:
        if ch in eligible and ch not in tried:
            return ch
    return None


class _Base:
    name = "base"
    resolves_timeouts = False
    fails_over = True

    def __init__(self, order: tuple[str, ...] = DEFAULT_ORDER) -> None:
        self.order = order

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        return None

    def _none(self, eligible: Collection[str], tried: Collection[str], why: str) -> Decision:
        if _first(self.order, eligible, ()) is None:
            return Decision(None, "no eligible channel")
        return Decision(None, why)


class NoFailover(_Base):
    name = "no_failover"
    fails_over = False

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NONE,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        ch = _first(self.order, eligible, tried)
        return Decision(ch, "first in order") if ch else self._none(eligible, tried, "tried")


class DecisionEngine(_Base):
    name = "decision_engine"

    def __init__(
        self,
        order: tuple[str, ...] = DEFAULT_ORDER,
        *,
        penalty: float = 0.95,
        reward: float = 1.0526,
        threshold: float = 0.35,
        demotion: float = 5.0,
    ) -> None:
        super().__init__(order)
        self.penalty, self.reward, self.threshold, self.demotion = (
            penalty, reward, threshold, demotion)
        self.health = dict.fromkeys(order, 1.0)
        self._rank = {ch: i for i, ch in enumerate(order)}

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NONE,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        best: str | None = None
        best_key: tuple[float, float] = (-1.0, 0.0)
        for ch in self.order:
            if ch not in eligible or ch in tried:
                continue
            h = self.health[ch]
            score = 1.0 if h >= self.threshold else h / self.demotion
            key = (score, -self._rank[ch])
            if key > best_key:
                best, best_key = ch, key
        return Decision(best, "scored") if best else self._none(eligible, tried, "tried")

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        h = self.health.get(channel)
        if h is None:
            return
        if outcome == "approved":
            self.health[channel] = min(1.0, h * self.reward)
        else:
            self.health[channel] = h * self.penalty


class HyperswitchRule(_Base):
    name = "hyperswitch"

    def __init__(
        self,
        order: tuple[str, ...] = DEFAULT_ORDER,
        *,
        failures: int = 5,
        window_s: float = 60.0,
        exploration: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(order)
        self.failures, self.window_s, self.exploration = failures, window_s, exploration
        self._fails: dict[str, deque[float]] = {ch: deque() for ch in order}
        self._rng = random.Random(seed)

    def _eliminated(self, ch: str, now: float) -> bool:
        q = self._fails[ch]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return len(q) >= self.failures

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NONE,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        first: str | None = None
        for ch in self.order:
            if ch not in eligible or ch in tried:
                continue
            if first is None:
                first = ch
            if not self._eliminated(ch, now) or self._rng.random() < self.exploration:
                return Decision(ch, "rule")
        # Everything eliminated: a gateway still sends the payment somewhere.
        return Decision(first, "all eliminated") if first else self._none(eligible, tried, "tried")

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        q = self._fails.get(channel)
        if q is not None and outcome != "approved":
            q.append(now)


@dataclass(slots=True)
class _Breaker:
    state: str = "closed"
    window: deque[bool] | None = None
    failures: int = 0
    opened_at: float = 0.0
    permits: int = 0
    half_results: list[bool] | None = None


class Resilience4jBreaker(_Base):
    name = "resilience4j"

    def __init__(
        self,
        order: tuple[str, ...] = DEFAULT_ORDER,
        *,
        window: int = 100,
        minimum_calls: int = 100,
        failure_rate: float = 0.5,
        open_s: float = 60.0,
        half_open_calls: int = 10,
    ) -> None:
        super().__init__(order)
        self.size, self.minimum, self.rate = window, minimum_calls, failure_rate
        self.open_s, self.half_open_calls = open_s, half_open_calls
        self._b = {ch: _Breaker(window=deque(maxlen=window)) for ch in order}

    def _permits(self, ch: str, now: float) -> bool:
        b = self._b[ch]
        if b.state == "open" and now >= b.opened_at + self.open_s:
            b.state, b.permits, b.half_results = "half_open", self.half_open_calls, []
        if b.state == "closed":
            return True
        return b.state == "half_open" and b.permits > 0

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NONE,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        for ch in self.order:
            if ch in eligible and ch not in tried and self._permits(ch, now):
                b = self._b[ch]
                if b.state == "half_open":
                    b.permits -= 1
                return Decision(ch, b.state)
        return self._none(eligible, tried, "call not permitted: every breaker is open")

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        b = self._b.get(channel)
        if b is None:
            return
        failed = outcome != "approved"
        if b.state == "half_open" and b.half_results is not None:
            b.half_results.append(failed)
            if len(b.half_results) >= self.half_open_calls:
                if sum(b.half_results) / len(b.half_results) >= self.rate:
                    b.state, b.opened_at = "open", now
                else:
                    b.state = "closed"
                    b.window = deque(maxlen=self.size)
                    b.failures = 0
            return
        if b.state != "closed" or b.window is None:
            return  # a late answer to a call made before the breaker opened
        if len(b.window) == self.size and b.window[0]:
            b.failures -= 1
        b.window.append(failed)
        b.failures += failed
        if len(b.window) >= self.minimum and b.failures / len(b.window) >= self.rate:
            b.state, b.opened_at = "open", now


class Oracle(_Base):
    """Knows the truth: ``context`` maps channel -> true technical failure
    probability for this tap."""

    name = "oracle"
    resolves_timeouts = True

    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()
        super().__init__(self.config.order)

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NONE,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        truth: Mapping[str, float] = context or {}
        budget = self.config.budget_ms if budget_left_ms is None else budget_left_ms
        best: str | None = None
        best_rate = -1.0
        for ch in self.order:
            if ch in eligible:
                deadline = min(self.config.profile(ch).slow_ms, budget)
                rate = (1.0 - truth.get(ch, 0.0)) / deadline
                if rate > best_rate:
                    best, best_rate = ch, rate
        if best is None:
            return self._none(eligible, tried, "tried")
        return Decision(best, "truth", min(self.config.profile(best).slow_ms, budget))

    def inquiry_worthwhile(self, channel: str, region: str, now: float, context: Any = None
                           ) -> bool:
        truth: Mapping[str, float] = context or {}
        return truth.get(channel, 0.0) < self.config.outage_failure_rate

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        return None


class BlindTap(TapSession):
    """The tap mechanics of the baselines: a timeout is not resolved, the next
    channel is tried at once (the behaviour that charges twice)."""

    __slots__ = ()

    def next(self, now: float) -> Attempt | None:
        if self.attempts and self.attempts[-1].state is AttemptState.AMBIGUOUS:
            self.attempts[-1].state = AttemptState.FAILED  # assumed, never checked
        return TapSession.next(self, now)

    def record(
        self,
        key: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> Action:
        att = self._find(key)
        if att.state is not AttemptState.IN_FLIGHT:
            return self._action()
        if outcome == "timeout":
            self.chooser.observe(att.channel, self.region, now, outcome, response_code, latency_ms)
            att.state = AttemptState.AMBIGUOUS
            return Action.ATTEMPT
        return TapSession.record(self, key, now, outcome, response_code, latency_ms)
