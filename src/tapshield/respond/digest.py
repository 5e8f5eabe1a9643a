"""The blocked-fraud digest: the risk engine's ordinary work, hour by hour.

Background fraud is steady: at the simulator's default traffic a few
fraud episodes an hour are blocked by the lender's risk engine (``59`` /
``risk_decision=decline``), and each burst is a real wave of risk declines
that the monitor sees (a level-4 notice). Nobody should be asked to look at
each of them: an incident is something a person should look at. So a
level-4 ``risk_decline`` wave does not open an incident; it is counted into
the **hourly digest** (blocked attempts and amount, top merchants, devices
and regions, the hour's blocked count against the rate of the hours before,
and the waves of the hour) and becomes an incident only when

* the monitor pages for it (it escalates to level 1-3: the level rules say a
  person must look), or
* the attack is **unusual for its own baseline** (:class:`AttackSizeBaseline`):
  its size, the excess blocked attempts in the slice where it fired, crosses
  the upper quantile of the sizes of the ordinary waves before it, at a
  false-alarm rate stated per week.

The incident's ``detected_at`` stays the moment the wave was first raised (the
notice), so its detection delay is what it was when every notice was an
incident; ``digest.opened_at`` says when it became one.

**The attack-size baseline** (documented in docs/monitoring.md):

* *statistic*: the largest number of excess blocked attempts
  ``declines - expected_rate x attempts`` in the fired slice over any
  ``span`` (10 minutes) of the wave's life, from its estimated start
  (``expected_rate``: the monitor's expected risk-decline rate for that slice
  when it fired), not counting attempts inside the scope of an open
  risk-decline incident (those belong to that incident: the same attack seen in
  another slice is evidence, not a second incident). A running maximum is
  monotone in time, so testing it at every batch is one test per wave;
* *null model*: the final sizes of the last ``history`` (200) ordinary waves
  (those that stayed in the digest and lived while no risk-decline incident
  was open: an attack must not raise the bar for the next one), about two
  days at the default traffic;
  their upper tail by peaks over threshold (:class:`ExpTail`: exponential
  excesses over the median, the tail of a negative binomial and of mixtures of
  them); the negative binomial's moments (mean, dispersion ``k``) are reported
  beside it;
* *breadth* (compound Poisson): a broad slice (the whole flow, a carrier) sums
  the ordinary episodes of unrelated places that fall in it at once. The slice
  expects ``n`` episodes over a ``span`` (its expected blocked attempts over one
  span just before the wave began, over the mean ordinary size); the wave is
  tested against its own episode (a draw from the tail above) plus
  ``Poisson(n)`` others, less their expected sum, by a seeded simulation. A
  narrow slice (``n`` near 0) is tested against the pooled tail as before;
* *alpha*: ``false_incidents_per_week / waves per week`` per wave
  (Bonferroni over the waves, their rate estimated from the same history), so
  ordinary traffic opens at most ``false_incidents_per_week`` (1) incidents a
  week from this rule in expectation;
* *warm-up*: with fewer than ``min_history`` (20) ordinary waves seen, no wave
  is tested: only a page opens an incident.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import mask_value
from tapshield.events.codes import risk_decline_expr
from tapshield.incident import scope_expr
from tapshield.money import format_fen
from tapshield.monitor.alerts import AlertEvent
from tapshield.timeutil import from_epoch_us, to_rfc3339

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class DigestPolicy:
    """How blocked fraud is kept out of the incident list. Defaults with reasons."""

    enabled: bool = True
    """``False``: every risk-decline notice opens an incident (the behaviour before)."""
    false_incidents_per_week: float = 1.0
    """Expected incidents a week opened by the size test on ordinary fraud (the
    monitor's own budget is one false alert a week)."""
    history: int = 200
    """Ordinary waves kept for the baseline: about two days at the default traffic,
    enough for the dispersion, short enough to follow a changing fraud climate."""
    min_history: int = 20
    """Ordinary waves needed before the size test runs (a method-of-moments
    dispersion from fewer is too noisy for a tail quantile)."""
    top: int = 3
    """Merchants, devices and regions listed per hour."""
    rate_hours: int = 24
    """Earlier hours whose blocked rate gives an hour's expected blocked count."""
    keep: timedelta = timedelta(days=31)
    """Hours and waves kept for the digest: a long-running service would otherwise
    grow without end (a file longer than this gets its last 31 days)."""
    span: timedelta = timedelta(minutes=10)
    """The window a wave's size is counted over: an ordinary episode is a burst of a
    few minutes, and in a broad slice (a carrier) a longer window would add up
    unrelated episodes while the alert waits 30 minutes to resolve."""


@dataclass(frozen=True, slots=True)
class NegBin:
    """A negative binomial by its mean and dispersion ``k`` (variance ``m + m^2/k``;
    ``k = inf`` is Poisson): how overdispersed ordinary wave sizes are (reported)."""

    mean: float
    k: float

    @staticmethod
    def fit(sizes: Sequence[float]) -> NegBin:
        """Method of moments (the sample variance with ``n - 1``)."""
        n = len(sizes)
        if n == 0:
            return NegBin(0.0, math.inf)
        m = sum(sizes) / n
        if n < 2 or m <= 0:
            return NegBin(max(m, 0.0), math.inf)
        v = sum((x - m) ** 2 for x in sizes) / (n - 1)
        return NegBin(m, m * m / (v - m) if v > m else math.inf)


@dataclass(frozen=True, slots=True)
class ExpTail:
    """The upper tail of ordinary wave sizes by peaks over threshold: above the
    median ``u`` of the history the excesses are exponential (a generalised
    Pareto tail of shape 0) with mean ``beta``; ``p_u`` = the share above ``u``.

    Why not the negative binomial's own tail: fitted by moments it is driven by the
    bulk, and ordinary waves are a mixture (account takeovers of a few taps, card
    testing of dozens): the mixture's tail is the geometric tail of its largest
    component, which the upper half of the sizes measures and the variance does
    not (on the development days the moment fit put the threshold inside the
    ordinary sizes). A negative binomial's tail is geometric, so this is exact in
    the limit for it, and conservative for a Poisson's lighter tail.
    """

    u: float
    beta: float
    p_u: float

    @staticmethod
    def fit(sizes: Sequence[float]) -> ExpTail:
        xs = sorted(sizes)
        n = len(xs)
        if n == 0:
            return ExpTail(0.0, 1.0, 1.0)
        mid = n // 2
        u = xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2
        above = [x - u for x in xs if x > u]
        beta = max(1.0, sum(above) / len(above)) if above else 1.0
        return ExpTail(u, beta, max(len(above), 1) / n)

    def sf(self, x: float) -> float:
        """``P(X >= x)`` in the tail (``x > u``); 1 below it (no claim there)."""
        if x <= self.u:
            return 1.0
        return min(1.0, self.p_u * math.exp(-(x - self.u) / self.beta))

    def quantile(self, alpha: float) -> int:
        """The smallest integer ``q`` with ``P(X >= q) <= alpha``."""
        if alpha >= self.p_u:
            return math.floor(self.u) + 1
        return math.ceil(self.u + self.beta * math.log(self.p_u / alpha))


@dataclass(slots=True)
class AttackSizeBaseline:
    """The sizes of ordinary blocked-fraud waves and the test of a new one."""

    policy: DigestPolicy = field(default_factory=DigestPolicy)
    sizes: list[float] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    _model: ExpTail | None = None

    def add(self, size: float, start: datetime) -> None:
        """An ordinary wave ended (it stayed in the digest)."""
        self.sizes.append(max(0.0, size))
        self.starts.append(start)
        if len(self.sizes) > self.policy.history:
            del self.sizes[0], self.starts[0]
        self._model = None

    @property
    def ready(self) -> bool:
        return len(self.sizes) >= self.policy.min_history

    @property
    def model(self) -> ExpTail:
        if self._model is None:
            self._model = ExpTail.fit(self.sizes)
        return self._model

    def alpha(self, now: datetime) -> float:
        """Per-wave false-alarm probability: the weekly budget over the waves a week."""
        span = max(now - self.starts[0], timedelta(hours=1)) if self.starts else WEEK
        per_week = len(self.sizes) * (WEEK / span)
        return min(1.0, self.policy.false_incidents_per_week / max(per_week, 1.0))

    def episodes_at_once(self, expected_blocked: float) -> float:
        """Ordinary episodes a slice expects over a ``span``: its expected blocked
        attempts then over the mean ordinary size (at least 1). A narrow slice (a
        merchant, a carrier in a region) expects well under one; a broad one (the
        whole flow, a carrier) several."""
        if not self.sizes:
            return 0.0
        m = max(1.0, sum(self.sizes) / len(self.sizes))
        return max(0.0, expected_blocked) / m

    def threshold(self, now: datetime, episodes: float = 0.0) -> int | None:
        """Excess blocked attempts at which a wave is unusual (``None``: warming up).

        Compound Poisson: a wave is its own episode (a draw from the ordinary
        sizes' tail) plus the ``N ~ Poisson(episodes)`` unrelated ordinary episodes
        that fall in its slice at the same time, less their expected sum (the
        monitor's expected rate already holds it). With ``episodes`` near 0 (a
        narrow slice) this is the pooled tail's quantile; for a broad slice the
        quantile of the compound sum, by a seeded simulation (deterministic)."""
        if not self.ready:
            return None
        alpha = self.alpha(now)
        q = self.model.quantile(alpha)
        if episodes < 0.05:
            return q
        sim = self._simulate(episodes)
        return max(q, math.ceil(float(np.quantile(sim, 1.0 - alpha))))

    def _simulate(self, episodes: float, n: int = 200_000) -> np.ndarray:
        rng = np.random.default_rng(20261207)
        xs = np.asarray(self.sizes, dtype=np.float64)
        m = self.model
        mean = max(1.0, float(xs.mean()))

        def draw(k: int) -> np.ndarray:
            # the semi-parametric fit: below the median the sizes seen, above it
            # the exponential tail
            below = xs[xs <= m.u] if (xs <= m.u).any() else xs
            tail = rng.random(k) < m.p_u
            out = rng.choice(below, size=k)
            out[tail] = m.u + rng.exponential(m.beta, int(tail.sum()))
            return out

        own = draw(n)
        count = rng.poisson(episodes, n)
        total = int(count.sum())
        others = np.zeros(n)
        if total:
            np.add.at(others, np.repeat(np.arange(n), count), draw(total))
        return own + others - episodes * mean

    def describe(self, now: datetime) -> dict[str, Any]:
        m = self.model
        nb = NegBin.fit(self.sizes)
        return {
            "waves": len(self.sizes),
            "mean": round(nb.mean, 3),
            "dispersion_k": None if math.isinf(nb.k) else round(nb.k, 4),
            "tail_median": round(m.u, 3),
            "tail_beta": round(m.beta, 3),
            "alpha": round(self.alpha(now), 8),
            "threshold": self.threshold(now),
        }


@dataclass(slots=True)
class Wave:
    """A risk-decline notice held in the digest while it lasts."""

    first: AlertEvent
    expected_rate: float
    span: timedelta = timedelta(minutes=10)
    episodes: float = 0.0
    """Ordinary episodes its slice expects at once (``AttackSizeBaseline.episodes_at_once``):
    a broad slice's wave is tested against the compound sum (the threshold)."""
    events: list[AlertEvent] = field(default_factory=list)
    declines: int = 0
    attempts: int = 0
    excess_max: float = 0.0
    end: datetime | None = None
    incident_id: str | None = None
    opened_by: str | None = None
    opened_at: datetime | None = None
    threshold: int | None = None
    p_value: float | None = None
    beside: str | None = None
    """A risk-decline incident open while the wave lived: the wave is likely that
    attack seen in another slice, so it does not join the ordinary baseline."""
    _ts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _cum: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    _total: float = 0.0

    @property
    def alert_id(self) -> str:
        return self.first.alert_id

    @property
    def level(self) -> int:
        return min(e.level for e in self.events) if self.events else self.first.level

    def settle(self) -> None:
        """The wave is over or an incident: drop the running window (memory)."""
        self._ts = np.empty(0, dtype=np.int64)
        self._cum = np.empty(0, dtype=np.float64)

    def reset(self) -> None:
        """Forget what was counted (to count again from the window)."""
        self.declines = self.attempts = 0
        self.excess_max = self._total = 0.0
        self._ts = np.empty(0, dtype=np.int64)
        self._cum = np.empty(0, dtype=np.float64)

    def count(self, events: pl.DataFrame, exclude: list[dict[str, str]]) -> datetime | None:
        """Add ``events`` (time-ordered, after what was counted) of the fired slice;
        returns the first event time at which the excess over a ``span`` window
        reached :attr:`threshold` (``None``: not reached, or no threshold)."""
        mask = scope_expr([dict(self.first.slice)]) & (pl.col("ts") >= self.first.started_at)
        if exclude:
            mask = mask & ~scope_expr(exclude)
        hit = events.filter(mask).select(
            us=pl.col("ts").cast(pl.Int64),
            d=risk_decline_expr().fill_null(False).cast(pl.Float64))
        if hit.height == 0:
            return None
        us = hit["us"].to_numpy()
        d = hit["d"].to_numpy()
        cum = self._total + np.cumsum(d - self.expected_rate)
        ts_all = np.concatenate([self._ts, us])
        cum_all = np.concatenate([self._cum, cum])
        # excess in (t - span, t]: cum(t) - cum(last event at or before t - span)
        span_us = int(self.span.total_seconds() * 1_000_000)
        j = np.searchsorted(ts_all, us - span_us, side="right") - 1
        before = np.where(j >= 0, cum_all[np.maximum(j, 0)], 0.0)
        windowed = cum - before
        crossed: datetime | None = None
        if self.threshold is not None:
            idx = np.flatnonzero(windowed >= self.threshold)
            if idx.size:
                crossed = from_epoch_us(int(us[idx[0]]))
        self.declines += int(d.sum())
        self.attempts += int(d.size)
        self.excess_max = max(self.excess_max, float(windowed.max()))
        self._total = float(cum[-1])
        keep = max(0, int(np.searchsorted(ts_all, int(us[-1]) - span_us, side="right")) - 1)
        self._ts, self._cum = ts_all[keep:], cum_all[keep:]
        return crossed

    def to_dict(self, tz: str) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "started_at": to_rfc3339(self.first.started_at, tz),
            "detected_at": to_rfc3339(self.first.ts, tz),
            "ended_at": to_rfc3339(self.end, tz) if self.end is not None else None,
            "slice": dict(self.first.slice),
            "level": self.level,
            "blocked_attempts": self.declines,
            "attempts": self.attempts,
            "excess_blocked": round(self.excess_max, 1),
            "threshold": self.threshold,
            "p_value": None if self.p_value is None else float(f"{self.p_value:.4g}"),
            "incident_id": self.incident_id,
            "opened_by": self.opened_by,
            "opened_at": to_rfc3339(self.opened_at, tz) if self.opened_at is not None else None,
            "beside_incident": self.beside,
        }


