"""The tap book across processes and restarts: never authorise twice.

In one process :class:`~tapshield.route.TapBook` keeps each tap's
:class:`~tapshield.route.TapSession`. A service runs several workers (and
restarts), so here the session lives in the database (``service_attempts``)
and every worker rebuilds it from there:

* an answer is **committed before it is returned**; a replayed request (same
  ``attempt_id``, on any worker, before or after a restart) reads the stored
  answer back, byte for byte;
* a new attempt of a tap is attempt ``n + 1`` of the rows stored for its
  ``payment_id``, inserted under ``unique(payment_id, number)``: when two
  workers race, one insert wins and the other re-reads, so a tap never has
  two attempts in flight;
* the session's own rules then apply unchanged: no new attempt while the
  last one awaits its result (409 ``attempt_pending``) or an unresolved
  timeout (409 ``attempt_unresolved``), none after the tap ended (409
  ``tap_closed``).

All database work of a worker runs on one thread (:class:`TapLedger`), which
takes whatever requests queued while it was busy and handles them in one
transaction: a group commit, so throughput grows with load instead of
queueing behind one commit per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from tapshield.money import format_fen
from tapshield.route.router import Decision, Router
from tapshield.route.tap import Action, Attempt, AttemptState, TapSession, TapStatus
from tapshield.service import tables as t
from tapshield.service.decision import Decider, TapRequest, Verdict

MAX_BATCH = 512
ROUNDS = 3


class TapConflictError(Exception):
    """The request is valid but the tap's state forbids it (HTTP 409)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class UnknownAttemptError(LookupError):
    """No answer was ever given for this attempt id (HTTP 404)."""


class BusyError(RuntimeError):
    """The tap book could not settle a race in time; the client may retry (HTTP 503)."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: str
    response_code: str | None = None
    latency_ms: float | None = None
    step_up_passed: bool | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """An attempt's outcome once known: what the monitor and the risk state will learn."""

    attempt_id: str
    request: dict[str, Any]
    channel: str
    outcome: str
    response_code: str | None
    latency_ms: float | None
    at: float
    decision: str = "approve"
    """The decision the attempt was authorised under (``approve`` or ``step_up``)."""
    step_up_passed: bool | None = None
    """For a stepped-up attempt: the strong verification's result, when the gateway says."""


class OutcomeListener(Protocol):
    """Told every settled attempt after it is committed (phase 2: the live monitor,
    the risk engine's state). Runs on the tap-book thread: queue, do not block."""

    def settled(self, outcomes: Sequence[Settled]) -> None: ...


@dataclass(slots=True)
class _Op:
    future: Future[Any] | None = None
    """For callers on plain threads (tests, tools)."""
    loop: asyncio.AbstractEventLoop | None = None
    afut: asyncio.Future[Any] | None = None
    """For callers on an event loop: delivered with one wake-up per batch."""
    done: bool = False


@dataclass(slots=True)
class _Authorize(_Op):
    request: TapRequest | None = None


@dataclass(slots=True)
class _Report(_Op):
    attempt_id: str = ""
    result: AttemptResult | None = None
    inquiry: bool | None = None
    is_inquiry: bool = False


class _Deferred:
    """The router as a session's chooser, with outcomes held back until the
    database accepted the state change (a duplicate result raced on another
    worker must not count twice)."""

    name = "tapshield"
    resolves_timeouts = True
    fails_over = True

    def __init__(self, router: Router) -> None:
        self.router = router
        self.observed: list[tuple[str, str, float, str, str | None, float | None]] = []

    def choose(self, region: str, eligible: Collection[str], now: float, *,
               tried: Collection[str] = (), budget_left_ms: float | None = None,
               context: Any = None) -> Decision:
        return self.router.choose(region, eligible, now, tried=tried,
                                  budget_left_ms=budget_left_ms, context=context)

    def inquiry_worthwhile(self, channel: str, region: str, now: float,
                           context: Any = None) -> bool:
        return self.router.inquiry_worthwhile(channel, region, now, context)

    def observe(self, channel: str, region: str, now: float, outcome: str,
                response_code: str | None = None, latency_ms: float | None = None) -> None:
        self.observed.append((channel, region, now, outcome, response_code, latency_ms))


