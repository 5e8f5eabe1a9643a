"""Generate canonical payment events, block by block, in event-time order.

For each block of minutes (see :mod:`tapshield.simulate.clock`):

1. **taps**: Poisson arrivals per minute; a customer by activity, a merchant by
   size (mostly in the customer's region), an amount by merchant category, a
   payment method among those the customer has; plus genuine fraud (background
   episodes and any attack the scenario injects);
2. **attempts**: every tap is tried; :meth:`World.sample` decides the fate;
   customers whose attempt did not go through retry the same method, switch
   to another or give up, in rounds (all taps of a round at once), so one tap
   is one ``payment_id`` with one to ``max_attempts`` attempts;
3. **order**: attempts are sorted by time; those falling after the block's
   end (a retry a few seconds later) are carried into the next block; a retry
   that would come after the scenario's end is not made, so the events are
   exactly the window ``[start, end)``, as an export of that window would be.

Each block draws from its own random stream seeded by ``(seed, block)``, so
the events do not depend on how the output is sliced into batches, and the
ground truth is counted from the same arrays while they are at hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from tapshield.events.schema import CANONICAL_SCHEMA, OUTCOMES, RISK_DECISIONS
from tapshield.simulate.clock import MINUTE_US, Block, blocks
from tapshield.simulate.faults import Arrays, CompiledFault
from tapshield.simulate.population import id_strings, pick_merchants, search
from tapshield.simulate.world import APPROVED, DECLINED, FRAUD_CODES, R_DECLINE, World
from tapshield.timeutil import epoch_us

TAPS_PER_BLOCK = 200_000
"""Expected taps per block: big enough that per-block overhead is amortised,
small enough that a block's arrays stay a few tens of MB."""

EPISODE_SIZE = {"account_takeover": 5.0, "device_farm": 12.0, "card_testing": 25.0}
"""Mean taps per background fraud episode."""
EPISODE_GAP_S = {"account_takeover": 60.0, "device_farm": 20.0, "card_testing": 8.0}
FRAUD_AMOUNT = {"account_takeover": (600.0, 0.8), "device_farm": (150.0, 0.7)}
NEW_ID_BASE = 10_000_000_000
"""New accounts and devices (fraud) are numbered from here, far beyond any population."""

TAP_KEYS = ("ts", "user", "device", "merchant", "region", "carrier", "os", "model", "app",
            "category", "amount", "fraud", "attack")
ATTEMPT_KEYS = (*TAP_KEYS, "tap", "attempt", "ch", "srv", "outcome", "code", "latency", "risk",
                "authorised", "fault")


def _concat(parts: list[Arrays], keys: tuple[str, ...]) -> Arrays:
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _take(a: Arrays, idx: np.ndarray) -> Arrays:
    return {k: v[idx] for k, v in a.items()}


def _choice(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    cum = np.cumsum(p)
    return np.asarray(np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), p.size - 1))


@dataclass(slots=True)
class BlockOutput:
    """All attempts of one block's taps (before ordering), with tap-level facts."""

    block: Block
    attempts: Arrays
    tap_offset: int
    n_taps: int


