"""Replay a scenario's customer taps through a routing policy against the
simulator's ground truth.

``replay(taps, world, policy, seed=...)`` answers "what would this router have
done?": every tap (one ``payment_id``, its first attempt in the scenario) is
routed by the policy, each attempt's answer comes from the simulator's
:class:`World`, the policy learns from the answers as a live router would
(an answer is seen only ``latency`` after the attempt started), and the
result counts failed payments (taps that never got an approval or a business
decline), double authorisations (two attempts of one tap authorised and
neither reversed, as the world's ``authorised`` column tells), attempts,
reversals and quick answers.

How the world is consulted (and why it is fair):

* **Potential outcomes.** For every tap and every channel the customer is
  eligible for, the world is asked once, at the tap's time, what an attempt
  on that channel would return. Every policy replays against the *same*
  draws (common random numbers), so differences between policies are
  differences of routing, not of luck. An attempt later in the same tap
  (at most the latency budget, seconds, later) uses the draw made at the
  tap's time: the world is taken as unchanged for the duration of one tap.
* Draws are made per fixed window of event time (``window_s``, aligned to
  the epoch) with a generator seeded by ``(seed, window)``, so results do not
  depend on how the taps were read or chunked.
* A **status inquiry** after a timeout reaches the issuer with probability
  ``1 - p`` where ``p`` is the world's technical failure probability for that
  channel and tap, and then reports the truth (``authorised``).
* **Probes** are synthetic attempts: the world's technical failure
  probability for the probe's channel and region at the probe's time
  decides them. Customers are not involved.
* The **oracle** reads the world's technical failure probabilities, never the
  draws: it is the best any router could do without seeing the future.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl

from tapshield.route.baselines import (
    BlindTap,
    DecisionEngine,
    HyperswitchRule,
    NoFailover,
    Oracle,
    Resilience4jBreaker,
)
from tapshield.route.config import RouterConfig, estimate_profiles
from tapshield.route.router import Chooser, Probe, Router
from tapshield.route.tap import Action, Attempt, TapSession, TapStatus

POLICIES: tuple[str, ...] = (
    "no_failover",
    "decision_engine",
    "hyperswitch",
    "resilience4j",
    "tapshield",
    "oracle",
)
"""Every policy :func:`make_policy` knows, baselines first."""


class World(Protocol):
    """What the replay needs from the simulator (``tapshield.simulate.World``)."""

    def attempt(self, attempts: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        """One row per input row: outcome, response_code, latency_ms,
        authorised (ground truth), fault_id."""
        ...

    def technical_failure_probability(self, attempts: pl.DataFrame) -> Any:
        """True probability that each attempt fails technically (array-like)."""
        ...

    def eligible(self, user_ids: pl.Series) -> pl.DataFrame:
        """Rows (user_id, channel): the channels each user can pay with."""
        ...


def make_policy(name: str, config: RouterConfig | None = None, *, seed: int = 0) -> Chooser:
    """A fresh policy by name (see :data:`POLICIES`)."""
    cfg = config or RouterConfig()
    order = cfg.order
    if name == "tapshield":
        return Router(cfg)
    if name == "oracle":
        return Oracle(cfg)
    if name == "no_failover":
        return NoFailover(order)
    if name == "decision_engine":
        return DecisionEngine(order)
    if name == "hyperswitch":
        return HyperswitchRule(order, seed=seed)
    if name == "resilience4j":
        return Resilience4jBreaker(order)
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def config_from_history(
    events: pl.DataFrame, *, budget_ms: float | None = None, order: tuple[str, ...] | None = None
) -> RouterConfig:
    """A router configuration from a history of canonical events: each
    channel's normal profile estimated (robustly, see
    :func:`~tapshield.route.config.estimate_profiles`), the priority order
    kept (only channels in it), and the tap budget if given (e.g. the app's
    client timeout, after which the customer is gone anyway)."""
    base = RouterConfig() if order is None else RouterConfig(order=order)
    profiles = {k: v for k, v in estimate_profiles(events).items() if k in base.order}
    return RouterConfig(order=base.order, profiles=profiles,
                        budget_ms=base.budget_ms if budget_ms is None else budget_ms)


def taps_from_events(events: pl.DataFrame) -> pl.DataFrame:
    """One row per tap: the first attempt (by event time) of each ``payment_id``."""
    return events.sort("ts", "event_id", maintain_order=True).unique(
        "payment_id", keep="first", maintain_order=True
    )


@dataclass(slots=True)
class ReplayResult:
    """What a policy did with a scenario's taps."""

    policy: str
    taps: int = 0
    approved: int = 0
    declined: int = 0
    failed: int = 0
    """Taps that ended with neither an approval nor a business decline."""
    failed_in_faults: int = 0
    """Failed taps for which some channel of the tap was hit by a fault."""
    lost_fen: int = 0
    """Amount of the failed taps (integer fen)."""
    attempts: int = 0
    double_authorisations: int = 0
    """Taps with two or more attempts authorised and not reversed."""
    unconfirmed_charges: int = 0
    """Failed taps with an attempt authorised and never reversed: the
    customer was told it failed and was charged anyway."""
    inquiries: int = 0
    reversals: int = 0
    """0400 reversals sent for attempts that might have been authorised."""
    quick_answers: int = 0
    """Failed taps answered "use another method" before any attempt."""
    probes: int = 0
    failed_wait_ms_p50: float = math.nan
    """Median time a customer whose tap failed waited for the answer."""
    tap_ms_p99: float = math.nan
    """99th percentile of tap duration (all taps)."""
    tap_table: pl.DataFrame | None = field(default=None, repr=False)
    attempt_table: pl.DataFrame | None = field(default=None, repr=False)

    def saved_vs(self, other: ReplayResult) -> int:
        """Payments this policy saved compared with ``other`` (e.g. no failover)."""
        return other.failed - self.failed

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("tap_table")
        d.pop("attempt_table")
        for k in ("failed_wait_ms_p50", "tap_ms_p99"):
            d[k] = None if math.isnan(d[k]) else round(d[k], 1)
        return d



