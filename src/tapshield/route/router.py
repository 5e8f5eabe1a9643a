"""The router: which channel the next attempt of a tap goes to.

Decisions read the health of two keys per channel, the channel itself and
the channel in the tap's region (so a regional interface fault eliminates the
channel only where it is broken), in the configured priority order:

1. ineligible channels (the customer has no linked debit card, ...) and the
   channels this tap already tried are skipped;
2. the first channel that is not eliminated wins, unless it is on *trial*
   (just readmitted by probes): a trial channel gets the tap only when the
   tap can afford to fail over from it (enough budget left and a healthy
   channel behind it). That is tapshield's cautious exploration: customers
   are never the probe of a channel's recovery, and the few who ride a trial
   channel have a safety net;
3. when every eligible channel is eliminated or already tried in this tap,
   the one with the best estimated success probability *per millisecond of
   the customer's remaining budget* (score / attempt deadline: with the
   budget as the constraint, that is the greedy way to maximise the chance
   the tap succeeds before the customer gives up) is tried (again) as a last
   resort, if its success probability is worth the wait (``give_up_below``);
   a retry on a channel is safe because the earlier attempt there is known
   not to stand (failed, or resolved / reversed);
4. otherwise the decision is the quick answer: no channel, and the reason
   ("use another method"), at once instead of after a timeout.

Only technical outcomes count against a channel (``failed``, ``timeout``,
technical codes such as 91/96/68 even inside a ``declined``); a business
decline proves the path works and counts for it. An answer slower than the
channel's ``slow_ms`` counts against it even when approved.

Times are event-time seconds (floats) supplied by the caller, so the same
router serves a live gateway (wall-clock now) and a replay (event time).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tapshield.events.codes import is_technical
from tapshield.route.config import RouterConfig
from tapshield.route.health import KeyHealth, KeyRules, next_slot
from tapshield.route.stats import elimination_cusum, readmission_test

NATIONAL = ""
"""Scope of a channel's own (all-regions) key."""

OUTCOME_BAD, OUTCOME_OK, PROBE_BAD, PROBE_OK = 0, 1, 2, 3
"""Observation kinds, as shared between router instances."""


