"""The tap book across workers and restarts (SQLite and a real PostgreSQL).

Two ledgers on one database are two workers: each has its own router and
thread, and they share nothing but the database, as two processes would.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapshield.service import tables as t
from tapshield.service.config import DecisionRule, DecisionSettings
from tapshield.service.decision import TapRequest
from tapshield.service.runtime import ServiceRuntime
from tapshield.service.taps import AttemptResult, TapConflictError, UnknownAttemptError

from .conftest import settings_for


def req(pid: str, aid: str, **kw: Any) -> TapRequest:
    base: dict[str, Any] = {"user_id": "u1", "device_id": "d1", "merchant_id": "m1",
                            "amount_fen": 1250, "region": "CN-GD"}
    base.update(kw)
    return TapRequest(payment_id=pid, attempt_id=aid, **base)


def ok(fut: Future[Any]) -> Any:
    return fut.result(timeout=30)


def conflict(fut: Future[Any]) -> str:
    with pytest.raises(TapConflictError) as exc:
        fut.result(timeout=30)
    return exc.value.code


@pytest.fixture
def runtimes(db_url: str, tmp_path: Path) -> Iterator[list[ServiceRuntime]]:
    """Two workers on one database."""
    rules = DecisionSettings(rules=[DecisionRule(name="blocked_merchant", decision="decline",
                                                 reason="merchant on the deny list",
                                                 when={"merchant_id": ["m-bad"]})])
    made = [ServiceRuntime(settings_for(db_url, tmp_path, decision=rules)) for _ in range(2)]
    for rt in made:
        rt.start()
    yield made
    for rt in made:
        if not rt.draining:
            rt.stop()


def test_a_replay_gets_the_same_answer_on_any_worker(runtimes: list[ServiceRuntime]) -> None:
    a, b = runtimes
    pid, aid = uuid.uuid4().hex, uuid.uuid4().hex
    first, replayed = ok(a.ledger.authorize(req(pid, aid)))
    assert not replayed and first["channel"] == "nfc" and first["attempt"] == 1
    assert first["decision"] == "approve" and first["idempotency_key"]
    again, replayed = ok(b.ledger.authorize(req(pid, aid)))
    assert replayed and again == first
    with a.tap_engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(t.attempts)
                         .where(t.attempts.c.payment_id == pid)).scalar_one()
    assert n == 1


def test_one_attempt_in_flight_failover_after_a_failure(runtimes: list[ServiceRuntime]) -> None:
    a, b = runtimes
    pid = uuid.uuid4().hex
    first, _ = ok(a.ledger.authorize(req(pid, "x1" + pid)))
    assert conflict(b.ledger.authorize(req(pid, "x2" + pid))) == "attempt_pending"
    res = ok(b.ledger.report("x1" + pid, AttemptResult("failed", "91", 180.0)))
    assert res["state"] == "failed" and res["action"] == "attempt" and res["tap_status"] == "open"
    second, _ = ok(a.ledger.authorize(req(pid, "x2" + pid)))
    assert second["attempt"] == 2 and second["channel"] == "qr"
    assert second["idempotency_key"] != first["idempotency_key"]
    assert second["channel_reason"] == "failover"
    done = ok(a.ledger.report("x2" + pid, AttemptResult("approved", "00", 200.0)))
    assert done["tap_status"] == "approved" and done["action"] == "done"
    assert conflict(b.ledger.authorize(req(pid, "x3" + pid))) == "tap_closed"


def test_a_timeout_is_resolved_before_another_attempt(runtimes: list[ServiceRuntime]) -> None:
    a, b = runtimes
    pid = uuid.uuid4().hex
    ok(a.ledger.authorize(req(pid, "t1" + pid)))
    res = ok(a.ledger.report("t1" + pid, AttemptResult("timeout", None, 3000.0)))
    assert res["state"] == "ambiguous" and res["action"] == "inquire"
    assert conflict(b.ledger.authorize(req(pid, "t2" + pid))) == "attempt_unresolved"
    # The inquiry finds it authorised: the tap is approved, nothing else is sent.
    res = ok(b.ledger.resolve("t1" + pid, True))
    assert res["state"] == "authorised" and res["tap_status"] == "approved"
    assert conflict(a.ledger.authorize(req(pid, "t2" + pid))) == "tap_closed"
    # Another tap: no answer to the inquiry -> reversed, then the next attempt may go.
    pid2 = uuid.uuid4().hex
    ok(a.ledger.authorize(req(pid2, "u1" + pid2)))
    ok(a.ledger.report("u1" + pid2, AttemptResult("timeout")))
    res = ok(a.ledger.resolve("u1" + pid2, None))
    assert res["state"] == "reversed" and res["reversal_required"]
    nxt, _ = ok(b.ledger.authorize(req(pid2, "u2" + pid2)))
    assert nxt["attempt"] == 2 and nxt["channel"] is not None


def test_duplicate_results_count_once(runtimes: list[ServiceRuntime]) -> None:
    a, b = runtimes
    pid = uuid.uuid4().hex
    ok(a.ledger.authorize(req(pid, "d1" + pid, region="CN-SH")))
    before = {r["region"]: r["weight"] for r in a.router.snapshot(1e12) if r["channel"] == "nfc"}
    first = ok(a.ledger.report("d1" + pid, AttemptResult("failed", "96", 100.0)))
    again = ok(b.ledger.report("d1" + pid, AttemptResult("failed", "96", 100.0)))
    assert first == again
    after = {r["region"]: r["weight"] for r in a.router.snapshot(1e12) if r["channel"] == "nfc"}
    assert after.get("CN-SH", 0.0) - before.get("CN-SH", 0.0) <= 1.0 + 1e-9
    assert all(r["weight"] == 0.0 for r in b.router.snapshot(1e12)
               if r["region"] == "CN-SH")  # b saw a duplicate: no second observation


def test_decisions_and_misuse(runtimes: list[ServiceRuntime]) -> None:
    a, _ = runtimes
    pid = uuid.uuid4().hex
    ans, _ = ok(a.ledger.authorize(req(pid, "r1" + pid, merchant_id="m-bad")))
    assert ans["decision"] == "decline" and ans["channel"] is None
    assert ans["reasons"] == ["blocked_merchant: merchant on the deny list"]
    assert conflict(a.ledger.authorize(req(pid, "r2" + pid))) == "tap_closed"
    assert conflict(a.ledger.report("r1" + pid, AttemptResult("approved"))) == "not_routed"
    with pytest.raises(UnknownAttemptError):
        a.ledger.report("never-" + pid, AttemptResult("approved")).result(30)
    # The same attempt id with another amount, or for another payment: refused.
    pid2 = uuid.uuid4().hex
    ok(a.ledger.authorize(req(pid2, "s1" + pid2)))
    assert conflict(a.ledger.authorize(req(pid2, "s1" + pid2, amount_fen=99))) == \
        "attempt_id_reused"
    assert conflict(a.ledger.authorize(req("other" + pid2, "s1" + pid2))) == "attempt_id_reused"
    # No eligible channel: the quick answer, at once.
    pid3 = uuid.uuid4().hex
    ans, _ = ok(a.ledger.authorize(req(pid3, "q1" + pid3, channels=())))
    assert ans["channel"] is None and ans["channel_reason"].startswith("use another method")


def test_a_restarted_worker_answers_the_same(db_url: str, tmp_path: Path) -> None:
    rt = ServiceRuntime(settings_for(db_url, tmp_path))
    rt.start()
    pid = uuid.uuid4().hex
    first, _ = ok(rt.ledger.authorize(req(pid, "z1" + pid)))
    rt.stop()
    again = ServiceRuntime(settings_for(db_url, tmp_path))
    again.start()
    try:
        got, replayed = ok(again.ledger.authorize(req(pid, "z1" + pid)))
        assert replayed and got == first
    finally:
        again.stop()


def test_stopping_answers_everything_already_queued(db_url: str, tmp_path: Path) -> None:
    """SIGTERM's last step: requests the server accepted are all answered and
    committed before the tap book stops; later ones are refused, not lost."""
    rt = ServiceRuntime(settings_for(db_url, tmp_path))
    rt.start()
    reqs = [req(f"s-{uuid.uuid4().hex}", f"sa-{uuid.uuid4().hex}") for _ in range(300)]
    futs = [rt.ledger.authorize(r) for r in reqs]
    rt.stop()
    answers = [f.result(0) for f in futs]  # all done already: no waiting
    assert all(a["channel"] == "nfc" and not replayed for a, replayed in answers)
    from tapshield.service.taps import BusyError

    with pytest.raises(BusyError):
        rt.ledger.authorize(reqs[0]).result(0)
    again = ServiceRuntime(settings_for(db_url, tmp_path))
    again.start()
    try:
        got, replayed = ok(again.ledger.authorize(reqs[-1]))
        assert replayed and got == answers[-1][0]
    finally:
        again.stop()


def test_router_health_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    rt = ServiceRuntime(settings_for(db_url, tmp_path))
    rt.start()
    for _ in range(4):
        pid = uuid.uuid4().hex
        ok(rt.ledger.authorize(req(pid, "f" + pid)))
        ok(rt.ledger.report("f" + pid, AttemptResult("failed", "91", 100.0)))
    assert rt.router.is_down("nfc", "CN-GD")
    rt.stop()  # the final checkpoint
    again = ServiceRuntime(settings_for(db_url, tmp_path))
    again.start()
    try:
        assert again.restored_keys == 2 and again.router.is_down("nfc", "CN-GD")
        pid = uuid.uuid4().hex
        assert ok(again.ledger.authorize(req(pid, "g" + pid)))[0]["channel"] == "qr"
    finally:
        again.stop()


def test_racing_workers_start_each_attempt_once(runtimes: list[ServiceRuntime]) -> None:
    """Both workers get the same 40 requests at once, plus a second attempt id for
    each tap: every attempt id has one answer, every tap exactly one attempt."""
    a, b = runtimes
    reqs = [req(f"race-{uuid.uuid4().hex}", f"ra-{i}-{uuid.uuid4().hex}") for i in range(40)]
    rivals = [req(r.payment_id, "rb-" + r.attempt_id) for r in reqs]
    futs: dict[str, list[Future[Any]]] = {}
    barrier = threading.Barrier(2)

    def fire(rt: ServiceRuntime, order: list[TapRequest]) -> None:
        barrier.wait()
        for r in order:
            futs.setdefault(r.attempt_id, []).append(rt.ledger.authorize(r))

    ths = [threading.Thread(target=fire, args=(a, reqs + rivals)),
           threading.Thread(target=fire, args=(b, rivals[::-1] + reqs[::-1]))]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    answers: dict[str, set[str]] = {}
    for aid, fs in futs.items():
        for f in fs:
            try:
                ans, _ = f.result(30)
                answers.setdefault(aid, set()).add(repr(sorted(ans.items())))
            except TapConflictError as exc:
                assert exc.code == "attempt_pending"
    assert all(len(v) == 1 for v in answers.values())
    with a.tap_engine.connect() as conn:
        rows = conn.execute(sa.select(t.attempts.c.payment_id, t.attempts.c.attempt_id)
                            .where(t.attempts.c.payment_id.in_([r.payment_id for r in reqs]))
                            ).all()
    by_pid: dict[str, list[str]] = {}
    for pid, aid in rows:
        by_pid.setdefault(pid, []).append(aid)
    assert len(by_pid) == 40 and all(len(v) == 1 for v in by_pid.values())


ops = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2),
                         st.sampled_from(["new", "replay", "approved", "declined", "failed",
                                          "timeout", "inq_yes", "inq_no", "inq_none"])),
               min_size=1, max_size=30)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_never_two_attempts_outstanding_nor_two_authorised(
        runtimes: list[ServiceRuntime], script: list[tuple[int, int, str]]) -> None:
    """Random gateway behaviour spread over two workers: a tap never has two
    attempts that may stand at once, and at most one is ever authorised;
    every replay returns the first answer."""
    tag = uuid.uuid4().hex[:8]
    n_attempts = [0, 0, 0]
    first: dict[str, dict[str, Any]] = {}
    for worker, tap, op in script:
        rt = runtimes[worker]
        pid = f"h{tag}-{tap}"
        last = f"{pid}-a{n_attempts[tap]}"
        try:
            if op == "new":
                n_attempts[tap] += 1
                aid = f"{pid}-a{n_attempts[tap]}"
                ans, _ = rt.ledger.authorize(req(pid, aid)).result(30)
                first.setdefault(aid, ans)
            elif op == "replay" and n_attempts[tap]:
                ans, _ = rt.ledger.authorize(req(pid, last)).result(30)
                assert ans == first.get(last, ans)
            elif op.startswith("inq_") and n_attempts[tap]:
                rt.ledger.resolve(last, {"inq_yes": True, "inq_no": False}.get(op)).result(30)
            elif n_attempts[tap] and op in ("approved", "declined", "failed", "timeout"):
                code = {"approved": "00", "declined": "05", "failed": "91"}.get(op)
                rt.ledger.report(last, AttemptResult(op, code, 100.0)).result(30)
        except (TapConflictError, UnknownAttemptError):
            pass
        with rt.tap_engine.connect() as conn:
            rows = conn.execute(sa.select(t.attempts.c.state)
                                .where(t.attempts.c.payment_id == pid)).scalars().all()
        assert sum(s in ("in_flight", "ambiguous") for s in rows) <= 1
        assert sum(s in ("approved", "authorised") for s in rows) <= 1
        if any(s in ("in_flight", "ambiguous") for s in rows):
            assert not any(s in ("approved", "authorised", "declined") for s in rows)