@dataclass(slots=True)
class _Draw:
    outcome: str
    code: str | None
    latency_ms: float
    authorised: bool
    fault: bool
    p_fail: float
    u: float


RETRY_DRAWS = 3
"""Draws prepared per (tap, channel): the first attempt and two retries on the
same channel inside the tap; rarer deeper retries are drawn one by one."""


class _Window:
    """Potential outcomes of every (tap, eligible channel) of one time window,
    ``RETRY_DRAWS`` independent draws each, kept columnar."""

    __slots__ = ("auth", "code", "fault", "lat", "n", "outcome", "p", "pos", "u")

    def __init__(self) -> None:
        self.pos: dict[tuple[int, str], int] = {}
        self.n = 0
        self.outcome: list[str] = []
        self.code: list[str | None] = []
        self.lat: list[float] = []
        self.auth: list[bool] = []
        self.fault: list[bool] = []
        self.p: list[float] = []
        self.u: list[float] = []

    def draw(self, i: int, channel: str, k: int) -> _Draw | None:
        j = self.pos.get((i, channel))
        if j is None or k >= RETRY_DRAWS:
            return None
        r = k * self.n + j
        return _Draw(self.outcome[r], self.code[r], self.lat[r], self.auth[r], self.fault[r],
                     self.p[j], self.u[r])

    def truth(self, i: int, channels: tuple[str, ...]) -> dict[str, float]:
        out = {}
        for ch in channels:
            j = self.pos.get((i, ch))
            if j is not None:
                out[ch] = self.p[j]
        return out


