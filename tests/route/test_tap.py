"""Failover inside one tap: timeouts resolved first, idempotent, never twice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.route import (
    Action,
    AttemptState,
    Router,
    RouterConfig,
    TapBook,
    TapSession,
    TapStateError,
    TapStatus,
    idempotency_key,
)
from tapshield.route.baselines import BlindTap, HyperswitchRule

ALL = frozenset({"nfc", "qr", "debit_card", "wallet"})


def session(eligible: frozenset[str] = ALL, budget_ms: float = 15_000.0) -> TapSession:
    return TapSession(Router(RouterConfig()), "pay-1", "CN-GD", eligible, 0.0, budget_ms)


def test_a_timeout_is_resolved_before_another_channel_is_tried() -> None:
    s = session()
    a1 = s.next(0.0)
    assert a1 is not None and a1.channel == "nfc"
    assert s.record(a1.idempotency_key, 3.0, "timeout", "68", 3_000.0) is Action.INQUIRE
    with pytest.raises(TapStateError, match="unresolved"):
        s.next(3.0)
    # The inquiry says the issuer never authorised it: fail over.
    assert s.resolve(a1.idempotency_key, 3.4, authorised=False) is Action.ATTEMPT
    a2 = s.next(3.4)
    assert a2 is not None and a2.channel == "qr" and a2.number == 2
    assert s.record(a2.idempotency_key, 3.7, "approved", "00", 300.0) is Action.DONE
    assert s.status is TapStatus.APPROVED


def test_an_inquiry_that_finds_the_authorisation_ends_the_tap_without_a_second_charge() -> None:
    s = session()
    a1 = s.next(0.0)
    assert a1 is not None
    s.record(a1.idempotency_key, 3.0, "timeout", "68", 3_000.0)
    assert s.resolve(a1.idempotency_key, 3.4, authorised=True) is Action.DONE
    assert s.status is TapStatus.APPROVED
    assert s.next(3.5) is None
    assert len(s.attempts) == 1


def test_an_unanswered_inquiry_reverses_before_failing_over() -> None:
    s = session()
    a1 = s.next(0.0)
    assert a1 is not None
    s.record(a1.idempotency_key, 3.0, "timeout", "68", 3_000.0)
    assert s.resolve(a1.idempotency_key, 4.5, authorised=None) is Action.ATTEMPT
    assert a1.state is AttemptState.REVERSED and a1.reversal_sent
    a2 = s.next(4.5)
    assert a2 is not None and a2.channel == "qr"


def test_a_technical_failure_answer_fails_over_at_once() -> None:
    s = session()
    a1 = s.next(0.0)
    assert a1 is not None
    assert s.record(a1.idempotency_key, 0.2, "failed", "91", 200.0) is Action.ATTEMPT
    a2 = s.next(0.2)
    assert a2 is not None and a2.channel == "qr"


def test_a_business_decline_ends_the_tap() -> None:
    s = session()
    a1 = s.next(0.0)
    assert a1 is not None
    assert s.record(a1.idempotency_key, 0.3, "declined", "51", 300.0) is Action.DONE
    assert s.status is TapStatus.DECLINED
    assert s.next(0.3) is None


def test_retries_are_idempotent() -> None:
    book = TapBook(Router(RouterConfig()), budget_ms=15_000.0)
    s1 = book.begin("pay-9", "CN-GD", ALL, 0.0)
    a = s1.next(0.0)
    # The terminal re-sends the same tap: same session, same attempt, same key.
    s2 = book.begin("pay-9", "CN-GD", ALL, 0.5)
    assert s2 is s1
    again = s2.next(0.5)
    assert again is a
    assert a is not None and a.idempotency_key == idempotency_key("pay-9", 1)
    # A duplicated answer is applied once.
    s1.record(a.idempotency_key, 0.6, "failed", "96", 300.0)
    s1.record(a.idempotency_key, 0.7, "approved", "00", 300.0)
    assert a.state is AttemptState.FAILED and s1.status is TapStatus.OPEN
    b = s1.next(0.7)
    assert b is not None and b.idempotency_key == idempotency_key("pay-9", 2)
    assert b.idempotency_key != a.idempotency_key


def test_idempotency_keys_are_stable_and_distinct() -> None:
    keys = {idempotency_key(f"p{i}", n) for i in range(500) for n in range(1, 5)}
    assert len(keys) == 2_000
    assert idempotency_key("p1", 1) == idempotency_key("p1", 1)


def test_no_eligible_channel_answers_at_once() -> None:
    s = session(eligible=frozenset())
    assert s.next(0.0) is None
    assert s.status is TapStatus.FAILED
    assert s.reason == "use another method: no eligible channel for this customer"
    assert s.ended_at == 0.0


def test_budget_exhaustion_ends_the_tap_and_reverses_what_is_pending() -> None:
    s = session(budget_ms=5_000.0)
    a = s.next(0.0)
    assert a is not None
    s.record(a.idempotency_key, 5.0, "timeout", "68", 5_000.0)
    reversed_ = s.abandon(5.0)
    assert reversed_ == [a] and a.reversal_sent
    assert s.status is TapStatus.FAILED


# -- the invariant, as a property -------------------------------------------------

fate = st.tuples(
    st.sampled_from(["approved", "declined", "failed", "timeout"]),
    st.booleans(),  # a timeout was in fact authorised at the issuer
    st.booleans(),  # the status inquiry gets an answer
)


def drive(s: TapSession, fates: list[tuple[str, bool, bool]]) -> int:
    """Run a tap against given fates; return authorised attempts left standing."""
    t = 0.0
    truth: dict[str, bool] = {}
    for outcome, hidden_auth, inquiry_ok in fates:
        a = s.next(t)
        if a is None:
            break
        assert a.channel in s.eligible
        t += 0.5
        truth[a.idempotency_key] = outcome == "approved" or (outcome == "timeout" and hidden_auth)
        code = {"approved": "00", "declined": "51", "failed": "96", "timeout": "68"}[outcome]
        action = s.record(a.idempotency_key, t, outcome, code, 500.0)
        if action is Action.INQUIRE:
            t += 0.3
            s.resolve(a.idempotency_key, t, truth[a.idempotency_key] if inquiry_ok else None)
    return sum(1 for a in s.attempts if truth.get(a.idempotency_key) and not a.reversal_sent)


@settings(max_examples=300, deadline=None)
@given(fates=st.lists(fate, min_size=1, max_size=6),
       eligible=st.frozensets(st.sampled_from(sorted(ALL)), min_size=1))
def test_never_authorised_twice(fates: list[tuple[str, bool, bool]],
                                eligible: frozenset[str]) -> None:
    s = TapSession(Router(RouterConfig()), "pay-x", "CN-GD", eligible, 0.0, 60_000.0)
    assert drive(s, fates) <= 1


def test_blind_retry_does_charge_twice_which_is_what_the_property_catches() -> None:
    s = BlindTap(HyperswitchRule(), "pay-b", "CN-GD", ALL, 0.0, 60_000.0)
    assert drive(s, [("timeout", True, True), ("approved", False, True)]) == 2
