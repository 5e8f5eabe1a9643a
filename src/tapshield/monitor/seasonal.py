"""Hour-of-week (and festival-hour) profiles behind the expectations.

Failure rates and traffic follow the week: lunch and evening peaks, quiet
nights, a shopping festival at ten times normal. A replay of one day has no
past to learn that from, so expectations start as exponentially weighted
levels (:mod:`tapshield.monitor.detectors`) and become seasonal when history
exists: a profile saved by an earlier run (``--profile``), or after a week of
the same stream. The profile gives a multiplicative *index* per hour of the
week (festival hours, from the config's festival dates, have their own 24),
shrunk towards 1 where that hour has little data; the expectation is
``level x index(now)``, with the level learnt on deseasonalised counts.

Learnt counts become usable only a week after they were seen (the profile is
promoted weekly), so the current hour never predicts itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from tapshield.errors import ContractError
from tapshield.monitor import _kernels as kn
from tapshield.monitor.config import Festival
from tapshield.monitor.slices import SliceRegistry
from tapshield.timeutil import epoch_us, from_epoch_us, zone

HOURS = 168 + 24
"""Hours of the week, then the 24 hours of a festival day."""
FIELDS = (kn.F_ATTEMPTS, kn.F_TECHNICAL, kn.F_DECLINE_COUNTED, kn.F_RISK_COUNTED)
_FIELDS = np.asarray(FIELDS, dtype=np.int64)
SHRINK_ATTEMPTS = 2000.0
"""An hour's index moves away from 1 with the weight of its data against
2,000 pseudo-attempts at the slice's overall rate: enough that one unlucky
hour of a small slice does not set the expectation for next week."""
SHRINK_BUCKETS = 60.0
WEEK_US = 7 * 24 * 3600 * 1_000_000
QUARTER_US = 15 * 60 * 1_000_000
"""Every time zone's offset is a multiple of 15 minutes, so the local hour is
constant within a UTC quarter-hour (unless a festival starts or ends in it)."""


class SeasonalProfile:
    def __init__(self, tz: str, festivals: tuple[Festival, ...]) -> None:
        self.tz = zone(tz)
        self.festivals = festivals
        self.cap = 0
        self.active = np.zeros((0, HOURS, len(FIELDS)), dtype=np.float32)
        self.learning = np.zeros((0, HOURS, len(FIELDS)), dtype=np.float32)
        self.nat_active = np.zeros((HOURS, 2), dtype=np.float64)
        self.nat_learning = np.zeros((HOURS, 2), dtype=np.float64)
        self.loaded: dict[str, np.ndarray] = {}
        self.applied = 0
        self.promoted_at: int | None = None
        self.has_data = False
        self._bounds = sorted({epoch_us(b) for f in festivals for b in (f.start, f.end)})
        self._hour_q = -1
        self._hour_v = 0

    def ensure(self, n: int) -> None:
        if n <= self.cap:
            return
        cap = max(256, self.cap)
        while cap < n:
            cap *= 2
        for name in ("active", "learning"):
            old = getattr(self, name)
            new = np.zeros((cap, HOURS, len(FIELDS)), dtype=np.float32)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        self.cap = cap

    def hour(self, t_us: int) -> int:
        """Hour of the week (or festival hour) of ``t_us``; remembered for its
        quarter-hour, since every bucket asks."""
        q = t_us // QUARTER_US
        if q == self._hour_q:
            return self._hour_v
        h = self._hour(t_us)
        lo, hi = q * QUARTER_US, (q + 1) * QUARTER_US
        if not any(lo < b < hi for b in self._bounds):
            self._hour_q, self._hour_v = q, h
        return h

    def _hour(self, t_us: int) -> int:
        when = from_epoch_us(t_us)
        for f in self.festivals:
            if f.start <= when < f.end:
                return 168 + when.astimezone(self.tz).hour
        local = when.astimezone(self.tz)
        return local.weekday() * 24 + local.hour

    def attach(self, registry: SliceRegistry) -> None:
        """Copy loaded history into slices allocated since the last call."""
        self.ensure(len(registry))
        if not self.loaded:
            self.applied = len(registry)
            return
        for info in registry.infos[self.applied:]:
            rows = self.loaded.get(info.key)
            if rows is not None:
                self.active[info.index] = rows
        self.applied = len(registry)

    def learn(self, acc: np.ndarray, n: int, t_us: int, rstate: np.ndarray,
              ext_frozen: np.ndarray) -> None:
        """Add one closed bucket (only slices whose rate tests are all idle and that
        are not under maintenance: faults are not normal)."""
        if self.promoted_at is None:
            self.promoted_at = t_us
        self.ensure(n)
        kn.learn_bucket(acc, n, rstate, ext_frozen, _FIELDS, self.learning, self.nat_learning,
                        self.hour(t_us))
        if t_us - self.promoted_at >= WEEK_US:
            self.active[: self.cap] += self.learning[: self.cap]
            self.nat_active += self.nat_learning
            self.learning[:] = 0.0
            self.nat_learning[:] = 0.0
            self.promoted_at = t_us
            self.has_data = True

    def index(self, t_us: int, n: int) -> np.ndarray | None:
        """Seasonal index ``[slices, 4 rate signals]`` for the hour of ``t_us``."""
        if not self.has_data:
            return None
        h = self.hour(t_us)
        act = self.active[:n].astype(np.float64)
        tot = act.sum(axis=1)  # [n, fields]
        out = np.ones((n, kn.N_RATE), dtype=np.float64)
        att_all = tot[:, 0]
        att_h = act[:, h, 0]
        for j in range(1, len(FIELDS)):
            p_all = np.divide(tot[:, j], att_all, out=np.zeros(n), where=att_all > 0)
            ok = p_all > 0
            p_h = (act[:, h, j] + SHRINK_ATTEMPTS * p_all) / (att_h + SHRINK_ATTEMPTS)
            idx = np.divide(p_h, p_all, out=np.ones(n), where=ok)
            out[:, j - 1] = np.clip(idx, 0.2, 5.0)
        return out

    def traffic_index(self, t_us: int) -> float:
        if not self.has_data:
            return 1.0
        e, b = self.nat_active[:, 0], self.nat_active[:, 1]
        if b.sum() <= 0:
            return 1.0
        mean = e.sum() / b.sum()
        if mean <= 0:
            return 1.0
        h = self.hour(t_us)
        per = (e[h] + SHRINK_BUCKETS * mean) / (b[h] + SHRINK_BUCKETS)
        return float(np.clip(per / mean, 0.05, 20.0))

    # -- persistence ----------------------------------------------------------------

    def save(self, path: Path | str, registry: SliceRegistry) -> Path:
        """Write everything learnt (promoted or not) as Parquet, one row per slice and hour."""
        n = len(registry)
        self.ensure(n)
        both = self.active[:n] + self.learning[:n]
        keys: list[str] = []
        hours: list[int] = []
        cols: list[list[float]] = [[] for _ in FIELDS]
        nz = np.argwhere(both[:, :, 0] > 0)
        for s, h in nz:
            keys.append(registry.infos[int(s)].key)
            hours.append(int(h))
            for j in range(len(FIELDS)):
                cols[j].append(float(both[s, h, j]))
        nat = self.nat_active + self.nat_learning
        for h in np.flatnonzero(nat[:, 1] > 0):
            keys.append("__national_rate__")
            hours.append(int(h))
            cols[0].append(float(nat[h, 0]))
            cols[1].append(float(nat[h, 1]))
            cols[2].append(0.0)
            cols[3].append(0.0)
        frame = pl.DataFrame({
            "slice": keys, "hour": pl.Series(hours, dtype=pl.Int16),
            "attempts": cols[0], "technical": cols[1], "decline": cols[2], "risk": cols[3],
        })
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(p)
        return p

    def load(self, path: Path | str) -> None:
        p = Path(path)
        if not p.exists():
            raise ContractError(f"{p}: no such profile file")
        try:
            frame = pl.read_parquet(p)
        except Exception as exc:
            raise ContractError(f"{p}: not a tapshield profile (Parquet): {exc}") from None
        need = {"slice", "hour", "attempts", "technical", "decline", "risk"}
        if not need <= set(frame.columns):
            raise ContractError(f"{p}: a profile needs columns {', '.join(sorted(need))}")
        bad = frame.filter((pl.col("hour") < 0) | (pl.col("hour") >= HOURS))
        if bad.height:
            raise ContractError(f"{p}: row {bad.row(0, named=True)}: hour must be 0..{HOURS - 1}")
        for key, grp in frame.group_by("slice"):
            k = str(key[0])
            if k == "__national_rate__":
                for r in grp.iter_rows(named=True):
                    self.nat_active[r["hour"], 0] += r["attempts"]
                    self.nat_active[r["hour"], 1] += r["technical"]
                continue
            arr = np.zeros((HOURS, len(FIELDS)), dtype=np.float32)
            for r in grp.iter_rows(named=True):
                arr[r["hour"]] = (r["attempts"], r["technical"], r["decline"], r["risk"])
            self.loaded[k] = arr
        self.has_data = bool(self.loaded) or bool(self.nat_active[:, 1].sum() > 0)