def _prepare(taps: pl.DataFrame) -> pl.DataFrame:
    missing = {"ts", "payment_id", "user_id", "region", "amount_fen"} - set(taps.columns)
    if missing:
        raise ValueError(f"taps frame lacks column(s): {', '.join(sorted(missing))}")
    out = taps.sort("ts", "payment_id", maintain_order=True)
    if out["payment_id"].is_duplicated().any():
        raise ValueError("taps must have one row per payment_id (see taps_from_events)")
    return out.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"),
        (pl.col("ts").dt.epoch("us").cast(pl.Float64) / 1e6).alias("_t"),
    )


def _eligibility(world: World, users: pl.Series, order: tuple[str, ...]) -> pl.DataFrame:
    pairs = world.eligible(users.unique())
    return (
        pairs.select(pl.col("user_id").cast(pl.String), pl.col("channel").cast(pl.String))
        .filter(pl.col("channel").is_in(list(order)))
        .unique()
    )


def _draw_window(
    world: World, taps_w: pl.DataFrame, pairs: pl.DataFrame, seed: int, w: int
) -> _Window:
    win = _Window()
    if taps_w.height == 0:
        return win
    frame = taps_w.drop("channel", strict=False).join(pairs, on="user_id", how="inner")
    if frame.height == 0:
        return win
    frame = frame.sort("_i", "channel")
    attempts = frame.drop("_i", "_t")
    n = frame.height
    got = world.attempt(pl.concat([attempts] * RETRY_DRAWS), np.random.default_rng([seed, w, 0]))
    if got.height != n * RETRY_DRAWS:
        raise ValueError(f"world.attempt returned {got.height} rows for {n * RETRY_DRAWS}")
    win.n = n
    win.p = np.asarray(world.technical_failure_probability(attempts), dtype=np.float64).tolist()
    win.u = np.random.default_rng([seed, w, 1]).random(n * RETRY_DRAWS).tolist()
    win.outcome = got["outcome"].cast(pl.String).to_list()
    win.code = got["response_code"].cast(pl.String).to_list()
    win.lat = got["latency_ms"].cast(pl.Float64).fill_null(0.0).to_list()
    win.auth = got["authorised"].cast(pl.Boolean).fill_null(False).to_list()
    win.fault = (got["fault_id"].is_not_null().to_list() if "fault_id" in got.columns
                 else [False] * got.height)
    win.pos = dict(zip(zip(frame["_i"].to_list(), frame["channel"].to_list(), strict=True),
                       range(n), strict=True))
    return win


