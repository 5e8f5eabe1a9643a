"""Per-key rate limits: a token bucket per API key, refilled continuously.

A key gets its role's rate (``limits.rate_limits``) unless its keys-file entry
sets its own. Over the limit the answer is 429 with ``Retry-After`` (whole
seconds until a token is back, at least 1). The buckets live in each worker
process: with N workers behind one port a key's limit is N times the
configured rate at most; configure ``per_second`` as the per-worker share
when that matters (docs/service.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from tapshield.service.config import RateLimit
from tapshield.service.keys import Principal


class RateLimiter:
    def __init__(self, by_role: Mapping[str, RateLimit],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.by_role = dict(by_role)
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _rate(self, p: Principal) -> tuple[float, float]:
        base = self.by_role[p.role]
        return (p.per_second or base.per_second, p.burst or base.burst)

    def take(self, p: Principal) -> float | None:
        """``None`` when the request may proceed, else the seconds to wait."""
        rate, burst = self._rate(p)
        now = self.clock()
        with self._lock:
            b = self._buckets.get(p.key_id)
            if b is None:
                b = self._buckets[p.key_id] = [burst, now]
            tokens = min(burst, b[0] + (now - b[1]) * rate)
            b[1] = now
            if tokens >= 1.0:
                b[0] = tokens - 1.0
                return None
            b[0] = tokens
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
