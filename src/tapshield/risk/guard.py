"""The misfire guard: a rule or model change that declines more than its backtest said.

A change to the risk engine (a ``rule_change`` in the changes file: a new rule
set, a retrained model) comes with a prediction: its backtest says how much
of each segment it will decline. The guard watches the decisions after the
change, per segment (region, device model, app version, channel, carrier,
OS, merchant category), and flags the change as soon as a segment's decline
rate departs from the prediction by more than chance allows: a one-sided
binomial test at ``alpha`` (default 1e-6 per segment and check, so a day of
checks over a few hundred segments stays below one false flag in a
thousand days), plus an effect floor (at least ``min_excess`` extra declines
and a rate at least ``min_ratio`` times and ``min_lift`` above the expected
one), so a statistically clear but harmless wobble does not page anyone.

The flag names the change (its version), the segment, the observed and the
expected rate; with ``auto_rollback`` the guard calls the rollback hook (the
engine returns to the previous rule set or model) and closes the watch.

Where decisions carry ``risk_rule_version`` / ``risk_model_version`` the
guard counts only the decisions that version made (exact attribution). The
payment-event contract has neither column yet, so on plain events (and in
the simulator's drills) a decision is attributed to the latest change before
it: the watch opens at the change's ``ts`` and compares with the
``lookback`` before it. Without a backtest for the change, the prediction is
"no segment moves" (the pre-change rate, smoothed towards the overall rate).

It is a pure streaming component: feed it event batches in time order and
the changes frame; it keeps a few hours of per-minute counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from scipy.stats import binom

DEFAULT_SEGMENTS: tuple[str, ...] = ("region", "device_model", "app_version", "channel",
                                     "carrier", "os", "merchant_category")
WATCHED_COMPONENTS = ("risk_rules", "risk_model", "risk")
CONCENTRATION = ("merchant_id", "device_id", "user_id")
"""A misfiring change declines many customers on many devices across its segment
(about one decline per device: the tap and perhaps a retry). New declines that
sit at one merchant (card testing at one shop) or pile up on few devices or
accounts (a device farm: 9 declines per phone in the simulator) are a local
event, an attack the engine rightly blocks: the monitor and diagnosis own it."""
MAX_PER_DEVICE = 3.0


def _surge(w: _Watch, r: dict[str, Any], now: datetime, limit: float) -> bool:
    """Did the segment's extra declines arrive with as many extra attempts?

    A change declines the segment's usual traffic (retries after a decline add a
    fraction: 0.2-0.4 extra attempts per decline in the simulator's misfires); an
    attack *adds* the attempts that get declined (a device farm: 1.0-1.1). The
    segment's expected attempts are its pre-change rate, scaled by how the traffic
    *outside* it moved since (an attack inside the segment must not raise its own
    expectation). Not judged for segments too small before the change.
    """
    outside_before = w.base_attempts - r["n0"]
    if w.base_minutes < 10 or r["n0"] < 30 or outside_before <= 0:
        return False
    elapsed = max((now - w.start).total_seconds() / 60, 1 / 60)
    factor = ((w.attempts_after - r["n"]) / elapsed) / (outside_before / w.base_minutes)
    expected_n = r["n0"] / w.base_minutes * elapsed * factor
    extra = r["n"] - expected_n
    return bool(r["excess"] > 0 and extra >= limit * r["excess"])


def _concentrated(declined: pl.DataFrame, dim: str, value: str, limit: float) -> bool:
    if dim not in declined.columns:
        return False
    d = declined.filter(pl.col(dim).cast(pl.String) == value)
    if d.height == 0:
        return False
    if "merchant_id" in d.columns and dim != "merchant_category":
        top = d["merchant_id"].value_counts(sort=True)["count"][0]
        if top / d.height >= limit:
            return True
    for col in ("device_id", "user_id"):
        if col in d.columns and d.height / max(1, d[col].n_unique()) >= MAX_PER_DEVICE:
            return True
    return False


@dataclass(frozen=True, slots=True)
class GuardConfig:
    alpha: float = 1e-6
    min_excess: int = 15
    """Extra declines over the expectation before anything is flagged."""
    min_ratio: float = 3.0
    min_lift: float = 0.02
    """Observed rate must exceed the expected by this much (absolute)."""
    lookback: timedelta = timedelta(hours=2)
    watch_for: timedelta = timedelta(hours=4)
    prior_attempts: float = 200.0
    """Pseudo-attempts at the overall rate behind a segment's baseline (a small
    segment with no declines before the change is not expected to have none)."""
    segments: tuple[str, ...] = DEFAULT_SEGMENTS
    max_concentration: float = 0.5
    """Share of a segment's new declines at one merchant/device/account above which
    it is a local event, not the change (see ``CONCENTRATION``)."""
    max_surge: float = 0.75
    """Extra attempts per extra decline above which the declines came with new
    traffic (an attack), not from a change (see ``_surge``)."""
    auto_rollback: bool = False


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a change's backtest predicted: decline rates per segment and overall."""

    version: str
    overall: float | None = None
    segments: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_backtest(cls, doc: Mapping[str, Any]) -> Expectation:
        """From ``tapshield risk backtest --json`` output (``candidate`` side)."""
        seg = {(s["dimension"], str(s["value"])): float(s["decline_rate"])
               for s in doc.get("segments", [])}
        return cls(str(doc["version"]), doc.get("decline_rate"), seg)


