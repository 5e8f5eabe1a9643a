"""The notifier protocol and the background sender every notifier is built on."""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from tapshield.monitor.alerts import AlertEvent


@dataclass(slots=True)
class NotifyStats:
    """What happened to every alert change handed to a notifier."""

    queued: int = 0
    sent: int = 0
    """Requests the receiver accepted (2xx)."""
    retried: int = 0
    failed: int = 0
    """Requests given up after ``max_attempts`` or refused (4xx other than 429)."""
    dropped: int = 0
    """Changes not even queued because the queue was full (receiver far behind)."""
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"queued": self.queued, "sent": self.sent, "retried": self.retried,
                "failed": self.failed, "dropped": self.dropped, "last_error": self.last_error}


@runtime_checkable
class Notifier(Protocol):
    """Takes alert state changes; must return at once and never raise for delivery."""

    name: str

    def send(self, events: Sequence[AlertEvent]) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float = 10.0) -> None: ...

    @property
    def stats(self) -> NotifyStats: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    json: Any
    headers: dict[str, str] = field(default_factory=dict)


class BackgroundNotifier:
    """A queue and one sender thread with retries; subclasses turn events into requests.

    ``max_attempts`` tries per request with exponential backoff (``backoff`` s,
    doubled each time, with full jitter, capped at ``max_backoff``): transient
    receiver trouble (connection refused during a restart, 5xx, 429) is ridden
    out; a 4xx is the request's fault and is not retried.
    """

    name = "notifier"

    def __init__(self, *, timeout: float = 5.0, max_attempts: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, queue_size: int = 10_000,
                 client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=queue_size)
        self._client = client or httpx.Client(timeout=timeout)
        self._own_client = client is None
        self._sleep = sleep
        self._stats = NotifyStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stop = threading.Event()

    # -- public ------------------------------------------------------------------

    @property
    def stats(self) -> NotifyStats:
        return self._stats

    def send(self, events: Sequence[AlertEvent]) -> None:
        if self._closed:
            return
        for req in self.requests(events):
            self._enqueue(req)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._queue.unfinished_tasks == 0

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=max(timeout, 0.1))
        if self._own_client:
            self._client.close()

    # -- for subclasses -----------------------------------------------------------

    def requests(self, events: Sequence[AlertEvent]) -> list[Request]:
        raise NotImplementedError

    def _enqueue(self, req: Request) -> None:
        self._start()
        try:
            self._queue.put_nowait(req)
            with self._lock:
                self._stats.queued += 1
        except queue.Full:
            with self._lock:
                self._stats.dropped += 1
                self._stats.last_error = "queue full: receiver too far behind"

    # -- the sender -----------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"tapshield-{self.name}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            req = self._queue.get()
            try:
                if req is None:
                    return
                self._deliver(req)
            finally:
                self._queue.task_done()

    def _deliver(self, req: Request) -> None:
        for attempt in range(1, self.max_attempts + 1):
            error: str | None = None
            retry = True
            try:
                r = self._client.request(req.method, req.url, json=req.json, headers=req.headers)
                if 200 <= r.status_code < 300:
                    with self._lock:
                        self._stats.sent += 1
                    return
                error = f"{req.url}: HTTP {r.status_code} {r.text[:200]}"
                retry = r.status_code >= 500 or r.status_code == 429
            except httpx.HTTPError as exc:
                error = f"{req.url}: {type(exc).__name__}: {exc}"
            with self._lock:
                self._stats.last_error = error
                if len(self._stats.errors) < 50 and error:
                    self._stats.errors.append(error)
            if not retry or attempt == self.max_attempts or self._stop.is_set():
                break
            with self._lock:
                self._stats.retried += 1
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            self._sleep(random.uniform(0.0, delay))
        with self._lock:
            self._stats.failed += 1
