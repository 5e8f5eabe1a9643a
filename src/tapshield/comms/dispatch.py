"""The dispatcher: lease due rows, send them, record the outcome; retries with backoff.

At-least-once towards the receiver, exactly-once as the receiver applies it:
a row is marked sent only after the receiver accepted it; a dispatcher that
dies between sending and marking leaves a leased row whose lease expires and
which another dispatcher sends again *with the same idempotency key*, so the
receiver recognises the repeat. Rows that keep failing are retried with
exponential backoff (full jitter) up to ``max_attempts``, then marked
``dead``: counted and shown, never dropped silently.

Every customer notice delivered goes on the transparency log (``notice.sent``:
the key, incident, kind, channel and the recipient's *token*, never the
contact), when a log is given.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tapshield.comms.outbox import Outbox, OutboxRow
from tapshield.comms.senders import Sender, SendResult


class AuditPort(Protocol):
    def append(self, kind: str, actor: str, subject: str,
               payload: dict[str, Any] | None = None) -> int: ...


@dataclass(slots=True)
class DispatchStats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost_leases: int = 0
    """Outcomes not recorded because the lease had moved to another dispatcher."""
    errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retried": self.retried, "dead": self.dead,
                "lost_leases": self.lost_leases, "errors": dict(self.errors)}


@dataclass(slots=True)
class _Done:
    """A row's answer waiting to be written."""

    row: OutboxRow
    res: SendResult
    recorded: bool = False


class Dispatcher:
    def __init__(self, outbox: Outbox, sender: Sender, *, owner: str | None = None,
                 max_attempts: int = 8, backoff: float = 0.5, max_backoff: float = 60.0,
                 lease: timedelta = timedelta(seconds=30), batch: int = 100,
                 workers: int = 8, audit: AuditPort | None = None,
                 rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.sender = sender
        self.owner = owner or f"dispatcher-{uuid.uuid4().hex[:12].upper()}"
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.batch = batch
        self.workers = workers
        self.audit = audit
        self.rng = rng or random.Random()
        self.stats = DispatchStats()
        self._lock = threading.Lock()
        self._commit = threading.Lock()
        self._queue: list[_Done] = []

    def _delay(self, attempts: int) -> float:
        cap = min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))
        return self.rng.uniform(0, cap)

    def _values(self, row: OutboxRow, res: SendResult) -> tuple[str, dict[str, Any]]:
        """What to write for one answer: ``(verdict, column values)``."""
        if res.ok:
            return "sent", self.outbox.sent_values()
        key = res.error.split(":")[0][:60] or "error"
        self.stats.errors[key] = self.stats.errors.get(key, 0) + 1
        if res.retry and row.attempts < self.max_attempts:
            nxt = datetime.now(UTC) + timedelta(seconds=self._delay(row.attempts))
            return "retried", self.outbox.retry_values(res.error, nxt)
        return "dead", self.outbox.dead_values(res.error)

    def _record(self, done: list[_Done]) -> None:
        """Write a group of answers in one transaction (the caller holds the commit lock)."""
        planned = [(d, *self._values(d.row, d.res)) for d in done]
        kept = self.outbox.finish_many(self.owner, [(d.row.id, v) for d, _, v in planned])
        for (d, verdict, _), ours in zip(planned, kept, strict=True):
            if not ours:
                self.stats.lost_leases += 1
                continue
            if verdict == "retried":
                self.stats.retried += 1
            elif verdict == "dead":
                self.stats.dead += 1
            else:
                self.stats.sent += 1
                self._audit(d.row)

    def _audit(self, row: OutboxRow) -> None:
        if self.audit is None:
            return
        if row.kind != "webhook":
            self.audit.append("notice.sent", "tapshield/respond", row.incident_id, {
                "key": row.key, "kind": row.kind, "case": row.case_id,
                "channel": row.channel, "recipient_token": row.contact_token,
                "language": row.language, "due_at": row.due_at.isoformat()})
        else:
            self.audit.append("partner.notified", "tapshield/respond", row.incident_id,
                              {"key": row.key, "partner": row.recipient,
                               "event": row.payload.get("event")})

    def _safe_send(self, row: OutboxRow) -> SendResult:
        try:
            return self.sender.send(row)
        except Exception as exc:  # a sender bug must not kill the loop: the row retries
            return SendResult(False, True, f"{type(exc).__name__}: {exc}")

    def run_once(self, *, due_by: datetime | None = None) -> int:
        """Claim one batch and deliver it; returns how many rows were claimed."""
        rows = self.outbox.claim(self.owner, limit=self.batch, lease=self.lease, due_by=due_by)
        if not rows:
            return 0
        if self.workers <= 1:
            for r in rows:
                self._deliver(r)
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(self._deliver, rows))
        return len(rows)

    def _deliver(self, row: OutboxRow) -> None:
        # Group commit: each worker's answer joins a queue; whoever holds the commit
        # lock writes every queued answer in one transaction, and a worker returns
        # only once its own answer is written. So a dispatcher killed midway still
        # leaves at most its in-flight rows (one per worker) sent but unmarked,
        # while one commit (one fsync) serves up to ``workers`` answers.
        done = _Done(row, self._safe_send(row))
        with self._lock:
            self._queue.append(done)
        with self._commit:
            if done.recorded:
                return
            with self._lock:
                group, self._queue = self._queue, []
            try:
                self._record(group)
            finally:
                for d in group:
                    d.recorded = True

    def drain(self, *, due_by: datetime | None = None, timeout: float = 120.0,
              idle: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Deliver until nothing is pending or leased; False if ``timeout`` seconds pass
        without any row delivered or given up (a receiver down for good, not a slow one:
        a slow machine still drains, however long it takes)."""
        last = time.monotonic()
        done = self.stats.sent + self.stats.dead
        while time.monotonic() - last < timeout:
            claimed = self.run_once(due_by=due_by)
            now_done = self.stats.sent + self.stats.dead
            if now_done != done:
                done, last = now_done, time.monotonic()
            if claimed:
                continue
            c = self.outbox.counts()
            if c["pending"] == 0 and c["sending"] == 0:
                return True
            sleep(idle)
        return False