class HealthShare(Protocol):
    """The port through which router instances pool their evidence.

    The router only announces what it observed; how the observations travel
    (Redis streams in :class:`tapshield.share.redis.RedisShare`) is an
    adapter's business, so routing never depends on a network client. An
    adapter applies the peers' observations with :meth:`Router.warm`.
    """

    def attach(self, router: Router) -> None:
        """Remember the router the peers' observations are applied to."""
        ...

    def publish(self, channel: str, region: str, t: float, kind: int) -> None:
        """Queue one local observation (never blocks, never raises)."""
        ...


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the next attempt goes, or the quick answer when nowhere."""

    channel: str | None
    reason: str
    deadline_ms: float | None = None
    """Stop waiting for this attempt's answer after this long and resolve it
    with a status inquiry (``None``: wait for the channel's own timeout)."""
    last_resort: bool = False
    """Every eligible channel is down; this is the least bad one."""

    @property
    def fallback(self) -> bool:
        """True when the answer is "use another method"."""
        return self.channel is None


@dataclass(frozen=True, slots=True)
class Probe:
    """A recovery or heartbeat check to send (ISO 8583 0800 echo or a
    zero-amount test authorisation on the channel), never a customer."""

    channel: str
    region: str | None
    """``None``: the channel as a whole."""


class Chooser(Protocol):
    """What a tap needs from a routing policy (the router or a baseline)."""

    name: str
    resolves_timeouts: bool
    """Resolve a timeout (inquiry / reversal) before trying another channel."""
    fails_over: bool
    """Try another channel inside the tap after a technical failure."""

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = (),
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision: ...

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None: ...


_NO_TRIED: frozenset[str] = frozenset()


class Router:
    """tapshield's failover router (see the module docstring).

    Thread-safe for one writer at a time per update (a lock guards state
    changes); :meth:`choose` takes no lock and reads only flags and floats.
    """

    name = "tapshield"
    resolves_timeouts = True
    fails_over = True

    def __init__(self, config: RouterConfig | None = None, *,
                 share: HealthShare | None = None) -> None:
        self.config = cfg = config or RouterConfig()
        self._order = cfg.order
        self._rules: dict[str, KeyRules] = {}
        self._slow: dict[str, float] = {}
        self._typical: dict[str, float] = {}
        self._trial_budget: dict[str, float] = {}
        slowest_typical = max(cfg.profile(c).typical_ms for c in cfg.order)
        for ch in cfg.order:
            prof = cfg.profile(ch)
            p0 = prof.normal_failure_rate
            self._rules[ch] = KeyRules(
                cusum=elimination_cusum(p0, cfg.outage_failure_rate, cfg.false_elimination_every),
                readmission=readmission_test(p0, cfg.outage_failure_rate, cfg.false_readmission),
                decay_rate=math.log(2.0) / cfg.half_life_s,
                prior_success=cfg.prior_weight * (1.0 - p0),
                prior_weight=cfg.prior_weight,
                probe_interval_s=cfg.probe_interval_s,
            )
            self._slow[ch] = prof.slow_ms
            self._typical[ch] = prof.typical_ms
            # A trial attempt must leave room for its own deadline, an inquiry
            # that goes unanswered, and an ordinary answer elsewhere.
            self._trial_budget[ch] = prof.slow_ms + prof.inquiry_timeout_ms + slowest_typical
        self._keys: dict[tuple[str, str], KeyHealth] = {}
        self._eliminated: set[tuple[str, str]] = set()
        self._next_heartbeat: dict[str, float] = {}
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._share = share
        self.eliminations = 0
        self.readmissions = 0
        self.probes_sent = 0
        if share is not None:
            share.attach(self)

    # -- decisions -------------------------------------------------------------

    def choose(
        self,
        region: str,
        eligible: Collection[str],
        now: float,
        *,
        tried: Collection[str] = _NO_TRIED,
        budget_left_ms: float | None = None,
        context: Any = None,
    ) -> Decision:
        """Pick the channel for the next attempt of a tap (see module doc)."""
        budget = self.config.budget_ms if budget_left_ms is None else budget_left_ms
        keys = self._keys
        regional = self.config.regional
        trial_ch: str | None = None
        best_down: str | None = None
        best_score = -1.0
        best_rate = -1.0
        short_of_time = False
        for ch in self._order:
            if ch not in eligible or ch in tried:
                continue
            if budget < self._typical[ch]:
                short_of_time = True
                continue
            nat = keys.get((ch, NATIONAL))
            reg = keys.get((ch, region)) if regional else None
            if (nat is not None and nat.eliminated) or (reg is not None and reg.eliminated):
                score = min(
                    nat.score_at(now) if nat is not None else 1.0,
                    reg.score_at(now) if reg is not None else 1.0,
                )
                rate = score / self._deadline(ch, budget)
                if rate > best_rate:
                    best_down, best_score, best_rate = ch, score, rate
                continue
            if (nat is not None and nat.trial) or (reg is not None and reg.trial):
                if trial_ch is None:
                    trial_ch = ch
                continue
            if trial_ch is not None and budget >= self._trial_budget[trial_ch]:
                return Decision(trial_ch, "trial after recovery", self._deadline(trial_ch, budget))
            return Decision(ch, "healthy", self._deadline(ch, budget))
        if trial_ch is not None:
            return Decision(trial_ch, "trial after recovery", self._deadline(trial_ch, budget))
        # Nothing healthy and untried: the channels already tried in this tap
        # (a failed attempt was definitely not authorised, a timed-out one was
        # resolved or reversed, so a retry is safe) compete with the
        # eliminated ones on estimated success.
        if tried:
            for ch in self._order:
                if ch not in tried or ch not in eligible or budget < self._typical[ch]:
                    continue
                nat = keys.get((ch, NATIONAL))
                reg = keys.get((ch, region)) if regional else None
                score = min(
                    nat.score_at(now) if nat is not None else 1.0,
                    reg.score_at(now) if reg is not None else 1.0,
                )
                rate = score / self._deadline(ch, budget)
                if rate > best_rate:
                    best_down, best_score, best_rate = ch, score, rate
        if best_down is not None and best_score >= self.config.give_up_below:
            why = "retry" if best_down in tried else "last resort: every eligible channel is down"
            return Decision(best_down, why, self._deadline(best_down, budget), last_resort=True)
        return Decision(None, self._why_not(region, eligible, tried, best_score, short_of_time))

    def inquiry_worthwhile(self, channel: str, region: str, now: float, context: Any = None
                           ) -> bool:
        """Whether to resolve a timeout on ``channel`` by status inquiry.

        An inquiry travels the same path as the attempt. Through a channel
        the router holds to be down (failing at ``p1`` or worse) it is at
        best a coin flip for an answer, and a fresh attempt (elsewhere, or a
        retry) is the better use of the customer's remaining seconds; the
        same holds when the channel's estimated success is below
        ``give_up_below``. Then the attempt is reversed (0400) at once.
        Otherwise the inquiry is worth its round trip: it turns the timeouts
        the issuer did authorise, and slow approvals cut by the deadline,
        into finished taps.
        """
        if self.is_down(channel, region):
            return False
        nat = self._keys.get((channel, NATIONAL))
        reg = self._keys.get((channel, region)) if self.config.regional else None
        score = min(nat.score_at(now) if nat is not None else 1.0,
                    reg.score_at(now) if reg is not None else 1.0)
        return score >= self.config.give_up_below

    def _deadline(self, channel: str, budget: float) -> float:
        slow = self._slow[channel]
        return slow if slow < budget else budget

    def _why_not(
        self,
        region: str,
        eligible: Collection[str],
        tried: Collection[str],
        best_score: float,
        short_of_time: bool,
    ) -> str:
        usable = [c for c in self._order if c in eligible]
        if not usable:
            return "use another method: no eligible channel for this customer"
        if short_of_time and best_score < 0.0:
            return "use another method: latency budget exhausted"
        left = [c for c in usable if c not in tried]
        if not left:
            return "use another method: every eligible channel failed in this tap"
        down = ", ".join(left)
        return (
            f"use another method: {down} down in {region or 'all regions'} "
            f"(best estimated success {max(best_score, 0.0):.0%})"
        )

    # -- outcomes --------------------------------------------------------------

    def observe(
        self,
        channel: str,
        region: str,
        now: float,
        outcome: str,
        response_code: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Feed the outcome of a real attempt."""
        slow = self._slow.get(channel)
        if slow is None:
            return  # not a routed channel
        bad = (
            is_technical(response_code, outcome)
            or (latency_ms is not None and latency_ms > slow)
        )
        with self._lock:
            self._apply(channel, region, now, OUTCOME_OK if not bad else OUTCOME_BAD)
        if self._share is not None:
            self._share.publish(channel, region, now, OUTCOME_OK if not bad else OUTCOME_BAD)

    def _key(self, channel: str, scope: str, now: float) -> KeyHealth:
        k = (channel, scope)
        h = self._keys.get(k)
        if h is None:
            h = self._keys[k] = KeyHealth(self._rules[channel], now)
        return h

    def _apply(self, channel: str, region: str, now: float, kind: int) -> None:
        """Apply one observation (caller holds the lock)."""
        if self._t0 is None:
            self._t0 = now
        if kind in (OUTCOME_OK, OUTCOME_BAD):
            ok = kind == OUTCOME_OK
            scopes = (NATIONAL, region) if self.config.regional and region else (NATIONAL,)
            for scope in scopes:
                if self._key(channel, scope, now).outcome(ok, now):
                    self._eliminated.add((channel, scope))
                    self.eliminations += 1
        else:
            scope = region or NATIONAL
            h = self._key(channel, scope, now)
            was = h.eliminated
            if h.probe(kind == PROBE_OK, now):
                self._eliminated.discard((channel, scope))
                self.readmissions += 1
            elif h.eliminated and not was:
                self._eliminated.add((channel, scope))
                self.eliminations += 1

    # -- probes ----------------------------------------------------------------

    def due_probes(self, now: float) -> list[Probe]:
        """Probes to send now: eliminated keys every ``probe_interval_s``, and
        channels with no outcome for ``heartbeat_after_s``."""
        out: list[Probe] = []
        with self._lock:
            if self._t0 is None:
                self._t0 = now
            for ch, scope in sorted(self._eliminated):
                h = self._keys[(ch, scope)]
                if h.next_probe <= now:
                    out.append(Probe(ch, scope or None))
                    h.next_probe = next_slot(now, self.config.probe_interval_s)
            every = self.config.heartbeat_after_s
            for ch in self._order:
                if (ch, NATIONAL) in self._eliminated:
                    continue
                nat = self._keys.get((ch, NATIONAL))
                last = nat.last_outcome if nat is not None else self._t0
                due = max(next_slot(last + every, self.config.probe_interval_s),
                          self._next_heartbeat.get(ch, -math.inf))
                if due <= now:
                    out.append(Probe(ch, None))
                    self._next_heartbeat[ch] = next_slot(now + every,
                                                         self.config.probe_interval_s)
        self.probes_sent += len(out)
        return out

    def next_probe_at(self) -> float:
        """Event time at which :meth:`due_probes` will next return something."""
        t = math.inf
        for k in self._eliminated:
            t = min(t, self._keys[k].next_probe)
        if self._t0 is None:
            return t
        every = self.config.heartbeat_after_s
        for ch in self._order:
            if (ch, NATIONAL) in self._eliminated:
                continue
            nat = self._keys.get((ch, NATIONAL))
            last = nat.last_outcome if nat is not None else self._t0
            t = min(t, max(next_slot(last + every, self.config.probe_interval_s),
                           self._next_heartbeat.get(ch, -math.inf)))
        return t

    def observe_probe(self, probe: Probe, ok: bool, now: float) -> None:
        """Feed a probe's result (``ok``: the channel answered correctly in time)."""
        if probe.channel not in self._rules:
            return
        kind = PROBE_OK if ok else PROBE_BAD
        region = probe.region or NATIONAL
        with self._lock:
            self._apply(probe.channel, region, now, kind)
        if self._share is not None:
            self._share.publish(probe.channel, region, now, kind)

    # -- views -----------------------------------------------------------------

    def is_down(self, channel: str, region: str = NATIONAL) -> bool:
        nat = self._keys.get((channel, NATIONAL))
        reg = self._keys.get((channel, region)) if region else None
        return bool((nat is not None and nat.eliminated) or (reg is not None and reg.eliminated))

    def eliminated(self) -> list[tuple[str, str | None]]:
        """Keys currently eliminated, as (channel, region or None)."""
        return [(c, s or None) for c, s in sorted(self._eliminated)]

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """Every key's health, for metrics, logs and the CLI."""
        rows = []
        for (ch, scope), h in sorted(self._keys.items()):
            rows.append({"channel": ch, "region": scope or None, **h.snapshot(now)})
        return rows

    def export_state(self) -> dict[str, Any]:
        """The health of every key as plain JSON (for a checkpoint).

        Counters since start are left out: they restart with the process, as
        Prometheus counters do.
        """
        with self._lock:
            return {
                "version": 1,
                "t0": self._t0,
                "keys": [{"channel": ch, "region": scope, **h.to_state()}
                         for (ch, scope), h in sorted(self._keys.items())],
                "next_heartbeat": dict(self._next_heartbeat),
            }

    def restore_state(self, doc: dict[str, Any]) -> int:
        """Carry on from :meth:`export_state`'s output; returns the keys restored.

        Keys of channels this router does not route (the configuration
        changed) are dropped; the rest keep their statistics under the
        current rules, so a channel eliminated before a restart is still
        eliminated after it.
        """
        if doc.get("version") != 1:
            raise ValueError(f"unknown router state version {doc.get('version')!r}")
        restored = 0
        with self._lock:
            self._keys.clear()
            self._eliminated.clear()
            t0 = doc.get("t0")
            self._t0 = float(t0) if t0 is not None else None
            for row in doc.get("keys", []):
                ch, scope = str(row["channel"]), str(row.get("region") or NATIONAL)
                rules = self._rules.get(ch)
                if rules is None:
                    continue
                h = KeyHealth.from_state(rules, row)
                self._keys[(ch, scope)] = h
                if h.eliminated:
                    self._eliminated.add((ch, scope))
                restored += 1
            self._next_heartbeat = {str(k): float(v)
                                    for k, v in doc.get("next_heartbeat", {}).items()
                                    if k in self._rules}
        return restored

    def warm(self, observations: Iterable[tuple[str, str, float, int]]) -> None:
        """Apply a batch of past observations (e.g. from shared state at start)."""
        with self._lock:
            for ch, region, t, kind in observations:
                if ch in self._rules:
                    self._apply(ch, region, t, kind)