class _Engine:
    """The discrete-event loop of one replay."""

    def __init__(
        self,
        taps: pl.DataFrame,
        world: World,
        chooser: Chooser,
        *,
        seed: int,
        config: RouterConfig,
        window_s: float,
        record: bool,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.taps = taps
        self.world = world
        self.chooser = chooser
        self.seed = seed
        self.cfg = config
        self.window_s = window_s
        self.record = record
        self.progress = progress
        self.result = ReplayResult(policy=chooser.name)
        self.heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self.seq = 0
        self.windows: dict[int, _Window] = {}
        self.retries: dict[tuple[int, str, int], _Draw] = {}
        self.session_cls: type[TapSession] = (
            TapSession if chooser.resolves_timeouts else BlindTap
        )
        self.probing = hasattr(chooser, "due_probes")
        self.needs_truth = isinstance(chooser, Oracle)
        self.next_probe = math.inf
        self.probe_rng = np.random.default_rng([seed, 7, 7])
        self.probe_p: dict[tuple[int, str, str | None], float] = {}
        self.open = 0
        self.durations: list[float] = []
        self.failed_waits: list[float] = []
        self.tap_rows: list[tuple[Any, ...]] = []
        self.attempt_rows: list[list[Any]] = []
        self.row_of: dict[tuple[str, int], list[Any]] = {}

    # -- scheduling ------------------------------------------------------------

    def push(self, t: float, payload: tuple[Any, ...]) -> None:
        """Schedule ``payload[0](t, *payload[1:])`` at event time ``t``."""
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, payload))

    def run(self) -> ReplayResult:
        taps = self.taps
        pairs = _eligibility(self.world, taps["user_id"], self.cfg.order)
        elig_map: dict[str, frozenset[str]] = {}
        interned: dict[tuple[str, ...], frozenset[str]] = {}
        for user, chans in (
            pairs.group_by("user_id").agg(pl.col("channel").sort()).iter_rows()
        ):
            key = tuple(chans)
            elig_map[user] = interned.setdefault(key, frozenset(key))
        none: frozenset[str] = frozenset()
        self.templates = self._templates(taps)
        t_col = taps["_t"].to_list()
        w_of = [math.floor(t / self.window_s) for t in t_col]
        pids = taps["payment_id"].to_list()
        users = taps["user_id"].to_list()
        regions = taps["region"].to_list()
        amounts = taps["amount_fen"].to_list()
        self.amounts = amounts
        current_w: int | None = None
        bounds: list[int] = (
            (np.flatnonzero(np.diff(np.asarray(w_of, dtype=np.int64))) + 1).tolist()
            if w_of else []
        )
        starts = [0, *bounds]
        ends = [*bounds, len(w_of)]
        span = dict(zip([w_of[s] for s in starts], zip(starts, ends, strict=True), strict=True))
        for i, t in enumerate(t_col):
            w = w_of[i]
            if w != current_w:
                a, b = span[w]
                self.windows[w] = _draw_window(
                    self.world, taps.slice(a, b - a), pairs, self.seed, w)
                current_w = w
                # Finish what is due before ``t`` first: after a gap in the taps
                # (a replay of the minutes around each fault) the taps still
                # open belong to windows further back than the previous one.
                self.advance(t)
                for old in [k for k in self.windows if k < w - 1]:
                    del self.windows[old]
            self.advance(t)
            win = self.windows[w]
            sess = self.session_cls(
                self.chooser, pids[i], regions[i], elig_map.get(users[i], none), t,
                self.cfg.budget_ms, win.truth(i, self.cfg.order) if self.needs_truth else None,
            )
            self.open += 1
            self.result.taps += 1
            self.step(sess, (i, w), t)
            if self.progress is not None and (i & 0x3FFF) == 0:
                self.progress(i)
        self.advance(math.inf)
        return self.finish()

    def advance(self, until: float) -> None:
        heap = self.heap
        while True:
            tp = self.next_probe if self.open > 0 else math.inf
            th = heap[0][0] if heap else math.inf
            t = min(tp, th)
            if t > until or t == math.inf:
                return
            if tp <= th:
                self.probe(tp)
                continue
            _, _, payload = heapq.heappop(heap)
            payload[0](t, *payload[1:])

    # -- taps ------------------------------------------------------------------

    def step(self, sess: TapSession, where: tuple[int, int], now: float) -> None:
        att = sess.next(now)
        if att is None:
            self.done(sess, where, now)
            return
        self.start(sess, where, att, now)

    def start(self, sess: TapSession, where: tuple[int, int], att: Attempt, now: float) -> None:
        i, w = where
        k = sum(1 for a in sess.attempts if a.channel == att.channel) - 1
        d = self.draw(i, w, att.channel, k)
        self.result.attempts += 1
        limit = sess.budget_left_ms(now)
        if att.deadline_ms is not None and att.deadline_ms < limit:
            limit = att.deadline_ms
        if d.latency_ms > limit:
            outcome, code, lat = "timeout", None, limit
        else:
            outcome, code, lat = d.outcome, d.code, d.latency_ms
        authorised = d.authorised or d.outcome == "approved"
        if self.record:
            att_row = [sess.payment_id, att.number, att.channel, now, outcome, code, lat,
                       authorised, att.idempotency_key, d.fault, "", False]
            self.attempt_rows.append(att_row)
            self.row_of[(sess.payment_id, att.number)] = att_row
        self.push(now + lat / 1000.0, (self.complete, sess, where, att, outcome, code, lat, d))

    def draw(self, i: int, w: int, channel: str, k: int) -> _Draw:
        """The world's answer to the ``k``-th attempt (0 = first) on ``channel``
        inside tap ``i``; the same for every policy that makes that attempt."""
        key = (i, channel, k)
        d = self.retries.get(key)
        if d is not None:
            return d
        d = self.windows[w].draw(i, channel, k)
        if d is None:
            first = self.windows[w].draw(i, channel, 0)
            if first is None:  # the policy routed outside the world's eligibility
                raise RuntimeError(f"no draw for tap {i} on {channel}")
            row = self.taps.slice(i, 1).drop("channel", "_i", "_t", strict=False).with_columns(
                pl.lit(channel).alias("channel"))
            got = self.world.attempt(row, np.random.default_rng([self.seed, w, 2, i, k]))
            d = _Draw(
                str(got["outcome"][0]), got["response_code"].cast(pl.String)[0],
                float(got["latency_ms"].fill_null(0.0)[0]), bool(got["authorised"][0]),
                "fault_id" in got.columns and got["fault_id"][0] is not None,
                first.p_fail, float(np.random.default_rng([self.seed, w, 3, i, k]).random()),
            )
        self.retries[key] = d
        return d

    def complete(self, now: float, sess: TapSession, where: tuple[int, int], att: Attempt,
                 outcome: str, code: str | None, lat: float, d: _Draw) -> None:
        action = sess.record(att.idempotency_key, now, outcome, code, lat)
        self.after_observation()
        if action is Action.DONE:
            self.done(sess, where, now)
        elif action is Action.REVERSE:
            self.result.reversals += 1
            self.step(sess, where, now)
        elif action is Action.INQUIRE:
            if sess.budget_left_ms(now) <= 0.0:
                self.result.reversals += len(sess.abandon(now))
                self.done(sess, where, now)
                return
            self.result.inquiries += 1
            prof = self.cfg.profile(att.channel)
            authorised = d.authorised or d.outcome == "approved"
            if d.u >= d.p_fail:
                self.push(now + prof.inquiry_ms / 1000.0,
                          (self.resolved, sess, where, att, authorised))
            else:
                self.push(now + prof.inquiry_timeout_ms / 1000.0,
                          (self.resolved, sess, where, att, None))
        else:
            self.step(sess, where, now)

    def resolved(self, now: float, sess: TapSession, where: tuple[int, int], att: Attempt,
                 authorised: bool | None) -> None:
        action = sess.resolve(att.idempotency_key, now, authorised)
        if authorised is None:
            self.result.reversals += 1
        if action is Action.DONE:
            self.done(sess, where, now)
        else:
            self.step(sess, where, now)

    def done(self, sess: TapSession, where: tuple[int, int], now: float) -> None:
        i, w = where
        self.open -= 1
        r = self.result
        charged = 0
        fault = False
        seen: dict[str, int] = {}
        for a in sess.attempts:
            k = seen.get(a.channel, 0)
            seen[a.channel] = k + 1
            d = self.retries.pop((i, a.channel, k))
            fault = fault or d.fault
            if (d.authorised or d.outcome == "approved") and not a.reversal_sent:
                # The attempt was authorised at the issuer (whatever we saw).
                charged += 1
        win = self.windows[w]
        for ch in sess.eligible:
            j = win.pos.get((i, ch))
            if j is not None and win.fault[j]:
                fault = True
        dur = (now - sess.started_at) * 1000.0
        self.durations.append(dur)
        st = sess.status
        if st is TapStatus.APPROVED:
            r.approved += 1
        elif st is TapStatus.DECLINED:
            r.declined += 1
        else:
            r.failed += 1
            r.lost_fen += int(self.amounts[i])
            self.failed_waits.append(dur)
            if fault:
                r.failed_in_faults += 1
            if not sess.attempts:
                r.quick_answers += 1
            if charged:
                r.unconfirmed_charges += 1
        if charged >= 2:
            r.double_authorisations += 1
        if self.record:
            for a in sess.attempts:
                att_row = self.row_of.pop((sess.payment_id, a.number))
                att_row[10] = a.state.value
                att_row[11] = a.reversal_sent
            self.tap_rows.append((sess.payment_id, str(st), len(sess.attempts),
                                  ",".join(a.channel for a in sess.attempts), dur, sess.reason,
                                  charged))

    # -- probes ----------------------------------------------------------------

    def after_observation(self) -> None:
        if self.probing:
            self.next_probe = self.chooser.next_probe_at()  # type: ignore[attr-defined]

    def probe(self, now: float) -> None:
        chooser: Any = self.chooser
        probes: list[Probe] = chooser.due_probes(now)
        if probes:
            self.result.probes += len(probes)
            slot = round(now / self.cfg.probe_interval_s)
            missing = [p for p in probes if (slot, p.channel, p.region) not in self.probe_p]
            if missing:
                self.fill_probe_p(now, missing)
            ok = self.probe_rng.random(len(probes)).tolist()
            for p, u in zip(probes, ok, strict=True):
                chooser.observe_probe(p, u >= self.probe_p.pop((slot, p.channel, p.region)), now)
        self.next_probe = chooser.next_probe_at()
        if self.next_probe <= now:  # never loop on the same instant
            self.next_probe = now + self.cfg.probe_interval_s

    PROBE_BLOCK = 120
    """Probe slots evaluated per world call: a key that is probed now will
    most likely be probed at the next slots too (exact times, one call)."""

    def fill_probe_p(self, now: float, probes: list[Probe]) -> None:
        step = self.cfg.probe_interval_s
        slot0 = round(now / step)
        rows = []
        keys = []
        for p in probes:
            tpl = self.templates.get(p.region or "", self.templates[""])
            for k in range(self.PROBE_BLOCK):
                rows.append({**tpl, "channel": p.channel, "ts": _us(now + k * step)})
                keys.append((slot0 + k, p.channel, p.region))
        schema = dict(self.template_schema)
        ts_type = schema.pop("ts")
        frame = pl.DataFrame(rows, schema={**schema, "ts": pl.Int64}).with_columns(
            pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(ts_type))
        pf = np.asarray(self.world.technical_failure_probability(frame), dtype=np.float64)
        if len(self.probe_p) > 200_000:
            self.probe_p = {k: v for k, v in self.probe_p.items() if k[0] >= slot0}
        self.probe_p.update(zip(keys, pf.tolist(), strict=True))

    def _templates(self, taps: pl.DataFrame) -> dict[str, dict[str, Any]]:
        cols = [c for c in taps.columns if c not in ("_i", "_t")]
        self.template_schema = taps.select(cols).schema
        firsts = taps.select(cols).unique("region", keep="first", maintain_order=True)
        out = {row["region"]: row for row in firsts.iter_rows(named=True)}
        if taps.height:
            busiest = taps.group_by("region").len().sort("len", descending=True)["region"][0]
            out[""] = out[busiest]
        return out

    # -- result ----------------------------------------------------------------

    def finish(self) -> ReplayResult:
        r = self.result
        if self.durations:
            r.tap_ms_p99 = float(np.percentile(self.durations, 99))
        if self.failed_waits:
            r.failed_wait_ms_p50 = float(np.median(self.failed_waits))
        if self.record:
            r.tap_table = pl.DataFrame(
                self.tap_rows,
                schema={"payment_id": pl.String, "status": pl.String, "attempts": pl.Int32,
                        "channels": pl.String, "duration_ms": pl.Float64, "reason": pl.String,
                        "authorised_attempts": pl.Int32},
                orient="row",
            )
            r.attempt_table = pl.DataFrame(
                self.attempt_rows,
                schema={"payment_id": pl.String, "attempt": pl.Int32, "channel": pl.String,
                        "t": pl.Float64, "outcome": pl.String, "response_code": pl.String,
                        "latency_ms": pl.Float64, "authorised": pl.Boolean,
                        "idempotency_key": pl.String, "fault": pl.Boolean,
                        "state": pl.String, "reversed": pl.Boolean},
                orient="row",
            )
        return r


