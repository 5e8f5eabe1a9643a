"""Churn: customers whose tap a fault lost come back less, less so when told promptly.

**Model.** Every customer pays as a Poisson process (their activity, see
:mod:`tapshield.simulate.population`). When a tap is *lost in a fault*
(an attempt changed by a fault of one of ``churn.causes`` and no approved
attempt at all, the truth's own counting rule), the customer stops paying
with flash pay from that moment, for the rest of the scenario, with
probability ``hazard``, or ``hazard x (1 - prompt_relief)`` when a notice
reached them within ``prompt_within`` of the lost tap.

**Notices.** The simulator models the notice the playbooks send, because the
simulated customers can only react to what happens inside the simulation
(the drill's own response stage runs after the whole day has been written):
for a paging fault, a customer whose tap it lost is told at
``max(fault start + notice_after, the lost tap)``, if the notice reaches them
(``reach``, a fixed draw per customer). That notice log is written beside the
events (``churn.parquet``); it is the record a company has of whom it told and
when, so the trust estimate may use it, but its ``churned_at`` column is
ground truth.

**Exact counterfactual.** Churn only *removes* the taps a churned customer
would have made after leaving; it is applied to a block after all of the
block's attempts were drawn, and its own draws are hashes of
``(seed, block, tap)``. So the events of everybody else, and every random
stream, are exactly those of the same scenario without churn, and the taps
removed (``churn_taps.parquet``) are the counterfactual: the true retention
effect over any window is read off them (:func:`true_effect`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tapshield.money import format_fen
from tapshield.simulate.faults import Arrays
from tapshield.simulate.model import Churn
from tapshield.simulate.population import hash_uniform, id_strings
from tapshield.simulate.world import APPROVED, World
from tapshield.timeutil import TS_DTYPE

if TYPE_CHECKING:
    from tapshield.simulate.generator import BlockOutput

NEVER = np.iinfo(np.int64).max
NONE = np.iinfo(np.int64).min
_SALT_DRAW = 0xC4A2
_SALT_REACH = 0xC4A3

CUSTOMERS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(), "fault_id": pl.String(), "failed_at": TS_DTYPE,
    "notified_at": TS_DTYPE, "prompt": pl.Boolean(), "churned_at": TS_DTYPE,
    "last_paid_at": TS_DTYPE}
"""``churn.parquet``: one row per (customer, fault) whose tap the fault lost."""
TAPS_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.String(), "ts": TS_DTYPE,
                                       "amount_fen": pl.Int64(), "approved": pl.Boolean()}
"""``churn_taps.parquet``: the taps churned customers did not make (the counterfactual)."""


def churn_config(world: World) -> Churn:
    """The scenario's churn block, else the traffic model's."""
    sc = world.scenario
    return sc.churn if sc.churn is not None else world.traffic.churn


@dataclass(slots=True)
class ChurnState:
    """Carried from block to block (blocks come in event-time order)."""

    world: World
    config: Churn
    churn_at: np.ndarray
    last_ok: np.ndarray
    cause: np.ndarray
    """Per compiled fault: do its lost taps count."""
    notice_from: np.ndarray
    """Per compiled fault: first notice time (us), ``NEVER`` for faults that do not page."""
    records: list[Arrays] = field(default_factory=list)
    removed: list[Arrays] = field(default_factory=list)

    @classmethod
    def of(cls, world: World) -> ChurnState | None:
        cfg = churn_config(world)
        if not cfg.enabled:
            return None
        n = world.pop.n_users
        causes = set(cfg.causes)
        after = int(cfg.notice_after.total_seconds() * 1e6)
        cause = np.asarray([f.kind in causes for f in world.faults] or [False], dtype=bool)
        notice = np.asarray([f.start_us + after if f.must_page else NEVER for f in world.faults]
                            or [NEVER], dtype=np.int64)
        return cls(world, cfg, np.full(n, NEVER, dtype=np.int64),
                   np.full(n, NONE, dtype=np.int64), cause, notice)

    def apply(self, out: BlockOutput) -> BlockOutput:
        """The block without the taps of customers who have left (see the module doc)."""
        from tapshield.simulate.generator import BlockOutput

        a, n = out.attempts, out.n_taps
        if n == 0:
            return out
        cfg, w = self.config, self.world
        tap = a["tap"]
        ts, user = a["ts"][:n], a["user"][:n]
        real = (user < w.pop.n_users) & (a["fraud"][:n] == 0)
        uidx = np.where(real, user, 0)
        appr = a["outcome"] == APPROVED
        ok = np.bincount(tap, weights=appr, minlength=n) > 0
        # when the money moved: the approved attempt (a retry comes seconds after the tap)
        paid = np.full(n, NEVER, dtype=np.int64)
        np.minimum.at(paid, tap[appr], a["ts"][appr])
        paid = np.where(ok, paid, ts)
        # the fault that lost each tap (-1: none, or not a cause)
        fa = a["fault"].astype(np.int64)
        counts = (fa >= 0) & self.cause[np.maximum(fa, 0)]
        fault = np.full(n, -1, dtype=np.int64)
        np.maximum.at(fault, tap[counts], fa[counts])
        keep = ~(real & (ts > self.churn_at[uidx]))
        lost = keep & real & ~ok & (fault >= 0)
        li = np.flatnonzero(lost)
        if li.size:
            f = fault[li]
            reached = hash_uniform(user[li], w.seed, _SALT_REACH) < cfg.reach
            told = np.where(reached, np.maximum(self.notice_from[f], ts[li]), NEVER)
            prompt = (told != NEVER) & (told - ts[li]
                                        <= int(cfg.prompt_within.total_seconds() * 1e6))
            p = cfg.hazard * np.where(prompt, 1.0 - cfg.prompt_relief, 1.0)
            key = np.int64(out.block.index) * np.int64(1 << 32) + li.astype(np.int64)
            gone = hash_uniform(key, w.seed, _SALT_DRAW) < p
            when = np.full(w.pop.n_users, NEVER, dtype=np.int64)
            np.minimum.at(when, user[li][gone], ts[li][gone])
            self.churn_at = np.minimum(self.churn_at, when)
            keep &= ~(real & (ts > self.churn_at[uidx]))
            was = keep[li]  # a second lost tap after leaving in this block was never made
            self.records.append({"user": user[li][was], "fault": f[was], "ts": ts[li][was],
                                 "told": told[was], "prompt": prompt[was]})
        drop = np.flatnonzero(~keep)
        if drop.size:
            self.removed.append({"user": user[drop], "ts": paid[drop],
                                 "amount": a["amount"][:n][drop], "ok": ok[drop]})
        # an account takeover's taps carry the customer's id: in the events they pay too
        good = keep & (user < w.pop.n_users) & ok
        np.maximum.at(self.last_ok, user[good], paid[good])
        if not drop.size:
            return out
        rows = keep[tap]
        renum = np.cumsum(keep) - 1
        kept = {k: v[rows] for k, v in a.items()}
        kept["tap"] = renum[kept["tap"]]
        return BlockOutput(out.block, kept, out.tap_offset, int(keep.sum()))

    # -- output --------------------------------------------------------------------------

    def customers(self) -> pl.DataFrame:
        """``churn.parquet``: per (customer, fault), the first lost tap, the notice, the
        time the customer left (any fault) and their last approved payment before that."""
        if not self.records:
            return pl.DataFrame(schema=CUSTOMERS_SCHEMA)
        r = {k: np.concatenate([x[k] for x in self.records]) for k in self.records[0]}
        ids = [f.id for f in self.world.faults]
        frame = pl.DataFrame({"u": r["user"], "f": r["fault"], "ts": r["ts"],
                              "told": r["told"], "prompt": r["prompt"]})
        first = frame.sort("ts").group_by("u", "f", maintain_order=True).first()
        u = first["u"].to_numpy()
        churned = self.churn_at[u]
        last = self.last_ok[u]
        told = first["told"].to_numpy()
        return pl.DataFrame({
            "user_id": id_strings("u", u, self.world.pop.user_ids),
            "fault_id": pl.Series([ids[i] for i in first["f"].to_list()], dtype=pl.String),
            "failed_at": _ts(first["ts"].to_numpy()),
            "notified_at": _ts(told, told == NEVER),
            "prompt": first["prompt"],
            "churned_at": _ts(churned, churned == NEVER),
            "last_paid_at": _ts(last, last == NONE),
        }, schema=CUSTOMERS_SCHEMA)

    def taps(self) -> pl.DataFrame:
        """``churn_taps.parquet``: every tap a churned customer did not make (``ts``: of
    the attempt that would have been approved, else of the tap)."""
        if not self.removed:
            return pl.DataFrame(schema=TAPS_SCHEMA)
        r = {k: np.concatenate([x[k] for x in self.removed]) for k in self.removed[0]}
        return pl.DataFrame({
            "user_id": id_strings("u", r["user"], self.world.pop.user_ids),
            "ts": _ts(r["ts"]), "amount_fen": pl.Series(r["amount"], dtype=pl.Int64),
            "approved": pl.Series(r["ok"], dtype=pl.Boolean)}, schema=TAPS_SCHEMA).sort("ts")

    def truth(self, customers: pl.DataFrame, taps: pl.DataFrame) -> dict[str, Any]:
        """The ``churn`` section of ``truth.json``: the model and, per fault, the true
        retention effect over ``horizon`` after it (see :func:`true_effect`)."""
        cfg = self.config
        end = self.world.scenario.end_ts
        per_fault = []
        for f in self.world.faults:
            rows = customers.filter(pl.col("fault_id") == f.id)
            if rows.height == 0:
                continue
            hi = min(f.end + cfg.horizon, end)
            users = rows["user_id"].to_list()
            told = rows.filter(pl.col("notified_at").is_not_null())["user_id"].to_list()
            untold = rows.filter(pl.col("notified_at").is_null())["user_id"].to_list()
            eff = true_effect(customers, taps, users, f.end, hi)
            e_told = true_effect(customers, taps, told, f.end, hi) if told else None
            e_untold = true_effect(customers, taps, untold, f.end, hi) if untold else None
            per_fault.append({
                "fault_id": f.id,
                "affected_customers": rows.height,
                "notified": len(told),
                "notified_promptly": int(rows["prompt"].sum()),
                "churned": int(rows.filter(pl.col("churned_at").is_not_null()).height),
                "horizon_minutes": int((hi - f.end).total_seconds() // 60),
                "retention_effect": round(eff.effect, 6),
                "customers_lost": eff.customers_lost,
                "lost_spending_fen": eff.lost_fen,
                "lost_spending": format_fen(eff.lost_fen),
                "notified_minus_not": None if e_told is None or e_untold is None
                else round(e_told.effect - e_untold.effect, 6),
            })
        return {
            "model": cfg.model_dump(mode="json"),
            "customers_left": int((self.churn_at != NEVER).sum()),
            "taps_not_made": taps.height,
            "payments_not_made_fen": int(taps.filter(pl.col("approved"))["amount_fen"].sum()),
            "faults": per_fault,
            "files": {"customers": "churn.parquet", "taps": "churn_taps.parquet"},
            "rule": "retention_effect = share of the fault's affected customers paying "
                    "(approved) in (fault end, fault end + horizon] with churn, minus the "
                    "same share had nobody left (the removed taps restored)",
        }


def _ts(us: np.ndarray, null: np.ndarray | None = None) -> pl.Series:
    s = pl.Series(np.where(null, 0, us) if null is not None else us, dtype=pl.Int64)
    if null is not None:
        s = pl.select(pl.when(pl.Series(null)).then(None).otherwise(s)).to_series()
    return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


@dataclass(frozen=True, slots=True)
class TrueEffect:
    effect: float
    """Share paying with churn minus the share had nobody left (<= 0)."""
    customers_lost: int
    """Customers who would have paid in the window and did not."""
    lost_fen: int
    """What those customers' taps in the window would have paid (integer fen)."""
    customers: int


