"""Adapter: health shared between router instances through Redis, never required.

Several gateway instances each run a :class:`~tapshield.route.router.Router`
and decide from their **local** view (a decision never waits on the
network). :class:`RedisShare` makes those views converge: every observation
an instance makes (a real outcome or a probe result, with its event time) is
appended to a Redis stream, and each instance applies the others' entries to
its own state on :meth:`RedisShare.sync`. Because every instance then runs
the same statistics on the same pooled evidence, an outage seen by three
instances is eliminated on all of them after three failures in total, not
three each. Probes are claimed with ``SET NX`` so one instance sends each.

Redis is an accelerator, not a dependency: when it is unreachable (refused,
timed out, killed mid-run) :meth:`sync` returns ``False`` quickly (short
socket timeouts, no client-side retries), backs off exponentially, keeps the
unsent observations in a bounded buffer (oldest dropped first, counted), and
the router keeps routing on what it sees itself. When Redis comes back the
buffer is flushed and the instances converge again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tapshield.route.router import Probe, Router

_FIELD = "\x1f"
_RECORD = "\x1e"


@dataclass(slots=True)
class ShareStats:
    sent: int = 0
    """Observations written to Redis."""
    received: int = 0
    """Observations from other instances applied locally."""
    errors: int = 0
    dropped: int = 0
    """Observations lost because the buffer overflowed while Redis was down."""
    healthy: bool = False
    """Whether the last contact with Redis succeeded."""


class RedisShare:
    """Shares one router's observations with its peers (see module doc)."""

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        namespace: str = "tapshield:route",
        instance: str | None = None,
        timeout_s: float = 0.05,
        max_pending: int = 100_000,
        stream_max: int = 100_000,
        page: int = 500,
        retry_after_s: float = 0.2,
        max_retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        warm_s: float = 1_500.0,
    ) -> None:
        if isinstance(client, str):
            client = redis.Redis.from_url(
                client,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        self.client: Any = client
        self.namespace = namespace
        self.stream = f"{namespace}:obs"
        self.instance = instance or uuid.uuid4().hex[:12]
        self.stream_max = stream_max
        self.page = page
        self.retry_after_s = retry_after_s
        self.max_retry_s = max_retry_s
        self.clock = clock
        self.stats = ShareStats()
        self._pending: deque[str] = deque()
        self._max_pending = max_pending
        # A new instance starts from the peers' observations of the last
        # ``warm_s`` seconds (five evidence half-lives by default: older
        # evidence weighs under 3 %), not from the whole stream.
        self._last_id = f"{max(0, int((time.time() - warm_s) * 1000))}-0"
        self._router: Router | None = None
        self._next_try = 0.0
        self._delay = retry_after_s
        self._sync_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def position(self) -> str:
        """Id of the last stream entry applied (saved with a router checkpoint)."""
        return self._last_id

    def seek(self, position: str) -> None:
        """Apply peers' entries after ``position`` only (a restored checkpoint
        already holds the evidence up to it)."""
        self._last_id = position

    def attach(self, router: Router) -> None:
        """Called by :class:`Router` when it is built with ``share=self`` (the
        :class:`tapshield.route.HealthShare` port)."""
        self._router = router

    # -- local side (never blocks) ---------------------------------------------

    def publish(self, channel: str, region: str, t: float, kind: int) -> None:
        """Queue one local observation for the peers."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.stats.dropped += 1
        self._pending.append(f"{channel}{_FIELD}{region}{_FIELD}{t!r}{_FIELD}{kind}")

    # -- network side ----------------------------------------------------------

    def sync(self) -> bool:
        """Push queued observations, apply the peers' new ones.

        Returns whether Redis was reached; never raises for Redis trouble.
        """
        now = self.clock()
        if now < self._next_try:
            return False
        with self._sync_lock:
            try:
                self._push()
                self._pull()
            except (redis.RedisError, OSError):
                self.stats.errors += 1
                self.stats.healthy = False
                self._next_try = now + self._delay
                self._delay = min(self._delay * 2.0, self.max_retry_s)
                return False
        self.stats.healthy = True
        self._delay = self.retry_after_s
        return True

    def _push(self) -> None:
        while self._pending:
            n = min(len(self._pending), 2_000)
            batch = [self._pending[i] for i in range(n)]
            self.client.xadd(
                self.stream,
                {"i": self.instance, "d": _RECORD.join(batch)},
                maxlen=self.stream_max,
                approximate=True,
            )
            for _ in range(n):
                self._pending.popleft()
            self.stats.sent += n

    def _pull(self) -> None:
        router = self._router
        while True:
            got = self.client.xread({self.stream: self._last_id}, count=self.page)
            if not got:
                return
            entries = got[0][1]
            for entry_id, fields in entries:
                self._last_id = entry_id
                if fields.get("i") == self.instance or router is None:
                    continue
                obs = []
                for rec in fields.get("d", "").split(_RECORD):
                    parts = rec.split(_FIELD)
                    if len(parts) != 4:
                        continue  # a malformed entry from a foreign writer
                    try:
                        obs.append((parts[0], parts[1], float(parts[2]), int(parts[3])))
                    except ValueError:
                        continue
                router.warm(obs)
                self.stats.received += len(obs)
            if len(entries) < self.page:
                return

    def claim(self, probe: Probe, now: float, interval_s: float) -> bool:
        """Whether this instance sends ``probe`` for the slot containing ``now``.

        One instance wins each slot through ``SET NX``; without Redis every
        instance probes (harmless: a probe is one echo message).
        """
        slot = int(now // interval_s)
        key = f"{self.namespace}:probe:{probe.channel}:{probe.region or ''}:{slot}"
        if self.clock() < self._next_try:
            return True
        try:
            won = self.client.set(key, self.instance, nx=True, px=max(1, int(interval_s * 2000)))
        except (redis.RedisError, OSError):
            self.stats.errors += 1
            return True
        return bool(won)

    # -- background ------------------------------------------------------------

    def start(self, interval_s: float = 0.05) -> None:
        """Sync every ``interval_s`` seconds on a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.sync()

        self._thread = threading.Thread(target=loop, name="tapshield-route-share", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    @property
    def pending(self) -> int:
        return len(self._pending)