def _us(t: float) -> int:
    return round(t * 1e6)


def replay(
    taps: pl.DataFrame,
    world: World,
    policy: str | Chooser = "tapshield",
    *,
    seed: int = 0,
    config: RouterConfig | None = None,
    window_s: float = 600.0,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay ``taps`` (one row per tap, see :func:`taps_from_events`) through
    ``policy`` (a name from :data:`POLICIES` or a ready chooser) against
    ``world``. ``record=True`` keeps per-tap and per-attempt tables."""
    cfg = config or (policy.config if isinstance(policy, Router) else RouterConfig())
    if window_s * 1000.0 < 4.0 * cfg.budget_ms:
        raise ValueError("window_s must be at least four tap budgets long")
    chooser = make_policy(policy, cfg, seed=seed) if isinstance(policy, str) else policy
    engine = _Engine(_prepare(taps), world, chooser, seed=seed, config=cfg, window_s=window_s,
                     record=record, progress=progress)
    return engine.run()


def compare(
    taps: pl.DataFrame,
    world: World,
    policies: Iterable[str] = POLICIES,
    *,
    seed: int = 0,
    config: RouterConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ReplayResult]:
    """Replay the same taps, with the same draws, under several policies."""
    out: dict[str, ReplayResult] = {}
    for name in policies:
        if progress is not None:
            progress(name)
        out[name] = replay(taps, world, name, seed=seed, config=config)
    return out


def routed_events(result: ReplayResult, taps: pl.DataFrame) -> pl.DataFrame:
    """The scenario "as routed by" the policy: one canonical event per
    attempt the policy made (``replay(..., record=True)``), carrying the tap's
    customer, device, merchant and amount, the routed channel and the answer
    the router saw (a deadline cut shows as ``timeout`` with code 68; one the
    status inquiry confirmed as authorised shows as ``approved``, 00). Feed
    it to the analysis pipeline to see what monitoring would have seen with
    failover."""
    from tapshield.events.schema import CANONICAL_SCHEMA, OUTCOME_DTYPE

    if result.attempt_table is None:
        raise ValueError("replay(..., record=True) keeps the attempts routed_events needs")
    a = result.attempt_table
    base = taps.drop([c for c in ("channel", "outcome", "response_code", "latency_ms",
                                  "risk_decision", "event_id", "ts") if c in taps.columns])
    confirmed = pl.col("state") == "authorised"
    cut = (pl.col("outcome") == "timeout") & pl.col("response_code").is_null()
    a = a.with_columns(
        pl.when(confirmed).then(pl.lit("approved")).otherwise(pl.col("outcome"))
        .alias("outcome"),
        pl.when(confirmed).then(pl.lit("00")).when(cut).then(pl.lit("68"))
        .otherwise(pl.col("response_code")).alias("response_code"),
    )
    ev = a.join(base, on="payment_id", how="left").with_columns(
        (pl.col("payment_id") + "-a" + pl.col("attempt").cast(pl.String)).alias("event_id"),
        (pl.col("t") * 1e6).round().cast(pl.Int64).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC").alias("ts"),
        pl.col("outcome").cast(OUTCOME_DTYPE),
        pl.lit(None, dtype=CANONICAL_SCHEMA["risk_decision"]).alias("risk_decision"),
    )
    cols = []
    for name, dtype in CANONICAL_SCHEMA.items():
        cols.append(pl.col(name).cast(dtype) if name in ev.columns
                    else pl.lit(None, dtype=dtype).alias(name))
    return ev.select(cols).sort("ts", "event_id")


def saved(results: Mapping[str, ReplayResult], policy: str = "tapshield") -> int:
    """Payments ``policy`` saved compared with no failover."""
    return results[policy].saved_vs(results["no_failover"])