class Generator:
    """Iterates a scenario's blocks; see the module docstring."""

    def __init__(self, world: World, *, taps_per_block: float = TAPS_PER_BLOCK) -> None:
        self.world = world
        sc, tr = world.scenario, world.traffic
        self.blocks, self.rate = blocks(sc, tr, taps_per_block)
        pop = world.pop
        self.cat_median = np.log(np.asarray(
            [c.amount_median_yuan for c in tr.merchant_categories.values()]) * 100.0)
        self.cat_sigma = np.asarray([c.amount_sigma for c in tr.merchant_categories.values()])
        srv = np.asarray(list(tr.server_versions.values()), dtype=np.float64)
        self.srv_p = srv / srv.sum()
        self.n_users = pop.n_users
        b = tr.behaviour
        self.react = np.asarray([
            [b.after_technical.retry_same, b.after_technical.switch],
            [b.after_risk_decline.retry_same, b.after_risk_decline.switch],
            [b.after_decline.retry_same, b.after_decline.switch],
        ])
        self.expected_taps = float(self.rate.sum())
        # The events are the window [start, end), like an export of that window:
        # a retry that would come after the end is not made (a trickle of retries
        # past the end would look like a national silence to a monitor).
        self.end_us = epoch_us(sc.end_ts)
        from tapshield.simulate.churn import ChurnState

        self.churn = ChurnState.of(world)
        """Customers who leave after a lost tap (``None``: churn off, events unchanged)."""

    # -- taps ------------------------------------------------------------------------

    def _normal_taps(self, blk: Block, rng: np.random.Generator) -> Arrays:
        w, pop = self.world, self.world.pop
        rates = self.rate[blk.first_minute:blk.last_minute]
        counts = rng.poisson(rates)
        n = int(counts.sum())
        minute0 = blk.start_us + np.arange(rates.size, dtype=np.int64) * MINUTE_US
        span = np.minimum(MINUTE_US, blk.end_us - minute0)
        ts = np.repeat(minute0, counts) + (rng.random(n) * np.repeat(span, counts)).astype(np.int64)
        ts.sort()
        user = search(pop.user_cum, rng.random(n) * pop.user_cum[-1])
        user = np.minimum(user, pop.n_users - 1).astype(np.int64)
        merchant = pick_merchants(pop, pop.user_region[user], rng.random(n), rng.random(n),
                                  w.traffic.population.merchant_in_home_region)
        category = pop.merchant_category[merchant]
        amount = self._amounts(category, rng)
        return {
            "ts": ts, "user": user, "device": user.copy(), "merchant": merchant,
            "region": pop.merchant_region[merchant], "carrier": pop.user_carrier[user],
            "os": pop.user_os[user], "model": pop.user_model[user], "app": pop.user_app[user],
            "category": category, "amount": amount,
            "fraud": np.zeros(n, dtype=np.int8), "attack": np.full(n, -1, dtype=np.int16),
        }

    def _amounts(self, category: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        log_fen = self.cat_median[category] + self.cat_sigma[category] * rng.standard_normal(
            category.size)
        return np.asarray(np.maximum(np.rint(np.exp(log_fen)), 1), dtype=np.int64)

    def _fraud_taps(self, blk: Block, rng: np.random.Generator, n_normal: int) -> list[Arrays]:
        w = self.world
        fr = w.traffic.fraud
        parts: list[Arrays] = []
        names = list(fr.patterns)
        weights = np.asarray([fr.patterns[k] for k in names])
        weights = weights / weights.sum()
        expected = fr.share_of_taps * n_normal
        next_id = NEW_ID_BASE + blk.index * 10_000_000
        for name, wt in zip(names, weights, strict=True):
            size = EPISODE_SIZE[name]
            n_ep = int(rng.poisson(expected * wt / size))
            if n_ep == 0:
                continue
            sizes = 1 + rng.poisson(size - 1.0, n_ep)
            n = int(sizes.sum())
            ep = np.repeat(np.arange(n_ep), sizes)
            start = blk.start_us + (rng.random(n_ep) * (blk.end_us - blk.start_us)).astype(np.int64)
            gaps = rng.exponential(EPISODE_GAP_S[name] * 1e6, n).astype(np.int64)
            first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            csum = np.cumsum(gaps)
            offset = csum - np.repeat(csum[first], sizes)
            ts = start[ep] + offset
            part = self._fraud_arrays(name, ts, ep, n_ep, next_id, rng, attack=-1)
            if ts.max() >= self.end_us:
                # An episode started near the end runs past it: the scenario's
                # window is the contract (a trickle after it reads as a silence).
                part = _take(part, np.flatnonzero(part["ts"] < self.end_us))
            parts.append(part)
            next_id += 2 * n + 2 * n_ep
        for f in w.faults:
            if f.kind != "fraud_attack":
                continue
            lo, hi = max(blk.start_us, f.start_us), min(blk.end_us, f.end_us)
            if hi <= lo:
                continue
            rate = float(f.params["taps_per_minute"])  # type: ignore[arg-type]
            m0 = np.arange(lo, hi, MINUTE_US, dtype=np.int64)
            span = np.minimum(MINUTE_US, hi - m0)
            shape = f.intensity(m0 + span // 2) / max(f.peak, 1e-12)
            counts = rng.poisson(rate * shape * span / MINUTE_US)
            n = int(counts.sum())
            if n == 0:
                continue
            ts = np.repeat(m0, counts) + (rng.random(n) * np.repeat(span, counts)).astype(np.int64)
            parts.append(self._attack_arrays(f, ts, rng))
        return parts

    def _fraud_arrays(self, name: str, ts: np.ndarray, ep: np.ndarray, n_ep: int, base: int,
                      rng: np.random.Generator, attack: int) -> Arrays:
        """Background fraud episodes: one new device per episode, plus new accounts
        for device farms and card testers; an account takeover uses a real customer."""
        pop = self.world.pop
        n = ts.size
        device = base + ep
        if name == "account_takeover":
            user = np.minimum(np.searchsorted(pop.user_cum, rng.random(n_ep) * pop.user_cum[-1]),
                              pop.n_users - 1)[ep]
        elif name == "device_farm":
            user = base + n_ep + np.arange(n)
        else:
            user = base + n_ep + ep
        look = rng.integers(0, pop.n_users, n_ep)[ep]  # a plausible phone for the device
        if name == "card_testing":
            merchant = rng.integers(0, pop.n_merchants, n_ep)[ep]
        else:
            home = pop.user_region[rng.integers(0, pop.n_users, n_ep)][ep]
            merchant = pick_merchants(pop, home, rng.random(n), rng.random(n), 0.95)
        return self._fraud_common(name, ts, user.astype(np.int64), device.astype(np.int64),
                                  merchant.astype(np.int64), look, rng, attack)

    def _attack_arrays(self, f: CompiledFault, ts: np.ndarray, rng: np.random.Generator
                       ) -> Arrays:
        """An injected attack: the same few devices and accounts throughout its window."""
        pop = self.world.pop
        n = ts.size
        total = float(f.params["taps_per_minute"]) * (f.end_us - f.start_us) / MINUTE_US  # type: ignore[arg-type]
        base = NEW_ID_BASE * 100 + (f.index + 1) * 100_000_000
        look_pool = int(hash_pick(self.world.seed, f.index, pop.n_users))
        if f.pattern == "device_farm":
            n_dev, n_acc = max(2, int(total / 80)), max(5, int(total / 3))
            device = base + rng.integers(0, n_dev, n)
            user = base + 50_000_000 + rng.integers(0, n_acc, n)
            look = np.full(n, look_pool)
        elif f.pattern == "card_testing":
            device = base + rng.integers(0, 2, n)
            user = base + 50_000_000 + rng.integers(0, 3, n)
            look = np.full(n, look_pool)
        else:  # account takeover at scale: real customers, each on a new device
            user = np.minimum(np.searchsorted(pop.user_cum, rng.random(n) * pop.user_cum[-1]),
                              pop.n_users - 1)
            device = base + rng.integers(0, max(10, int(total)), n)
            look = rng.integers(0, pop.n_users, n)
        if f.merchant >= 0:
            merchant = np.full(n, f.merchant, dtype=np.int64)
        else:
            if f.region >= 0:
                region = np.full(n, f.region, dtype=np.int16)
            else:
                region = pop.user_region[rng.integers(0, pop.n_users, n)]
            merchant = pick_merchants(pop, region, rng.random(n), rng.random(n), 1.0)
        return self._fraud_common(f.pattern, ts, user.astype(np.int64), device.astype(np.int64),
                                  merchant.astype(np.int64), look, rng, f.index)

    def _fraud_common(self, name: str, ts: np.ndarray, user: np.ndarray, device: np.ndarray,
                      merchant: np.ndarray, look: np.ndarray, rng: np.random.Generator,
                      attack: int) -> Arrays:
        pop = self.world.pop
        n = ts.size
        category = pop.merchant_category[merchant]
        if name == "card_testing":
            amount = rng.integers(1, 201, n).astype(np.int64)
        else:
            median, sigma = FRAUD_AMOUNT[name]
            amount = np.maximum(np.rint(np.exp(np.log(median * 100) + sigma
                                               * rng.standard_normal(n))), 1).astype(np.int64)
        return {
            "ts": ts.astype(np.int64), "user": user, "device": device, "merchant": merchant,
            "region": pop.merchant_region[merchant], "carrier": pop.user_carrier[look],
            "os": pop.user_os[look], "model": pop.user_model[look], "app": pop.user_app[look],
            "category": category, "amount": amount,
            "fraud": np.full(n, FRAUD_CODES[name], dtype=np.int8),
            "attack": np.full(n, attack, dtype=np.int16),
        }

    # -- attempts ------------------------------------------------------------------------

    def _channels(self, taps: Arrays, rng: np.random.Generator) -> np.ndarray:
        w, pop = self.world, self.world.pop
        elig = pop.eligible_matrix(taps["user"])
        weight = elig * pop.preference[None, :]
        for f in w.faults:
            if f.kind != "maintenance" or f.hide_share <= 0:
                continue
            hide = f.active(taps["ts"]) & (rng.random(taps["ts"].size) < f.hide_share)
            others = (weight.sum(axis=1) - weight[:, f.channel]) > 0
            weight[hide & others, f.channel] = 0.0
        cum = np.cumsum(weight, axis=1)
        u = rng.random(cum.shape[0]) * cum[:, -1]
        return np.asarray((u[:, None] < cum).argmax(axis=1), dtype=np.int8)

    def _rollouts(self, taps: Arrays) -> None:
        w = self.world
        for f in w.faults:
            if f.kind == "release" and f.target == "app":
                existing = taps["user"] < self.n_users
                share = f.rollout_share(taps["ts"])
                up = existing & (w.upgraded(taps["user"]) < share)
                taps["app"] = np.where(up, f.version, taps["app"]).astype(np.int16)

    def _servers(self, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        srv = _choice(self.srv_p, rng.random(ts.size)).astype(np.int16)
        for f in self.world.faults:
            if f.kind == "release" and f.target == "gateway":
                on = f.active(ts) & (rng.random(ts.size) < f.share)
                srv[on] = f.version
        return srv

    def block(self, blk: Block, tap_offset: int) -> BlockOutput:
        """Every attempt of every tap that starts in ``blk``."""
        w = self.world
        rng = np.random.default_rng([w.seed, 0x51D, blk.index])
        normal = self._normal_taps(blk, rng)
        parts = [normal, *self._fraud_taps(blk, rng, normal["ts"].size)]
        taps = _concat(parts, TAP_KEYS) if len(parts) > 1 else normal
        n_taps = taps["ts"].size
        self._rollouts(taps)
        tap_ch = self._channels(taps, rng)
        b = w.traffic.behaviour
        rounds: list[Arrays] = []
        active = np.arange(n_taps)
        ts = taps["ts"].copy()
        ch = tap_ch
        pref = w.pop.preference
        for k in range(1, b.max_attempts + 1):
            if active.size == 0:
                break
            a = _take(taps, active)
            a["ts"] = ts
            a["ch"] = ch
            a["srv"] = self._servers(ts, rng)
            a["tap"] = active
            a["attempt"] = np.full(active.size, k, dtype=np.int8)
            a.update(w.sample(a, rng))
            rounds.append(a)
            if k == b.max_attempts:
                break
            out = a["outcome"]
            cls = np.where(out >= 2, 0, np.where(a["risk"] == R_DECLINE, 1, 2))
            react = self.react[cls] * (b.persistence_decay ** (k - 1))
            u = rng.random(active.size)
            go_on = out != APPROVED
            retry = go_on & (u < react[:, 0])
            switch = go_on & ~retry & (u < react[:, 0] + react[:, 1])
            sw = np.flatnonzero(switch)
            new_ch = ch.copy()
            if sw.size:
                elig = w.pop.eligible_matrix(a["user"][sw]) * pref[None, :]
                elig[np.arange(sw.size), ch[sw]] = 0.0
                cum = np.cumsum(elig, axis=1)
                has = cum[:, -1] > 0
                pick = np.asarray((rng.random(sw.size)[:, None] * cum[:, -1:] < cum).argmax(1))
                new_ch[sw[has]] = pick[has]
                switch[sw[~has]] = False
            keep = np.flatnonzero(retry | switch)
            delay = np.exp(np.log(b.retry_delay_median_s * 1e6)
                           + b.retry_delay_sigma * rng.standard_normal(keep.size))
            ts = (a["ts"][keep] + (a["latency"][keep] * 1000.0).astype(np.int64)
                  + delay.astype(np.int64))
            ch = new_ch[keep]
            active = active[keep]
            within = ts < self.end_us
            if not within.all():
                ts, ch, active = ts[within], ch[within], active[within]
        attempts = _concat(rounds, ATTEMPT_KEYS) if len(rounds) > 1 else rounds[0]
        made = BlockOutput(blk, attempts, tap_offset, n_taps)
        # after every draw of the block: churn removes taps, it never shifts a stream
        return self.churn.apply(made) if self.churn is not None else made


def hash_pick(seed: int, salt: int, n: int) -> int:
    from tapshield.simulate.population import hash_uniform

    return int(hash_uniform(np.asarray([salt], dtype=np.int64), seed, 0xA77) [0] * n)


# -- from arrays to canonical frames ----------------------------------------------------

_OUTCOME_NAMES = pl.Series(OUTCOMES, dtype=pl.String)
_RISK_NAMES = pl.Series(RISK_DECISIONS, dtype=pl.String)

LABEL_COLUMNS = ("fault_id", "fraud", "authorised")


def to_frame(world: World, a: Arrays, tap_offset: np.ndarray, *, labels: bool = False
             ) -> pl.DataFrame:
    """Canonical events (and optionally the ground-truth label columns) from arrays."""
    v, pop = world.vocab, world.pop
    pay = pl.Series("pay", a["tap"] + tap_offset, dtype=pl.Int64)
    frame = pl.DataFrame([
        pay,
        pl.Series("attempt", a["attempt"], dtype=pl.Int8),
        pl.Series("ts", a["ts"], dtype=pl.Int64),
        id_strings("u", a["user"], pop.user_ids).alias("user_id"),
        id_strings("d", a["device"], pop.device_ids).alias("device_id"),
        pop.merchant_ids.gather(a["merchant"]).alias("merchant_id"),
        v.strings("channel").gather(a["ch"]).alias("channel"),
        v.strings("region").gather(a["region"]).alias("region"),
        pl.Series("amount_fen", a["amount"], dtype=pl.Int64),
        _OUTCOME_NAMES.gather(a["outcome"]).alias("outcome"),
        v.strings("response_code").gather(a["code"]).alias("response_code"),
        pl.Series("latency_ms", np.round(a["latency"], 1)),
        v.strings("carrier").gather(a["carrier"]).alias("carrier"),
        v.strings("os").gather(a["os"]).alias("os"),
        v.strings("app_version").gather(a["app"]).alias("app_version"),
        v.strings("device_model").gather(a["model"]).alias("device_model"),
        v.strings("server_version").gather(a["srv"]).alias("server_version"),
        v.strings("merchant_category").gather(a["category"]).alias("merchant_category"),
        pl.Series("risk", a["risk"], dtype=pl.Int8),
    ])
    exprs = [
        pl.format("p{}-{}", "pay", "attempt").alias("event_id"),
        pl.col("ts").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.format("p{}", "pay").alias("payment_id"),
        *[pl.col(c) for c in ("user_id", "device_id", "merchant_id", "channel", "region",
                              "amount_fen")],
        pl.col("outcome").cast(CANONICAL_SCHEMA["outcome"]),
        *[pl.col(c) for c in ("response_code", "latency_ms", "carrier", "os", "app_version",
                              "device_model", "server_version", "merchant_category")],
        pl.when(pl.col("risk") >= 0).then(_risk_expr()).alias("risk_decision"),
    ]
    out = frame.select(exprs)
    if labels:
        ids = pl.Series([f.id for f in world.faults] or [""], dtype=pl.String)
        fault = pl.Series(a["fault"].astype(np.int32)).replace(-1, None)
        fraud_names = pl.Series([None, *FRAUD_CODES], dtype=pl.String)
        out = out.with_columns(
            ids.gather(fault).alias("fault_id"),
            fraud_names.gather(a["fraud"].astype(np.int32)).alias("fraud"),
            pl.Series("authorised", a["authorised"]),
        )
    return out


def _risk_expr() -> pl.Expr:
    r = pl.col("risk")
    return (pl.when(r == 0).then(pl.lit("approve")).when(r == 1).then(pl.lit("review"))
            .otherwise(pl.lit("decline"))).cast(CANONICAL_SCHEMA["risk_decision"])


def ordered_blocks(gen: Generator, on_block: Callable[[BlockOutput], None] | None = None
                   ) -> Iterator[tuple[Arrays, np.ndarray]]:
    """Attempt arrays in event-time order, one slice per block, with each row's
    payment-number offset. Late retries are carried into the next block."""
    carry: Arrays | None = None
    carry_off = np.zeros(0, dtype=np.int64)
    offset = 0
    last = len(gen.blocks) - 1
    for i, blk in enumerate(gen.blocks):
        out = gen.block(blk, offset)
        if on_block is not None:
            on_block(out)
        a = out.attempts
        off = np.full(a["ts"].size, offset, dtype=np.int64)
        offset += out.n_taps
        if carry is not None and carry["ts"].size:
            a = _concat([carry, a], ATTEMPT_KEYS)
            off = np.concatenate([carry_off, off])
        order = np.argsort(a["ts"], kind="stable")
        a = _take(a, order)
        off = off[order]
        cut = a["ts"].size if i == last else int(np.searchsorted(a["ts"], blk.end_us, "left"))
        head = _take(a, np.arange(cut))
        carry = _take(a, np.arange(cut, a["ts"].size))
        carry_off = off[cut:]
        yield head, off[:cut]


def event_count_estimate(gen: Generator) -> float:
    """Expected events (attempts), for progress bars: taps x ~1.03 attempts."""
    return gen.expected_taps * 1.03


__all__ = ["DECLINED", "Generator", "ordered_blocks", "to_frame"]