def true_effect(customers: pl.DataFrame, taps: pl.DataFrame, users: Collection[str],
                lo: datetime, hi: datetime) -> TrueEffect:
    """The exact effect of churn on ``users``' paying in ``(lo, hi]``.

    A customer counts as lost when a tap they did not make (``churn_taps``)
    would have been approved in the window and they paid nothing in it before
    leaving (``last_paid_at <= lo``): their last approved payment comes before
    they left, and every tap after that is removed.
    """
    ids = sorted(set(users))
    if not ids:
        return TrueEffect(0.0, 0, 0, 0)
    window = taps.filter(pl.col("approved") & (pl.col("ts") > lo) & (pl.col("ts") <= hi)
                         & pl.col("user_id").is_in(ids))
    if window.height == 0:
        return TrueEffect(0.0, 0, 0, len(ids))
    last = (customers.filter(pl.col("user_id").is_in(window["user_id"].unique().implode()))
            .group_by("user_id").agg(pl.col("last_paid_at").max()))
    paid = set(last.filter(pl.col("last_paid_at") > lo)["user_id"].to_list())
    lost = window.filter(~pl.col("user_id").is_in(sorted(paid)))
    n_lost = lost["user_id"].n_unique()
    return TrueEffect(-n_lost / len(ids), n_lost, int(lost["amount_fen"].sum() or 0), len(ids))


__all__ = ["CUSTOMERS_SCHEMA", "TAPS_SCHEMA", "ChurnState", "TrueEffect", "churn_config",
           "true_effect"]