@dataclass(frozen=True, slots=True)
class MisfireAlert:
    version: str
    change_ts: datetime
    detected_at: datetime
    segment: dict[str, str]
    attempts: int
    declines: int
    observed_rate: float
    expected_rate: float
    p_value: float
    action: str
    """``rollback`` (done, auto mode) or ``flag`` (an operator decides)."""
    other_segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delay(self) -> timedelta:
        return self.detected_at - self.change_ts

    def summary(self) -> str:
        (dim, value), = self.segment.items()
        return (f"change {self.version} declines {self.observed_rate:.1%} of {dim}={value} "
                f"({self.declines}/{self.attempts}) against {self.expected_rate:.2%} expected; "
                f"{self.delay.total_seconds() / 60:.1f} min after it; "
                + ("rolled back" if self.action == "rollback" else "roll back?"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "change_ts": self.change_ts.isoformat(),
                "detected_at": self.detected_at.isoformat(), "segment": self.segment,
                "attempts": self.attempts, "declines": self.declines,
                "observed_rate": self.observed_rate, "expected_rate": self.expected_rate,
                "p_value": self.p_value, "action": self.action,
                "delay_min": round(self.delay.total_seconds() / 60, 2),
                "other_segments": self.other_segments, "summary": self.summary()}


@dataclass(slots=True)
class _Watch:
    version: str
    start: datetime
    until: datetime
    baseline: pl.DataFrame
    """dim, value, n, k before the change."""
    overall: float
    expectation: Expectation | None
    base_minutes: float = 0.0
    base_attempts: int = 0
    attempts_after: int = 0
    after: pl.DataFrame | None = None
    declined: list[pl.DataFrame] = field(default_factory=list)
    """The declines since the change (few rows): to tell a misfire from a local event."""
    done: bool = False


_COUNTS = {"dim": pl.String, "value": pl.String, "n": pl.Int64, "k": pl.Int64}


class MisfireGuard:
    """Feed batches (``observe``) and changes; read ``alerts``."""

    def __init__(self, changes: pl.DataFrame | None = None, *,
                 config: GuardConfig | None = None,
                 expectations: Iterable[Expectation] = (),
                 on_rollback: Callable[[MisfireAlert], None] | None = None) -> None:
        self.config = config or GuardConfig()
        self.expect = {e.version: e for e in expectations}
        self.on_rollback = on_rollback
        self.alerts: list[MisfireAlert] = []
        self._changes: list[tuple[datetime, str]] = []
        if changes is not None:
            self.add_changes(changes)
        self._history: list[tuple[datetime, pl.DataFrame]] = []
        self._watches: list[_Watch] = []
        self._overall_hist: list[tuple[datetime, int, int]] = []

    def add_changes(self, changes: pl.DataFrame) -> None:
        """Changes to watch: ``rule_change`` rows, and deploys of a risk component."""
        if changes.height == 0:
            return
        rel = changes.filter(
            (pl.col("kind") == "rule_change")
            | pl.col("component").is_in(list(WATCHED_COMPONENTS)))
        for r in rel.iter_rows(named=True):
            version = r.get("version") or f"{r['component']}@{r['ts']}"
            self._changes.append((r["ts"], str(version)))
        self._changes.sort()

    # -- streaming ---------------------------------------------------------------------

    def observe(self, batch: pl.DataFrame) -> list[MisfireAlert]:
        """Count a batch of events (time-ordered batches); returns new alerts."""
        if batch.height == 0 or "risk_decision" not in batch.columns:
            return []
        new: list[MisfireAlert] = []
        b = batch.filter(pl.col("risk_decision").is_not_null())
        if b.height == 0:
            return []
        lo, hi = b["ts"].min(), b["ts"].max()
        assert isinstance(lo, datetime) and isinstance(hi, datetime)
        # split the batch at change times inside it, so a watch opens exactly there
        cuts = [ts for ts, _ in self._changes if lo < ts <= hi]
        pieces: list[pl.DataFrame] = []
        start = lo
        for c in cuts:
            pieces.append(b.filter((pl.col("ts") >= start) & (pl.col("ts") < c)))
            start = c
        pieces.append(b.filter(pl.col("ts") >= start))
        for piece in pieces:
            if piece.height:
                self._open_due(piece["ts"].min())
                new += self._count(piece)
        return new

    def _open_due(self, now: Any) -> None:
        for ts, version in self._changes:
            if ts <= now and not any(w.version == version and w.start == ts
                                     for w in self._watches):
                if ts < now - self.config.watch_for:
                    continue
                self._open(ts, version)

    def _open(self, ts: datetime, version: str) -> None:
        lb = ts - self.config.lookback
        frames = [f for t, f in self._history if lb <= t < ts]
        base = (pl.concat(frames).group_by("dim", "value").agg(pl.col("n").sum(),
                                                                 pl.col("k").sum())
                if frames else pl.DataFrame(schema=_COUNTS))
        n_all = sum(n for t, n, _ in self._overall_hist if lb <= t < ts)
        k_all = sum(k for t, _, k in self._overall_hist if lb <= t < ts)
        seen = [t for t, _, _ in self._overall_hist if lb <= t < ts]
        minutes = (ts - min(seen)).total_seconds() / 60 if seen else 0.0
        overall = (k_all + 1) / (n_all + 100)
        for w in self._watches:  # a new version of the same component ends the old watch
            w.done = True
        exp = self.expect.get(version)
        if exp is None and version.startswith("rollback:"):
            return
        self._watches.append(_Watch(version, ts, ts + self.config.watch_for, base, overall,
                                    exp, base_minutes=minutes, base_attempts=n_all))

    def _segments(self, piece: pl.DataFrame) -> pl.DataFrame:
        dims = [d for d in self.config.segments if d in piece.columns]
        dec = (pl.col("risk_decision") == "decline").cast(pl.Int64)
        parts = [piece.group_by(pl.col(d).cast(pl.String).alias("value")).agg(
            pl.len().cast(pl.Int64).alias("n"), dec.sum().alias("k"))
            .with_columns(pl.lit(d).alias("dim")).select("dim", "value", "n", "k")
            for d in dims]
        return pl.concat(parts).filter(pl.col("value").is_not_null()) if parts else \
            pl.DataFrame(schema=_COUNTS)

    def _count(self, piece: pl.DataFrame) -> list[MisfireAlert]:
        t0 = piece["ts"].min()
        assert isinstance(t0, datetime)
        seg = self._segments(piece)
        self._history.append((t0, seg))
        n_all = piece.height
        k_all = int((piece["risk_decision"] == "decline").sum())
        self._overall_hist.append((t0, n_all, k_all))
        keep = t0 - self.config.lookback - timedelta(minutes=5)
        self._history = [(t, f) for t, f in self._history if t >= keep]
        self._overall_hist = [x for x in self._overall_hist if x[0] >= keep]
        out: list[MisfireAlert] = []
        for w in self._watches:
            if w.done or t0 < w.start:
                continue
            if t0 >= w.until:
                w.done = True
                continue
            w.declined.append(piece.filter(pl.col("risk_decision") == "decline").select(
                [c for c in (*self.config.segments, *CONCENTRATION) if c in piece.columns]))
            w.after = seg if w.after is None else (
                pl.concat([w.after, seg]).group_by("dim", "value")
                .agg(pl.col("n").sum(), pl.col("k").sum()))
            hi = piece["ts"].max()
            assert isinstance(hi, datetime)
            w.attempts_after += piece.height
            alert = self._test(w, hi)
            if alert is not None:
                out.append(alert)
        self.alerts += out
        return out

    def _test(self, w: _Watch, now: datetime) -> MisfireAlert | None:
        cfg = self.config
        assert w.after is not None
        m = cfg.prior_attempts
        j = w.after.join(w.baseline.rename({"n": "n0", "k": "k0"}), on=["dim", "value"],
                         how="left").fill_null(0)
        exp_override = w.expectation.segments if w.expectation is not None else {}
        p_exp = ((pl.col("k0") + m * w.overall) / (pl.col("n0") + m))
        j = j.with_columns(p_exp.alias("p_exp"))
        if exp_override:
            over = pl.DataFrame({"dim": [d for d, _ in exp_override],
                                 "value": [v for _, v in exp_override],
                                 "p_bt": list(exp_override.values())})
            j = j.join(over, on=["dim", "value"], how="left").with_columns(
                pl.coalesce("p_bt", "p_exp").alias("p_exp")).drop("p_bt")
        j = j.with_columns((pl.col("k") / pl.col("n")).alias("rate"),
                           (pl.col("k") - pl.col("n") * pl.col("p_exp")).alias("excess"))
        cand = j.filter((pl.col("excess") >= cfg.min_excess)
                        & (pl.col("rate") >= pl.col("p_exp") * cfg.min_ratio)
                        & (pl.col("rate") >= pl.col("p_exp") + cfg.min_lift))
        if cand.height == 0:
            return None
        rows = cand.to_dicts()
        for r in rows:
            r["p"] = float(binom.sf(int(r["k"]) - 1, int(r["n"]), min(max(r["p_exp"], 1e-9),
                                                                    1.0)))
        hits = [r for r in rows if r["p"] < cfg.alpha]
        if not hits:
            return None
        # name the segment that explains the excess best: among segments holding at
        # least half the largest excess, the one with the highest decline rate
        top = max(r["excess"] for r in hits)
        best = max((r for r in hits if r["excess"] >= 0.5 * top), key=lambda r: r["rate"])
        # an attack being blocked there (its declines piled on few devices or one
        # merchant, or arriving with as much new traffic) is not this change's doing;
        # the broader segments that contain it only echo it
        declined = pl.concat(w.declined, how="diagonal")
        if _concentrated(declined, best["dim"], best["value"], cfg.max_concentration) or \
                _surge(w, best, now, cfg.max_surge):
            return None
        others = [{"segment": {r["dim"]: r["value"]}, "rate": r["rate"], "n": r["n"]}
                  for r in sorted(hits, key=lambda r: -r["excess"]) if r is not best][:5]
        action = "rollback" if cfg.auto_rollback else "flag"
        alert = MisfireAlert(w.version, w.start, now, {best["dim"]: best["value"]},
                             int(best["n"]), int(best["k"]), float(best["rate"]),
                             float(best["p_exp"]), float(best["p"]), action, others)
        w.done = True
        if cfg.auto_rollback and self.on_rollback is not None:
            self.on_rollback(alert)
        return alert


def run_guard(batches: Iterable[pl.DataFrame], changes: pl.DataFrame, *,
              config: GuardConfig | None = None,
              expectations: Iterable[Expectation] = ()) -> list[MisfireAlert]:
    """Run the guard over a whole stream (a replay or a drill)."""
    guard = MisfireGuard(changes, config=config, expectations=expectations)
    for b in batches:
        guard.observe(b)
    return guard.alerts


def read_expectations(paths: Iterable[Path | str]) -> list[Expectation]:
    return [Expectation.from_backtest(json.loads(Path(p).read_text())) for p in paths]
