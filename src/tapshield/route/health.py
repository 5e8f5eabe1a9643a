"""Health of one routing key (a channel, or a channel in one region).

One :class:`KeyHealth` holds everything the router knows about a key, updated
in O(1) per outcome: decayed success and attempt counts (the score), the
elimination CUSUM, and the readmission statistic while eliminated. The rules
live in :mod:`tapshield.route.stats`; this module only applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tapshield.route.stats import Cusum, Readmission


@dataclass(frozen=True, slots=True)
class KeyRules:
    """The per-channel constants a key is updated with (precomputed once)."""

    cusum: Cusum
    readmission: Readmission
    decay_rate: float
    """``ln 2 / half_life`` per second."""
    prior_success: float
    """Prior pseudo-successes: ``prior_weight * (1 - p0)``."""
    prior_weight: float
    probe_interval_s: float


_EPS = 1e-9
"""Float tolerance: k failures worth exactly ``h`` between them do cross it,
as :attr:`~tapshield.route.stats.Cusum.failures_in_a_row` says."""


def next_slot(now: float, interval: float) -> float:
    """The first multiple of ``interval`` after ``now``: probes of every key
    share one clock, so a gateway sends them (and a replay evaluates them) in
    one batch per interval."""
    return (math.floor(now / interval) + 1.0) * interval


_STATE = ("t", "s", "n", "stat", "eliminated", "eliminated_at", "eliminations", "readmit",
          "trial", "next_probe", "last_outcome")
"""The fields of a key's state (everything but its rules)."""


class KeyHealth:
    """Mutable health state of one key. Not thread-safe on its own."""

    __slots__ = (
        "eliminated",
        "eliminated_at",
        "eliminations",
        "last_outcome",
        "n",
        "next_probe",
        "readmit",
        "rules",
        "s",
        "stat",
        "t",
        "trial",
    )

    def __init__(self, rules: KeyRules, now: float) -> None:
        self.rules = rules
        self.t = now
        self.s = 0.0
        self.n = 0.0
        self.stat = 0.0
        self.eliminated = False
        self.eliminated_at = math.nan
        self.eliminations = 0
        self.readmit = 0.0
        self.trial = False
        self.next_probe = math.inf
        self.last_outcome = now

    def _decay(self, now: float) -> None:
        dt = now - self.t
        if dt > 0.0:
            f = math.exp(-dt * self.rules.decay_rate)
            self.s *= f
            self.n *= f
            self.stat *= f
            self.t = now

    @property
    def score(self) -> float:
        """Posterior mean success probability (decayed counts + prior)."""
        r = self.rules
        return (self.s + r.prior_success) / (self.n + r.prior_weight)

    def score_at(self, now: float) -> float:
        """Score as of ``now`` without mutating (decay applied on the fly)."""
        r = self.rules
        dt = now - self.t
        f = math.exp(-dt * r.decay_rate) if dt > 0.0 else 1.0
        return (self.s * f + r.prior_success) / (self.n * f + r.prior_weight)

    def outcome(self, ok: bool, now: float) -> bool:
        """Feed one real outcome; returns True if this eliminated the key."""
        self._decay(now)
        self.last_outcome = max(self.last_outcome, now)
        self.n += 1.0
        if ok:
            self.s += 1.0
        if self.eliminated:
            # A last-resort attempt on an eliminated key is evidence like a probe.
            self._readmission(ok, now)
            return False
        c = self.rules.cusum
        stat = self.stat + (c.on_success if ok else c.on_failure)
        self.stat = stat if stat > 0.0 else 0.0
        if self.trial and self.stat == 0.0:
            self.trial = False
        if self.stat >= c.threshold - _EPS:
            self._eliminate(now)
            return True
        return False

    def probe(self, ok: bool, now: float) -> bool:
        """Feed one probe result; returns True if this readmitted the key."""
        self._decay(now)
        self.n += 1.0
        if ok:
            self.s += 1.0
        if self.eliminated:
            return self._readmission(ok, now)
        # Heartbeat probe of a live key: same evidence as a real outcome.
        c = self.rules.cusum
        stat = self.stat + (c.on_success if ok else c.on_failure)
        self.stat = stat if stat > 0.0 else 0.0
        if self.stat >= c.threshold - _EPS:
            self._eliminate(now)
        return False

    def _eliminate(self, now: float) -> None:
        self.eliminated = True
        self.eliminated_at = now
        self.eliminations += 1
        self.readmit = 0.0
        self.trial = False
        self.next_probe = next_slot(now, self.rules.probe_interval_s)

    def _readmission(self, ok: bool, now: float) -> bool:
        r = self.rules.readmission
        x = self.readmit + (r.on_success if ok else r.on_failure)
        self.readmit = x if x > 0.0 else 0.0
        if self.readmit >= r.threshold - _EPS:
            self.eliminated = False
            self.readmit = 0.0
            self.trial = True
            # Fast initial response: restart the CUSUM at h/2.
            self.stat = self.rules.cusum.threshold / 2.0
            self.next_probe = math.inf
            return True
        return False

    def to_state(self) -> dict[str, float | bool | int | None]:
        """Everything but the rules, as plain JSON values (infinities and NaN
        become ``None``), so a service can checkpoint the key and a restarted
        one carry on from it instead of learning the channel again."""
        out: dict[str, float | bool | int | None] = {}
        for name in _STATE:
            v = getattr(self, name)
            out[name] = None if isinstance(v, float) and not math.isfinite(v) else v
        return out

    @classmethod
    def from_state(cls, rules: KeyRules, state: dict[str, float | bool | int | None]
                   ) -> KeyHealth:
        """The key :meth:`to_state` described, under (possibly new) ``rules``."""
        h = cls(rules, float(state.get("t") or 0.0))
        for name in _STATE:
            v = state.get(name)
            if name in ("eliminated", "trial"):
                setattr(h, name, bool(v))
            elif name == "eliminations":
                setattr(h, name, int(v or 0))
            elif v is None:
                setattr(h, name, math.inf if name == "next_probe" else
                        math.nan if name == "eliminated_at" else getattr(h, name))
            else:
                setattr(h, name, float(v))
        return h

    def snapshot(self, now: float) -> dict[str, float | bool | int]:
        """Plain view for metrics, logs and the CLI."""
        return {
            "eliminated": self.eliminated,
            "trial": self.trial,
            "score": round(self.score_at(now), 6),
            "cusum": round(self.stat, 4),
            "threshold": round(self.rules.cusum.threshold, 4),
            "readmission": round(self.readmit, 4),
            "eliminations": self.eliminations,
            "weight": round(self.n, 3),
        }