def expected_rate_of(ev: AlertEvent) -> float:
    """The monitor's expected risk-decline rate in the slice where ``ev`` fired."""
    for m in ev.figures.get("members", ()) or ():
        if isinstance(m, dict) and m.get("slice") == dict(ev.slice) \
                and m.get("signal") == ev.signal:
            try:
                return max(0.0, float(m.get("expected_rate", 0.0)))
            except (TypeError, ValueError):
                return 0.0
    return 0.0


@dataclass(slots=True)
class _Hour:
    attempts: int = 0
    blocked: int = 0
    blocked_fen: int = 0
    merchants: Counter[str] = field(default_factory=Counter)
    devices: Counter[str] = field(default_factory=Counter)
    regions: Counter[str] = field(default_factory=Counter)


class HourlyDigest:
    """Blocked attempts per clock hour (in the operator's zone) and their waves."""

    def __init__(self, policy: DigestPolicy, tz: str) -> None:
        self.policy = policy
        self.tz = tz
        self._hours: dict[datetime, _Hour] = {}

    def observe(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        hour = (pl.col("ts").dt.convert_time_zone(self.tz).dt.truncate("1h")
                .dt.convert_time_zone("UTC").alias("hour"))
        for h, n in batch.group_by(hour).len().iter_rows():
            self._slot(h).attempts += int(n)
        blocked = batch.filter(risk_decline_expr().fill_null(False))
        if blocked.height == 0:
            return
        blocked = blocked.with_columns(hour)
        for h, n, fen in blocked.group_by("hour").agg(
                pl.len(), pl.col("amount_fen").sum()).iter_rows():
            slot = self._slot(h)
            slot.blocked += int(n)
            slot.blocked_fen += int(fen or 0)
        for col, attr in (("merchant_id", "merchants"), ("device_id", "devices"),
                          ("region", "regions")):
            for h, v, n in blocked.group_by("hour", col).len().iter_rows():
                if v is not None:
                    getattr(self._slot(h), attr)[str(v)] += int(n)

    def forget_before(self, cutoff: datetime) -> None:
        """Drop the hours that ended before ``cutoff``."""
        for h in [h for h in self._hours if h + timedelta(hours=1) <= cutoff]:
            del self._hours[h]

    def _slot(self, h: datetime) -> _Hour:
        key = h if h.tzinfo is not None else h.replace(tzinfo=UTC)
        slot = self._hours.get(key)
        if slot is None:
            slot = self._hours[key] = _Hour()
        return slot

    def blocked_fen(self) -> int:
        """Blocked amount over every hour, integer fen."""
        return sum(h.blocked_fen for h in self._hours.values())

    def rows(self, waves: Sequence[Wave]) -> list[dict[str, Any]]:
        """One record per hour with traffic, in time order."""
        by_hour: dict[datetime, list[Wave]] = {}
        for w in waves:
            start = w.first.started_at
            key = next((h for h in sorted(self._hours, reverse=True) if h <= start),
                       None)
            if key is not None:
                by_hour.setdefault(key, []).append(w)
        out: list[dict[str, Any]] = []
        past: list[_Hour] = []
        top = self.policy.top
        for h in sorted(self._hours):
            s = self._hours[h]
            ws = sorted(by_hour.get(h, []), key=lambda w: (w.first.ts, w.alert_id))
            base_n = sum(p.blocked for p in past)
            base_a = sum(p.attempts for p in past)
            expected = round(base_n / base_a * s.attempts, 1) if base_a else None
            out.append({
                "hour": to_rfc3339(h, self.tz),
                "attempts": s.attempts,
                "blocked_attempts": s.blocked,
                "blocked_amount": format_fen(s.blocked_fen),
                "blocked_rate": round(s.blocked / s.attempts, 6) if s.attempts else 0.0,
                "expected_blocked": expected,
                "ratio_to_expected": (round(s.blocked / expected, 3)
                                      if expected else None),
                "top_merchants": [{"merchant_id": k, "blocked": n}
                                  for k, n in _top(s.merchants, top)],
                "top_devices": [{"device_id": mask_value(k), "blocked": n}
                                for k, n in _top(s.devices, top)],
                "top_regions": [{"region": k, "blocked": n} for k, n in _top(s.regions, top)],
                "waves": len(ws),
                "waves_to_incidents": sum(1 for w in ws if w.incident_id is not None),
                "incidents": [w.incident_id for w in ws if w.incident_id is not None],
                "notices": [w.to_dict(self.tz) for w in ws],
            })
            past = [*past, s][-self.policy.rate_hours:]
        return out


def _top(c: Counter[str], n: int) -> list[tuple[str, int]]:
    """The ``n`` largest, ties by name (the output depends only on the input)."""
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