def request_doc(r: TapRequest) -> dict[str, Any]:
    """The request in the event contract's wire names (stored; never logged)."""
    return {"payment_id": r.payment_id, "event_id": r.attempt_id, "user_id": r.user_id,
            "device_id": r.device_id, "merchant_id": r.merchant_id,
            "amount": format_fen(r.amount_fen), "region": r.region,
            "channels": list(r.channels) if r.channels is not None else None,
            "carrier": r.carrier, "os": r.os, "app_version": r.app_version,
            "device_model": r.device_model, "merchant_category": r.merchant_category,
            "ts": r.ts}


def _deliver(items: list[tuple[_Op, bool, Any]]) -> None:
    """Runs on the caller's event loop."""
    for op, good, value in items:
        f = op.afut
        if f is None or f.done():  # the request was cancelled (client went away)
            continue
        if good:
            f.set_result(value)
        else:
            f.set_exception(value)


def _differs(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Fields a replay changed (``ts`` is when it arrived, not part of the request)."""
    return sorted(k for k in now if k != "ts" and before.get(k) != now[k])


class TapLedger:
    """One worker's door to the shared tap book (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        router: Router,
        decider: Decider,
        *,
        budget_ms: float,
        clock: Callable[[], float] = time.time,
        listeners: Sequence[OutcomeListener] = (),
        on_batch: Callable[[int, float], None] | None = None,
        record_events: bool = False,
    ) -> None:
        self.engine = engine
        self.router = router
        self.decider = decider
        self.budget_ms = budget_ms
        self.clock = clock
        self.listeners = list(listeners)
        self.on_batch = on_batch
        self.record_events = record_events
        """Also write settled attempts to the live monitor's inbox (``service_events``)."""
        self.eligible_default = tuple(router.config.order)
        dialect = engine.dialect.name
        self._insert_stmt = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._q: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._outbox: list[tuple[_Op, bool, Any]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tapshield-tapbook",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish everything queued, then stop the thread."""
        self._closed = True
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None

    # -- the doors (thread-safe; futures resolve after commit) -----------------

    def authorize(self, request: TapRequest) -> Future[tuple[dict[str, Any], bool]]:
        """``(answer, replayed)`` for the request, once committed."""
        return self._submit(_Authorize(request=request))

    def report(self, attempt_id: str, result: AttemptResult) -> Future[dict[str, Any]]:
        """Record an attempt's outcome; the answer says what the gateway does next."""
        return self._submit(_Report(attempt_id=attempt_id, result=result))

    def resolve(self, attempt_id: str, authorised: bool | None) -> Future[dict[str, Any]]:
        """The status inquiry's answer for a timed-out attempt (``None``: no answer)."""
        return self._submit(_Report(attempt_id=attempt_id, inquiry=authorised,
                                    is_inquiry=True))

    async def authorize_async(self, request: TapRequest) -> tuple[dict[str, Any], bool]:
        """:meth:`authorize` for a caller on an event loop."""
        return await self._submit_async(_Authorize(request=request))  # type: ignore[no-any-return]

    async def report_async(self, attempt_id: str, result: AttemptResult) -> dict[str, Any]:
        return await self._submit_async(  # type: ignore[no-any-return]
            _Report(attempt_id=attempt_id, result=result))

    async def resolve_async(self, attempt_id: str, authorised: bool | None) -> dict[str, Any]:
        return await self._submit_async(  # type: ignore[no-any-return]
            _Report(attempt_id=attempt_id, inquiry=authorised, is_inquiry=True))

    def _submit(self, op: _Op) -> Future[Any]:
        op.future = Future()
        self._enqueue(op)
        return op.future

    async def _submit_async(self, op: _Op) -> Any:
        op.loop = asyncio.get_running_loop()
        op.afut = op.loop.create_future()
        self._enqueue(op)
        return await op.afut

    def _enqueue(self, op: _Op) -> None:
        if self._closed or self._thread is None:
            self._err(op, BusyError("the service is shutting down"))
            self._flush()
        else:
            self._q.put(op)

    # -- delivering answers ------------------------------------------------------

    def _ok(self, op: _Op, value: Any) -> None:
        if not op.done:
            op.done = True
            self._outbox.append((op, True, value))

    def _err(self, op: _Op, exc: BaseException) -> None:
        if not op.done:
            op.done = True
            self._outbox.append((op, False, exc))

    def _flush(self) -> None:
        """Hand out what the last transaction decided: thread futures at once,
        event-loop futures with one wake-up per loop."""
        out, self._outbox = self._outbox, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, bool, Any]]] = {}
        for op, good, value in out:
            if op.future is not None:
                if good:
                    op.future.set_result(value)
                else:
                    op.future.set_exception(value)
            elif op.loop is not None:
                by_loop.setdefault(op.loop, []).append((op, good, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, items)

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            op = self._q.get()
            if op is None:
                self._drain_rest()
                return
            batch = [op]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._handle(batch)
            if stop:
                self._drain_rest()
                return

    def _drain_rest(self) -> None:
        rest: list[_Op] = []
        while True:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is not None:
                rest.append(nxt)
        if rest:
            self._handle(rest)

    def _handle(self, batch: list[_Op]) -> None:
        t0 = time.perf_counter()
        auths = [o for o in batch if isinstance(o, _Authorize)]
        reports = [o for o in batch if isinstance(o, _Report)]
        for part, is_auth in ((auths, True), (reports, False)):
            if not part:
                continue
            try:
                if is_auth:
                    self._authorize_batch(auths)
                else:
                    self._report_batch(reports)
            except Exception as exc:  # the database is down, a bug: fail these, not the thread
                for o in part:
                    if not o.done:
                        self._err(o, exc)
            self._flush()
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - t0)

    # -- authorize -------------------------------------------------------------

    def _authorize_batch(self, ops: list[_Authorize]) -> None:
        pending = ops
        for _ in range(ROUNDS):
            if not pending:
                return
            try:
                pending = self._authorize_round(pending)
            except OperationalError as exc:
                if not _lost_to_a_peer(exc):
                    raise
                # another worker's transaction crossed ours and the database chose
                # ours to roll back: nothing of it was kept, run the round again
                continue
        for o in pending:
            self._err(o, BusyError("concurrent attempts of the same tap; retry"))

    def _authorize_round(self, ops: list[_Authorize]) -> list[_Authorize]:
        """One transaction; returns the requests to try again (lost a race).

        Most requests start a new tap, so each is first inserted as attempt 1
        of a new tap, without reading anything. Only those whose insert
        conflicts (a replay, a later attempt of a known tap, a race) read the
        tap's history and are answered from it. ``Decider.decide`` may thus
        run for a request that turns out to be a replay: it must not change
        state (engines learn from :class:`OutcomeListener` instead).
        """
        now = self.clock()
        by_attempt: dict[str, list[_Authorize]] = {}
        for o in ops:
            assert o.request is not None
            by_attempt.setdefault(o.request.attempt_id, []).append(o)
        later: list[_Authorize] = []
        done: list[tuple[list[_Authorize], Any]] = []
        answers: dict[str, dict[str, Any]] = {}
        won: set[str] = set()
        with self.engine.begin() as conn:
            fresh: list[dict[str, Any]] = []
            started: set[str] = set()
            for attempt_id, group in by_attempt.items():
                req = group[0].request
                assert req is not None
                if req.payment_id in started:  # one new attempt per tap per round
                    later.extend(group)
                    continue
                started.add(req.payment_id)
                row = self._new_attempt(req, [], now)
                fresh.append(row)
                answers[attempt_id] = row["answer"]
            won = self._insert(conn, fresh)
            known = [r["attempt_id"] for r in fresh if r["attempt_id"] not in won]
            second: list[dict[str, Any]] = []
            if known:
                reqs = {a: by_attempt[a][0].request for a in known}
                history, stored = self._load(conn, {r.payment_id for r in reqs.values()
                                                    if r is not None})
                for attempt_id, req in reqs.items():
                    assert req is not None
                    group = by_attempt[attempt_id]
                    prior = stored.get(attempt_id)
                    if prior is not None:
                        changed = _differs(prior["request"], request_doc(req))
                        done.append((group, (prior["answer"], True) if not changed else
                                     TapConflictError("attempt_id_reused",
                                                 f"attempt_id {attempt_id} was answered for a "
                                                 f"request with other {', '.join(changed)}")))
                        continue
                    rows = history.get(req.payment_id, [])
                    if not rows:  # the id is taken by another payment's attempt
                        done.append((group, TapConflictError(
                            "attempt_id_reused",
                            f"attempt_id {attempt_id} already belongs to another payment")))
                        continue
                    try:
                        row = self._new_attempt(req, rows, now)
                    except TapConflictError as exc:
                        done.append((group, exc))
                        continue
                    second.append(row)
                    answers[attempt_id] = row["answer"]
            won2 = self._insert(conn, second)
            won |= won2
            lost = [r["attempt_id"] for r in second if r["attempt_id"] not in won2]
            clash: dict[str, dict[str, Any]] = {}
            if lost:
                for r in conn.execute(select(t.attempts.c.attempt_id, t.attempts.c.payment_id,
                                             t.attempts.c.answer)
                                      .where(t.attempts.c.attempt_id.in_(lost))).mappings():
                    clash[r["attempt_id"]] = dict(r)
        # committed: now the answers may leave
        for group, outcome in done:
            for o in group:
                if isinstance(outcome, Exception):
                    self._err(o, outcome)
                else:
                    self._ok(o, outcome)
        for attempt_id in won:
            for o in by_attempt[attempt_id]:
                self._ok(o, (answers[attempt_id], False))
        for attempt_id in lost:
            group = by_attempt[attempt_id]
            other = clash.get(attempt_id)
            req = group[0].request
            assert req is not None
            if other is None:
                later.extend(group)  # another worker started this tap's attempt: re-read
            elif other["payment_id"] != req.payment_id:
                reused = TapConflictError(
                    "attempt_id_reused",
                    f"attempt_id {attempt_id} already belongs to another payment")
                for o in group:
                    self._err(o, reused)
            else:
                for o in group:  # the same request raced on another worker: its answer
                    self._ok(o, (other["answer"], True))
        return later

    def _insert(self, conn: Any, rows: list[dict[str, Any]]) -> set[str]:
        """Insert what does not clash with a stored row; the attempt ids inserted."""
        if not rows:
            return set()
        stmt = self._insert_stmt(t.attempts).on_conflict_do_nothing().returning(
            t.attempts.c.attempt_id)
        # one key order for every worker: two batches that share taps then wait
        # for each other instead of each holding a key the other needs (deadlock)
        rows = sorted(rows, key=lambda r: (r["payment_id"], r["number"], r["attempt_id"]))
        return set(conn.execute(stmt, rows).scalars().all())

    @staticmethod
    def _load(conn: Any, pids: set[str]) -> tuple[dict[str, list[dict[str, Any]]],
                                                  dict[str, dict[str, Any]]]:
        """The stored attempts of these taps: by payment (in order) and by attempt id."""
        history: dict[str, list[dict[str, Any]]] = {}
        stored: dict[str, dict[str, Any]] = {}
        for r in conn.execute(select(t.attempts).where(t.attempts.c.payment_id.in_(pids))
                              .order_by(t.attempts.c.payment_id, t.attempts.c.number)
                              ).mappings():
            row = dict(r)
            history.setdefault(row["payment_id"], []).append(row)
            stored[row["attempt_id"]] = row
        return history, stored

    def _new_attempt(self, req: TapRequest, rows: list[dict[str, Any]], now: float
                     ) -> dict[str, Any]:
        """The row for a new attempt of ``req``'s tap (raises TapConflictError)."""
        if rows:
            session = self._rebuild(rows, self.router)
            if session.done:
                raise TapConflictError(
                    "tap_closed",
                    f"payment {req.payment_id} is already {session.status.value} "
                    f"({session.reason}); a new attempt would risk a second charge")
            pend = session.pending
            if pend is not None:
                last = rows[pend.number - 1]
                if pend.state is AttemptState.AMBIGUOUS:
                    raise TapConflictError(
                        "attempt_unresolved",
                        f"attempt {last['attempt_id']} on {pend.channel} timed out and may "
                        "have been authorised: report its status inquiry first "
                        f"(POST /v1/attempts/{last['attempt_id']}/inquiry)")
                raise TapConflictError(
                    "attempt_pending",
                    f"attempt {last['attempt_id']} on {pend.channel} has no result yet: "
                    f"report it first (POST /v1/attempts/{last['attempt_id']}/result)")
        else:
            eligible = req.channels if req.channels is not None else self.eligible_default
            session = TapSession(self.router, req.payment_id, req.region, frozenset(eligible),
                                 now, self.budget_ms)
        verdict = self.decider.decide(req)
        number = len(rows) + 1
        attempt: Attempt | None = None
        if verdict.decision == "decline":
            tap_status, reason = TapStatus.DECLINED.value, "declined by risk decision"
        else:
            attempt = session.next(now)
            if attempt is None:
                tap_status, reason = session.status.value, session.reason
            else:
                tap_status, reason = TapStatus.OPEN.value, self._why(session, attempt, now)
        answer = self._answer(req, number, verdict, attempt, reason)
        return {
            "attempt_id": req.attempt_id, "payment_id": req.payment_id, "number": number,
            "channel": attempt.channel if attempt else None,
            "idempotency_key": attempt.idempotency_key if attempt else None,
            "state": attempt.state.value if attempt else "none",
            "reversal_sent": False, "last_resort": bool(attempt and attempt.last_resort),
            "started_at": now,
            "deadline_ms": attempt.deadline_ms if attempt else None,
            "region": session.region, "eligible": sorted(session.eligible),
            "tap_status": tap_status, "tap_reason": reason, "decision": verdict.decision,
            "answer": answer, "request": request_doc(req), "result": None,
            "created_at": datetime.fromtimestamp(now, UTC), "result_at": None,
        }

    @staticmethod
    def _why(session: TapSession, attempt: Attempt, now: float) -> str:
        if attempt.last_resort:
            return "last resort: every eligible channel is down"
        return "failover" if attempt.number > 1 else "healthy"

    @staticmethod
    def _answer(req: TapRequest, number: int, verdict: Verdict, attempt: Attempt | None,
                reason: str) -> dict[str, Any]:
        return {
            "payment_id": req.payment_id,
            "attempt_id": req.attempt_id,
            "attempt": number,
            "decision": verdict.decision,
            "reasons": list(verdict.reasons),
            "decision_version": verdict.version,
            "channel": attempt.channel if attempt else None,
            "channel_reason": reason,
            "idempotency_key": attempt.idempotency_key if attempt else None,
            "deadline_ms": (round(attempt.deadline_ms) if attempt and attempt.deadline_ms
                            is not None else None),
        }

    def _rebuild(self, rows: list[dict[str, Any]], chooser: Any) -> TapSession:
        first = rows[0]
        s = TapSession(chooser, first["payment_id"], first["region"],
                       frozenset(first["eligible"]), float(first["started_at"]),
                       self.budget_ms)
        for r in rows:
            if r["channel"] is None:
                continue
            s.attempts.append(Attempt(
                r["payment_id"], int(r["number"]), r["channel"], float(r["started_at"]),
                r["deadline_ms"], r["idempotency_key"], bool(r["last_resort"]),
                AttemptState(r["state"]), bool(r["reversal_sent"])))
        last = rows[-1]
        s.status = TapStatus(last["tap_status"])
        s.reason = last["tap_reason"]
        return s

    # -- results ---------------------------------------------------------------

    def _report_batch(self, ops: list[_Report]) -> None:
        now = self.clock()
        settled: list[Settled] = []
        observe: list[tuple[str, str, float, str, str | None, float | None]] = []
        results: list[tuple[_Report, Any]] = []
        with self.engine.begin() as conn:
            ids = {o.attempt_id for o in ops}
            pids = set(conn.execute(select(t.attempts.c.payment_id)
                                    .where(t.attempts.c.attempt_id.in_(ids))).scalars())
            history: dict[str, list[dict[str, Any]]] = {}
            where: dict[str, dict[str, Any]] = {}
            if pids:
                for r in conn.execute(select(t.attempts)
                                      .where(t.attempts.c.payment_id.in_(pids))
                                      .order_by(t.attempts.c.payment_id, t.attempts.c.number)
                                      ).mappings():
                    found = dict(r)
                    history.setdefault(found["payment_id"], []).append(found)
                    where[found["attempt_id"]] = found
            for o in ops:
                row = where.get(o.attempt_id)
                if row is None:
                    results.append((o, UnknownAttemptError(o.attempt_id)))
                    continue
                if row["channel"] is None:
                    results.append((o, TapConflictError(
                        "not_routed", f"attempt {o.attempt_id} was not routed to any channel "
                        f"({row['tap_reason']}); there is no outcome to report")))
                    continue
                rows = history[row["payment_id"]]
                chooser = _Deferred(self.router)
                session = self._rebuild(rows, chooser)
                att = session.attempts[int(row["number"]) - 1]
                before = att.state
                if o.is_inquiry:
                    if before is not AttemptState.AMBIGUOUS and before not in (
                            AttemptState.AUTHORISED, AttemptState.NOT_AUTHORISED,
                            AttemptState.REVERSED):
                        results.append((o, TapConflictError(
                            "no_inquiry_pending",
                            f"attempt {o.attempt_id} is {before.value}: nothing to resolve")))
                        continue
                    action = session.resolve(att.idempotency_key, now, o.inquiry)
                else:
                    assert o.result is not None
                    action = session.record(att.idempotency_key, now, o.result.outcome,
                                            o.result.response_code, o.result.latency_ms)
                if att.state is not before:
                    doc = ({"inquiry": o.inquiry} if o.is_inquiry else
                           {"outcome": o.result.outcome, "response_code": o.result.response_code,
                            "latency_ms": o.result.latency_ms} if o.result else {})
                    changed = conn.execute(
                        update(t.attempts)
                        .where(t.attempts.c.attempt_id == o.attempt_id,
                               t.attempts.c.state == before.value)
                        .values(state=att.state.value, reversal_sent=att.reversal_sent,
                                tap_status=session.status.value, tap_reason=session.reason,
                                result={**(row["result"] or {}), **doc},
                                result_at=datetime.fromtimestamp(now, UTC))
                    ).rowcount
                    if changed == 1:
                        row.update(state=att.state.value, reversal_sent=att.reversal_sent,
                                   tap_status=session.status.value, tap_reason=session.reason)
                        observe.extend(chooser.observed)
                        if not o.is_inquiry and o.result is not None:
                            settled.append(Settled(o.attempt_id, row["request"], att.channel,
                                                   o.result.outcome, o.result.response_code,
                                                   o.result.latency_ms, now,
                                                   str(row["decision"]),
                                                   o.result.step_up_passed))
                    else:  # the same result raced on another worker and won: read it
                        fresh = conn.execute(select(t.attempts)
                                             .where(t.attempts.c.attempt_id == o.attempt_id)
                                             ).mappings().one()
                        row.update(dict(fresh))
                        session = self._rebuild(rows, _Deferred(self.router))
                        att = session.attempts[int(row["number"]) - 1]
                        action = session._action()
                results.append((o, self._report_answer(row, session, att, action)))
            if settled and self.record_events:
                # the monitor's inbox, in the result's own transaction: an outcome
                # is in the inbox exactly when it is in the tap book
                from tapshield.service.inbox import insert, settled_rows

                insert(conn, settled_rows(settled))
        for ch, region, at, outcome, code, latency in observe:
            self.router.observe(ch, region, at, outcome, code, latency)
        for o, res in results:
            if isinstance(res, Exception):
                self._err(o, res)
            else:
                self._ok(o, res)
        if settled:
            for listener in self.listeners:
                listener.settled(settled)

    @staticmethod
    def _report_answer(row: dict[str, Any], session: TapSession, att: Attempt,
                       action: Action) -> dict[str, Any]:
        return {
            "attempt_id": row["attempt_id"],
            "payment_id": row["payment_id"],
            "channel": att.channel,
            "state": att.state.value,
            "action": action.value,
            "reversal_required": att.reversal_sent,
            "tap_status": session.status.value,
            "tap_reason": session.reason,
        }

    # -- housekeeping ----------------------------------------------------------

    def purge(self, older_than_days: float) -> int:
        """Forget answers older than the retention (replays past it get a new answer)."""
        cut = datetime.now(UTC) - timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(t.attempts)
                                    .where(t.attempts.c.created_at < cut)).rowcount or 0)


def _lost_to_a_peer(exc: OperationalError) -> bool:
    """A deadlock or serialisation failure (SQLSTATE 40P01 / 40001): the database
    rolled this transaction back in favour of another worker's; retrying is safe."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in {"40P01", "40001"}
