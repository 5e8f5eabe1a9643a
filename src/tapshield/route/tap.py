"""Failover inside one tap, without ever charging twice.

A :class:`TapSession` drives the attempts of one customer tap (one
``payment_id``) through a :class:`~tapshield.route.router.Chooser`:

* every attempt carries an **idempotency key** derived from the payment and
  the attempt number, so a request re-sent after a crash or a dropped
  connection is recognised downstream as the same attempt;
* a new attempt starts only when every earlier attempt is known **not**
  authorised: a technical failure response (91, 96, ...) is a definite "no";
  a timeout is ambiguous (the issuer may have authorised and the answer got
  lost), so it is first **resolved** by a status inquiry. "Authorised" ends
  the tap successfully (no second charge), "not authorised" lets the tap fail
  over, and no answer triggers an ISO 8583 0400 reversal (store-and-forward,
  repeated until acknowledged) before failing over. When the router expects
  the channel not to answer (the inquiry would travel the same broken path),
  the inquiry is skipped and the attempt reversed at once. Starting an attempt
  with an unresolved one raises :class:`TapStateError`;
* a business decline ends the tap: routing around a credit decision is not
  the router's call;
* when no channel can work the session ends at once with the router's
  "use another method" reason.

Sessions are idempotent: asking for the next attempt while one is in flight
returns that same attempt, and a duplicate answer for an attempt is ignored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tapshield.events.codes import is_technical
from tapshield.route.router import Chooser


class TapStateError(RuntimeError):
    """An operation that would break the never-charge-twice invariant."""


class AttemptState(StrEnum):
    IN_FLIGHT = "in_flight"
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    """A technical failure response: definitely not authorised."""
    AMBIGUOUS = "ambiguous"
    """Timed out: may have been authorised; must be resolved."""
    NOT_AUTHORISED = "not_authorised"
    """Resolved by inquiry: not authorised."""
    AUTHORISED = "authorised"
    """Resolved by inquiry: authorised (the tap succeeded)."""
    REVERSED = "reversed"
    """No inquiry answer: a 0400 reversal was sent, so it cannot stand."""


SAFE_TO_RETRY = frozenset({AttemptState.FAILED, AttemptState.NOT_AUTHORISED,
                           AttemptState.REVERSED})


class TapStatus(StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    DECLINED = "declined"
    FAILED = "failed"
    """Ended without approval or business decline: the customer must use
    another method (the payment was lost to a technical problem)."""


class Action(StrEnum):
    """What the caller does next."""

    ATTEMPT = "attempt"
    """Call :meth:`TapSession.next` for the next attempt."""
    INQUIRE = "inquire"
    """Send a status inquiry for the attempt, then call :meth:`TapSession.resolve`."""
    REVERSE = "reverse"
    """Send a 0400 reversal for the timed-out attempt (store-and-forward: the
    acquirer repeats it until acknowledged), then call :meth:`TapSession.next`.
    Chosen instead of an inquiry when the channel is down, so the inquiry
    would most likely time out as well."""
    DONE = "done"


def idempotency_key(payment_id: str, number: int) -> str:
    """Stable key of attempt ``number`` of a payment (16 hex characters)."""
    digest = hashlib.blake2b(f"{payment_id}\x1f{number}".encode(), digest_size=8)
    return digest.hexdigest()


@dataclass(slots=True)
class Attempt:
    payment_id: str
    number: int
    channel: str
    started_at: float
    deadline_ms: float | None
    idempotency_key: str
    last_resort: bool = False
    state: AttemptState = AttemptState.IN_FLIGHT
    reversal_sent: bool = False


@dataclass(slots=True)
class TapSession:
    """The attempts of one tap (see module doc). Times are event seconds."""

    chooser: Chooser
    payment_id: str
    region: str
    eligible: Collection[str]
    started_at: float
    budget_ms: float
    context: Any = None
    """Passed to ``chooser.choose`` (the oracle reads the truth from it)."""
    attempts: list[Attempt] = field(default_factory=list)
    status: TapStatus = TapStatus.OPEN
    reason: str = ""
    ended_at: float | None = None

    # -- driving ---------------------------------------------------------------

    def budget_left_ms(self, now: float) -> float:
        return self.budget_ms - (now - self.started_at) * 1000.0

    def next(self, now: float) -> Attempt | None:
        """The attempt to send now, or ``None`` when the tap is over.

        Idempotent: while an attempt is in flight it is returned again.
        """
        if self.status is not TapStatus.OPEN:
            return None
        if self.attempts:
            last = self.attempts[-1]
            if last.state is AttemptState.IN_FLIGHT:
                return last
            if last.state is AttemptState.AMBIGUOUS:
                raise TapStateError(
                    f"payment {self.payment_id}: attempt {last.number} on {last.channel} timed "
                    "out and is unresolved; inquire (or reverse) before another attempt"
                )
            if any(a.state not in SAFE_TO_RETRY for a in self.attempts):
                raise TapStateError(f"payment {self.payment_id}: an attempt may be authorised")
            if not self.chooser.fails_over:
                self._end(TapStatus.FAILED, now, "no failover")
                return None
        tried = {a.channel for a in self.attempts}
        left = self.budget_left_ms(now)
        if left <= 0.0:
            self._end(TapStatus.FAILED, now, "use another method: latency budget exhausted")
            return None
        d = self.chooser.choose(
            self.region, self.eligible, now, tried=tried, budget_left_ms=left, context=self.context
        )
        if d.channel is None:
            self._end(TapStatus.FAILED, now, d.reason)
            return None
        if d.channel not in self.eligible:  # a policy bug must never reach a customer
            raise TapStateError(f"policy {self.chooser.name} chose ineligible {d.channel!r}")
        number = len(self.attempts) + 1
        deadline = d.deadline_ms if d.deadline_ms is not None else None
        att = Attempt(self.payment_id, number, d.channel, now, deadline,
                      idempotency_key(self.payment_id, number), d.last_resort)
        self.attempts.append(att)
        return att

    def record(
        self,
        key: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> Action:
        """The answer to an attempt (``outcome`` as in the event contract).

        A router-side deadline that expired is recorded as ``timeout``.
        Duplicate answers for the same attempt are ignored.
        """
        att = self._find(key)
        if att.state is not AttemptState.IN_FLIGHT:
            return self._action()
        self.chooser.observe(att.channel, self.region, now, outcome, response_code, latency_ms)
        if outcome == "approved":
            att.state = AttemptState.APPROVED
            self._end(TapStatus.APPROVED, now, "approved")
        elif outcome == "timeout":
            if not self.chooser.resolves_timeouts:
                raise TapStateError("TapSession always resolves timeouts")
            worth = getattr(self.chooser, "inquiry_worthwhile", None)
            if worth is not None and not worth(att.channel, self.region, now, self.context):
                att.state = AttemptState.REVERSED
                att.reversal_sent = True
                return Action.REVERSE
            att.state = AttemptState.AMBIGUOUS
        elif outcome == "declined" and not is_technical(response_code, outcome):
            att.state = AttemptState.DECLINED
            self._end(TapStatus.DECLINED, now, f"declined ({response_code or 'no code'})")
        else:
            att.state = AttemptState.FAILED
        return self._action()

    def resolve(self, key: str, now: float, authorised: bool | None) -> Action:
        """The status inquiry's answer for a timed-out attempt.

        ``None`` means the inquiry got no answer: the attempt is reversed
        (the caller sends the 0400) and the tap may fail over.
        """
        att = self._find(key)
        if att.state is not AttemptState.AMBIGUOUS:
            return self._action()
        if authorised is True:
            att.state = AttemptState.AUTHORISED
            self._end(TapStatus.APPROVED, now, "approved (confirmed by status inquiry)")
        elif authorised is False:
            att.state = AttemptState.NOT_AUTHORISED
        else:
            att.state = AttemptState.REVERSED
            att.reversal_sent = True
        return self._action()

    def abandon(self, now: float, reason: str = "use another method: latency budget exhausted"
                ) -> list[Attempt]:
        """End the tap now (budget over, customer left); returns the attempts
        that need a reversal because they might still be authorised."""
        to_reverse = []
        for a in self.attempts:
            if a.state in (AttemptState.IN_FLIGHT, AttemptState.AMBIGUOUS):
                a.state = AttemptState.REVERSED
                a.reversal_sent = True
                to_reverse.append(a)
        if self.status is TapStatus.OPEN:
            self._end(TapStatus.FAILED, now, reason)
        return to_reverse

    # -- helpers ---------------------------------------------------------------

    def _find(self, key: str) -> Attempt:
        for a in self.attempts:
            if a.idempotency_key == key:
                return a
        raise KeyError(f"payment {self.payment_id}: no attempt with key {key}")

    def _action(self) -> Action:
        if self.status is not TapStatus.OPEN:
            return Action.DONE
        if self.attempts and self.attempts[-1].state is AttemptState.AMBIGUOUS:
            return Action.INQUIRE
        return Action.ATTEMPT

    def _end(self, status: TapStatus, now: float, reason: str) -> None:
        if self.status is TapStatus.OPEN:
            self.status = status
            self.reason = reason
            self.ended_at = now

    @property
    def done(self) -> bool:
        return self.status is not TapStatus.OPEN

    @property
    def pending(self) -> Attempt | None:
        """The attempt in flight or awaiting resolution, if any."""
        if self.attempts and self.attempts[-1].state in (AttemptState.IN_FLIGHT,
                                                         AttemptState.AMBIGUOUS):
            return self.attempts[-1]
        return None


class TapBook:
    """Open taps by ``payment_id``, so a repeated request for the same tap
    (the terminal re-sent it, the app retried) continues the same session
    instead of starting a second charge. Bounded: the oldest finished taps
    are forgotten first."""

    def __init__(self, chooser: Chooser, *, budget_ms: float, max_sessions: int = 100_000) -> None:
        from collections import OrderedDict

        self.chooser = chooser
        self.budget_ms = budget_ms
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, TapSession] = OrderedDict()

    def begin(
        self,
        payment_id: str,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        context: Any = None,
    ) -> TapSession:
        """The session of ``payment_id``, created on first sight."""
        s = self._sessions.get(payment_id)
        if s is not None:
            return s
        s = TapSession(self.chooser, payment_id, region, frozenset(eligible), now,
                       self.budget_ms, context)
        self._sessions[payment_id] = s
        if len(self._sessions) > self.max_sessions:
            for pid, old in list(self._sessions.items()):
                if len(self._sessions) <= self.max_sessions:
                    break
                if old.done:
                    del self._sessions[pid]
        return s

    def get(self, payment_id: str) -> TapSession | None:
        return self._sessions.get(payment_id)

    def __len__(self) -> int:
        return len(self._sessions)
