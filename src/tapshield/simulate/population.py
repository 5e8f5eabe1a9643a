"""Who pays, where, with what: customers, their devices and merchants, as arrays.

Everything the simulator knows about a customer or a merchant is one slot of a
NumPy array indexed by its number (``u123`` is slot 123), so drawing a million
taps is a handful of vectorised gathers, never a Python loop. Categorical
attributes are small integer codes into a :class:`Vocab`; they become strings
only when a batch is written out.

Which payment methods a customer really has is a deterministic function of the
seed and the customer's number (a SplitMix64 hash), so it is the same in the
traffic, in :meth:`World.eligible <tapshield.simulate.world.World.eligible>` and
for accounts that appear later (a fraud ring's new accounts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tapshield.simulate.model import ReleaseFault, Scenario, TrafficModel

U64 = np.uint64


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed, stable 64-bit hash of integers."""
    z = x.astype(U64, copy=True)
    with np.errstate(over="ignore"):
        z += U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
        z ^= z >> U64(31)
    return z


def hash_uniform(idx: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A uniform in [0, 1) per integer, stable for (seed, salt)."""
    key = splitmix64(np.asarray([seed * 1_000_003 + salt], dtype=np.int64))[0]
    with np.errstate(over="ignore"):
        h = splitmix64(idx.astype(U64) ^ key)
    return (h >> U64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _norm(weights: dict[str, float]) -> tuple[list[str], np.ndarray]:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=np.float64)
    return names, p / p.sum()


@dataclass(slots=True)
class Vocab:
    """The value lists behind every integer code the simulator uses."""

    channels: list[str]
    regions: list[str]
    carriers: list[str]
    os: list[str]
    models: list[str]
    model_os: np.ndarray
    app_versions: list[str]
    server_versions: list[str]
    categories: list[str]
    codes: list[str]
    series: dict[str, pl.Series] = field(default_factory=dict)

    def code(self, code: str) -> int:
        return self.codes.index(code)

    def values(self, dim: str) -> list[str]:
        return {
            "channel": self.channels, "region": self.regions, "carrier": self.carriers,
            "os": self.os, "device_model": self.models, "app_version": self.app_versions,
            "server_version": self.server_versions, "merchant_category": self.categories,
        }[dim]

    def strings(self, dim: str) -> pl.Series:
        """The vocabulary as a Series, to turn codes into strings with ``gather``."""
        s = self.series.get(dim)
        if s is None:
            vals = self.codes if dim == "response_code" else self.values(dim)
            s = pl.Series(dim, vals, dtype=pl.String)
            self.series[dim] = s
        return s


def build_vocab(traffic: TrafficModel, scenario: Scenario | None) -> Vocab:
    from tapshield.events.codes import BUSINESS_CODES, RISK_CODES, TECHNICAL_CODES

    models: list[str] = []
    model_os: list[int] = []
    for i, o in enumerate(traffic.os.values()):
        for m in o.models:
            if m not in models:
                models.append(m)
                model_os.append(i)
    apps = list(traffic.app_versions)
    servers = list(traffic.server_versions)
    if scenario is not None:
        for f in scenario.faults:
            if isinstance(f, ReleaseFault):
                target = apps if f.target == "app" else servers
                if f.version not in target:
                    target.append(f.version)
    codes = ["00", "68", *sorted(TECHNICAL_CODES - {"68"}), *sorted(BUSINESS_CODES | RISK_CODES)]
    return Vocab(
        channels=list(traffic.channels),
        regions=list(traffic.regions),
        carriers=list(traffic.carriers),
        os=list(traffic.os),
        models=models,
        model_os=np.asarray(model_os, dtype=np.int16),
        app_versions=apps,
        server_versions=servers,
        categories=list(traffic.merchant_categories),
        codes=codes,
    )


@dataclass(slots=True)
class Population:
    """Customers (one phone each) and merchants of one seeded world."""

    seed: int
    n_users: int
    n_merchants: int
    # customers
    user_region: np.ndarray
    user_carrier: np.ndarray
    user_os: np.ndarray
    user_model: np.ndarray
    user_app: np.ndarray
    user_cum: np.ndarray
    """Cumulative activity weights: who pays how often (heavy-tailed)."""
    user_upgrade: np.ndarray
    """Per-customer uniform: a customer is on a rolling-out app version once the
    rollout share passes it (so the same customers stay upgraded)."""
    # merchants
    merchant_region: np.ndarray
    merchant_category: np.ndarray
    merchant_size: np.ndarray
    merchant_order: np.ndarray
    merchant_region_cum: np.ndarray
    region_lo: np.ndarray
    region_hi: np.ndarray
    merchant_cum: np.ndarray
    eligible_share: np.ndarray
    preference: np.ndarray
    user_ids: pl.Series
    device_ids: pl.Series
    merchant_ids: pl.Series

    def eligible_matrix(self, users: np.ndarray) -> np.ndarray:
        """``(n, channels)`` booleans: which methods each customer has.

        Every customer has at least one: if the draw leaves none, they have the
        most widely held one (in practice QR, which any phone can scan).
        """
        n_ch = self.eligible_share.size
        out = np.empty((users.size, n_ch), dtype=bool)
        for c in range(n_ch):
            out[:, c] = hash_uniform(users, self.seed, 101 + c) < self.eligible_share[c]
        none = ~out.any(axis=1)
        if none.any():
            out[none, int(np.argmax(self.eligible_share))] = True
        return out

    def small_merchant(self, share: float = 0.0004) -> int:
        """A small but active merchant: the one whose share of taps is nearest ``share``.

        At the default 0.04 % that is a shop with a few dozen taps an hour at
        scale 1: a rounding error nationally, yet its own decline rate visibly
        jumps (the decoy that must not page, the card testers' target).
        """
        shares = self.merchant_size / self.merchant_size.sum()
        return int(np.argmin(np.abs(shares - share)))


def build_population(traffic: TrafficModel, vocab: Vocab, seed: int) -> Population:
    rng = np.random.default_rng([seed, 0x9090])
    pop = traffic.population
    n_u, n_m = pop.users, pop.merchants
    _, p_region = _norm(traffic.regions)
    _, p_carrier = _norm(traffic.carriers)
    os_names = list(traffic.os)
    p_os = np.asarray([traffic.os[o].share for o in os_names], dtype=np.float64)
    p_os /= p_os.sum()
    _, p_app = _norm(traffic.app_versions)

    user_region = rng.choice(len(p_region), size=n_u, p=p_region).astype(np.int16)
    user_carrier = rng.choice(len(p_carrier), size=n_u, p=p_carrier).astype(np.int16)
    user_os = rng.choice(len(p_os), size=n_u, p=p_os).astype(np.int16)
    user_model = np.empty(n_u, dtype=np.int16)
    for i, o in enumerate(os_names):
        sel = np.flatnonzero(user_os == i)
        names, p = _norm(traffic.os[o].models)
        codes = np.asarray([vocab.models.index(m) for m in names], dtype=np.int16)
        user_model[sel] = codes[rng.choice(len(p), size=sel.size, p=p)]
    user_app = rng.choice(len(p_app), size=n_u, p=p_app).astype(np.int16)
    activity = rng.gamma(pop.user_activity_shape, 1.0, size=n_u)
    user_cum = np.cumsum(activity)
    user_upgrade = rng.random(n_u)

    # merchants: one per region first, so no region is without shops
    n_r = len(p_region)
    merchant_region = np.empty(n_m, dtype=np.int16)
    first = min(n_r, n_m)
    merchant_region[:first] = np.arange(first)
    merchant_region[first:] = rng.choice(n_r, size=n_m - first, p=p_region)
    cats = list(traffic.merchant_categories)
    p_cat = np.asarray([traffic.merchant_categories[c].share for c in cats], dtype=np.float64)
    merchant_category = rng.choice(len(cats), size=n_m, p=p_cat / p_cat.sum()).astype(np.int16)
    merchant_size = rng.pareto(pop.merchant_size_alpha, size=n_m) + 1.0
    order = np.argsort(merchant_region, kind="stable")
    region_cum = np.cumsum(merchant_size[order])
    counts = np.bincount(merchant_region, minlength=n_r)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo = np.where(starts > 0, region_cum[np.maximum(starts - 1, 0)], 0.0)
    hi = np.where(counts > 0, region_cum[np.maximum(ends - 1, 0)], lo)

    ch = list(traffic.channels.values())
    return Population(
        seed=seed,
        n_users=n_u,
        n_merchants=n_m,
        user_region=user_region,
        user_carrier=user_carrier,
        user_os=user_os,
        user_model=user_model,
        user_app=user_app,
        user_cum=user_cum,
        user_upgrade=user_upgrade,
        merchant_region=merchant_region,
        merchant_category=merchant_category,
        merchant_size=merchant_size,
        merchant_order=order,
        merchant_region_cum=region_cum,
        region_lo=lo,
        region_hi=hi,
        merchant_cum=np.cumsum(merchant_size),
        eligible_share=np.asarray([c.eligible_share for c in ch], dtype=np.float64),
        preference=np.asarray([c.preference for c in ch], dtype=np.float64),
        user_ids=pl.select(pl.format("u{}", pl.int_range(n_u))).to_series(),
        device_ids=pl.select(pl.format("d{}", pl.int_range(n_u))).to_series(),
        merchant_ids=pl.select(pl.format("m{}", pl.int_range(n_m))).to_series(),
    )


def id_strings(prefix: str, idx: np.ndarray, table: pl.Series) -> pl.Series:
    """``prefix<n>`` for each index: a gather from the population's strings, with
    the rare indices beyond it (new accounts and devices) formatted one by one."""
    n = table.len()
    beyond = idx >= n
    out = table.gather(np.where(beyond, 0, idx))
    if beyond.any():
        pos = np.flatnonzero(beyond)
        out = out.scatter(pos, pl.Series([f"{prefix}{int(i)}" for i in idx[pos]]))
    return out


def search(cum: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(cum, values, side="right")``, faster for many random values:
    searching them in sorted order keeps the table in cache (same result)."""
    if values.size < 4096:
        return np.asarray(np.searchsorted(cum, values, side="right"))
    order = np.argsort(values)
    out = np.empty(values.size, dtype=np.int64)
    out[order] = np.searchsorted(cum, values[order], side="right")
    return out


def pick_merchants(
    pop: Population, region: np.ndarray, u_local: np.ndarray, u_where: np.ndarray,
    home_share: float,
) -> np.ndarray:
    """A merchant per tap: in the given region (by size) or, for travellers, anywhere."""
    lo, hi = pop.region_lo[region], pop.region_hi[region]
    pos = search(pop.merchant_region_cum, lo + u_local * (hi - lo))
    local = pop.merchant_order[np.minimum(pos, pop.n_merchants - 1)]
    far = search(pop.merchant_cum, u_local * pop.merchant_cum[-1])
    far = np.minimum(far, pop.n_merchants - 1)
    return np.asarray(np.where(u_where < home_share, local, far), dtype=np.int64)
