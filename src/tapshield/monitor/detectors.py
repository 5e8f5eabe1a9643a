"""The detectors of every watched slice, as arrays, and their life at bucket boundaries.

For each slice ``s`` and rate signal (technical failures, business declines,
risk declines, slow payments) there is a bank of Bernoulli CUSUMs with design
ratios ``cfg.ratios``; for each slice a traffic-share CUSUM; for the whole
flow a Poisson-rate CUSUM. The compiled loops are in
:mod:`tapshield.monitor._kernels`; this class owns the arrays, grows them as
slices appear, sets thresholds from the false-alarm budget
(:mod:`tapshield.monitor.thresholds`), and moves each test between its three
states: *idle* (testing at the family-wise threshold), *firing* (the reverse
test watches for recovery) and *hold* (recovered; re-fires at a lower
threshold until the hold ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from tapshield.monitor import _kernels as kn
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.sketch import BINS, EDGES
from tapshield.monitor.thresholds import (
    SECONDS_PER_WEEK,
    cusum_threshold,
    hold_threshold,
    recovery_threshold,
)
from tapshield.signals import Signal

IDLE, FIRING, HOLD = 0, 1, 2
_QUANTILES = np.array([0.5, 0.95, 0.99])
"""Latency quantiles of the national timeline."""

SIGNAL_NAMES: tuple[Signal, ...] = (
    "technical", "decline", "risk_decline", "latency", "traffic_drop", "traffic_drop"
)
"""Signal index -> the AlertEvent signal name (4 = a slice's share, 5 = national rate)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """A test crossed its threshold at one event."""

    slice: int
    signal: int
    bank: int
    index: int
    """Row of the event in the segment it was found in."""
    ts: int
    cp: int
    """Change-point estimate (microseconds): where the winning CUSUM run started."""
    value: float


@dataclass(frozen=True, slots=True)
class BankSnapshot:
    """A read-only look at the detector arrays (rows ``0..n-1``), for metrics and reports."""

    n: int
    acc: np.ndarray
    """Counts of the open bucket ``[slice, field]``."""
    cum: np.ndarray
    """Counts of closed buckets since the start (``+ acc`` = all so far)."""
    hist: np.ndarray
    lat_total: np.ndarray
    p_mean: np.ndarray
    """Expected rate per ``[slice, signal]``."""
    rw: np.ndarray
    """CUSUM statistics ``[slice, signal, design]``."""
    rstate: np.ndarray
    ext_frozen: np.ndarray
    h_rate: float
    h_traffic: float
    h_nat: float
    h_rec: float
    warm: bool


@dataclass(frozen=True, slots=True)
class Recovery:
    slice: int
    signal: int
    ended: int
    """Estimated end of the wave in this test (microseconds)."""


_STACKS: tuple[tuple[str, tuple[str, ...], Any, int], ...] = (
    ("rate_f", kn.RATE_F, np.float64, 2), ("rate_i", kn.RATE_I, np.int64, 2),
    ("rate_b", kn.RATE_B, np.int8, 2), ("rate_w", kn.RATE_W, np.float64, 3),
    ("slice_f", kn.SLICE_F, np.float64, 1), ("slice_i", kn.SLICE_I, np.int64, 1),
    ("slice_b", kn.SLICE_B, np.int8, 1),
)
"""The stacked state the kernels take: ``(attribute, row names, dtype, 1 = [slices],
2 = [slices, signals], 3 = [slices, signals, designs])``; each row is also an
attribute of the bank (a view), so Python code reads ``bank.p_mean`` as before."""
_FILL = {"rthr": np.inf, "season": 1.0, "tthr": np.inf, "lat_thr": np.inf}
"""Rows that do not start at 0."""


class DetectorBank:
    # the stacks the kernels take (rows: the named views below; see _STACKS)
    rate_f: np.ndarray
    rate_i: np.ndarray
    rate_b: np.ndarray
    rate_w: np.ndarray
    slice_f: np.ndarray
    slice_i: np.ndarray
    slice_b: np.ndarray
    # rate tests [slices, signals, designs] / [slices, signals]
    rw: np.ndarray
    rcp: np.ndarray
    ra0: np.ndarray
    ra1: np.ndarray
    rthr: np.ndarray
    rlast: np.ndarray
    rrec: np.ndarray
    rv: np.ndarray
    rb0: np.ndarray
    rb1: np.ndarray
    rvreset: np.ndarray
    rdone: np.ndarray
    rstate: np.ndarray
    xe: np.ndarray
    ne: np.ndarray
    season: np.ndarray
    fx: np.ndarray
    fn: np.ndarray
    p_mean: np.ndarray
    p_hi: np.ndarray
    p_llr: np.ndarray
    # traffic-share tests [slices]
    cnt: np.ndarray
    tw: np.ndarray
    ta0: np.ndarray
    ta1: np.ndarray
    tthr: np.ndarray
    tlast: np.ndarray
    tcp: np.ndarray
    trec: np.ndarray
    tv: np.ndarray
    tb0: np.ndarray
    tb1: np.ndarray
    tvreset: np.ndarray
    tdone: np.ndarray
    tstate: np.ndarray
    te_x: np.ndarray
    te_n: np.ndarray
    tfx: np.ndarray
    tfn: np.ndarray
    share: np.ndarray
    ext_frozen: np.ndarray
    tallow: np.ndarray
    """Whether the slice has a traffic-share test (see ``MonitorConfig.traffic_dims``)."""
    # latency and counters
    lat_thr: np.ndarray
    hist: np.ndarray
    hist_prev: np.ndarray
    lat_total: np.ndarray
    """Latency counts of closed windows since the start (``+ hist`` = all so far)."""
    acc: np.ndarray
    cum: np.ndarray

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling (the service's monitor checkpoint, :mod:`tapshield.monitor.checkpoint`):
        pickle copies every array on its own, so the named rows are made views of the
        stacks again (else the kernels would write the stacks and Python read stale rows)."""
        self.__dict__.update(state)
        for stack, names, _dt, _dims in _STACKS:
            arr = getattr(self, stack)
            for i, name in enumerate(names):
                setattr(self, name, arr[i])

    def __init__(self, cfg: MonitorConfig, n_sets: int) -> None:
        self.cfg = cfg
        self.n_sets = n_sets
        self.ratios = np.asarray(cfg.ratios, dtype=np.float64)
        self.k = int(self.ratios.shape[0])
        self.tick_us = int(cfg.tick.total_seconds() * 1_000_000)
        self.bucket_us = int(cfg.bucket.total_seconds() * 1_000_000)
        self.cap = 0
        self.n = 1
        self._alloc(256)
        self.nf = np.zeros(kn.N_NF, dtype=np.float64)
        self.ni = np.zeros(kn.N_NI, dtype=np.int64)
        self.nf[kn.NF_LOG_RHO] = math.log(cfg.traffic_ratio)
        self.nf[kn.NF_THR] = np.inf
        self.nstate = IDLE
        self.n_fault_events = 0.0
        self.n_fault_us = 0.0
        self.bhist = np.zeros(BINS, dtype=np.int64)
        self.hist_prev = np.zeros((self.cap, BINS), dtype=np.int32)
        self.lam_e = 0.0
        self.lam_w = 0.0
        self.base_e = 0.0
        self.base_w = 0.0
        self.base_decay = 0.5 ** (cfg.bucket / cfg.rate_half_life)
        self.lam_index = 1.0
        self.h_rec = recovery_threshold(cfg.recovery_error)
        """Floor of the recovery thresholds (one observation's worth of wave)."""
        self.h_rec_t = self.h_rec
        self.h_rec_n = recovery_threshold(
            cfg.recovery_error / (cfg.recovery_horizon / cfg.tick))
        self.h_rate = math.inf
        self.h_traffic = math.inf
        self.h_nat = math.inf
        self.z = NormalDist().inv_cdf(cfg.confidence)
        self.events = 0
        self.first_us: int | None = None
        self.warm = False
        self.decay = 0.5 ** (cfg.bucket / cfg.rate_half_life)
        self.t_decay = 0.5 ** (cfg.bucket / cfg.share_half_life)
        self.n_decay = 0.5 ** (cfg.bucket / cfg.national_half_life)
        self._xrec = np.zeros((64, kn.N_X), dtype=np.int64)
        self._xval = np.zeros(64, dtype=np.float64)
        self.last_lat_roll: int | None = None
        self.lam_per_s = 0.0
        self._rec_out = np.zeros((64, 3), dtype=np.int64)
        self.hpar = np.array([self.decay, self.bucket_us / 1e6,
                              cfg.recovery_horizon.total_seconds(), cfg.recovery_error])
        """Parameters of a slice's recovery threshold (:func:`_kernels.recovery_h`)."""
        self._tallow_n = -1
        """Slices with a traffic-share test (``-1``: count again)."""
        self._tidx = np.zeros(0, dtype=np.int64)

    # -- arrays -------------------------------------------------------------------

    def _alloc(self, cap: int) -> None:
        old = self.cap
        s_n = kn.N_RATE
        tails = {1: (), 2: (s_n,), 3: (s_n, self.k)}
        for stack, names, dt, dims in _STACKS:
            arr: np.ndarray = np.zeros((len(names), cap, *tails[dims]), dtype=dt)
            for i, name in enumerate(names):
                if name in _FILL:
                    arr[i] = _FILL[name]
            if old:
                arr[:, :old] = getattr(self, stack)
            setattr(self, stack, arr)
            for i, name in enumerate(names):
                setattr(self, name, arr[i])

        def grow(name: str, shape: tuple[int, ...], dtype: Any, fill: Any) -> None:
            arr: np.ndarray = np.full(shape, fill, dtype=dtype)
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)

        grow("rcp", (cap, s_n, self.k), np.int64, 0)
        grow("ext_frozen", (cap,), np.bool_, False)
        grow("tallow", (cap,), np.bool_, False)
        grow("acc", (cap, kn.N_FIELDS), np.int64, 0)
        grow("cum", (cap, kn.N_FIELDS), np.int64, 0)
        grow("hist", (cap, BINS), np.int32, 0)
        grow("lat_total", (cap, BINS), np.int64, 0)
        if old:
            grow("hist_prev", (cap, BINS), np.int32, 0)
        self.cap = cap

    def ensure(self, n: int) -> None:
        """Make room for ``n`` slices; new slices start idle and unarmed."""
        if n > self.cap:
            cap = self.cap
            while cap < n:
                cap *= 2
            self._alloc(cap)
        if n > self.n:
            new = slice(self.n, n)
            self.tlast[new] = self.ni[kn.NI_N]
            self.rthr[new] = self.h_rate
            self.tthr[new] = self.h_traffic
            self.n = n
            self._tallow_n = -1

    def _traffic_slices(self) -> np.ndarray:
        """Slices with a traffic-share test, in index order (rebuilt when they change)."""
        if self._tallow_n < 0:
            self._tidx = np.flatnonzero(self.tallow[1:self.n]).astype(np.int64) + 1
            self._tallow_n = int(self.tallow[: self.n].sum())
        return self._tidx

    def allow_traffic(self, s: int, allowed: bool) -> None:
        """Give slice ``s`` a traffic-share test or not (see ``MonitorConfig.traffic_dims``)."""
        self.tallow[s] = allowed
        self._tallow_n = -1

    # -- events ---------------------------------------------------------------------

    def run(self, ts: np.ndarray, cls: np.ndarray, dup: np.ndarray, lat: np.ndarray,
            lbin: np.ndarray, amt: np.ndarray, member: np.ndarray) -> list[Crossing]:
        if ts.shape[0] == 0:
            return []
        if self.first_us is None:
            self.first_us = int(ts[0])
        need = self.n * 5 + 8
        if self._xrec.shape[0] < need:
            self._xrec = np.zeros((2 * need, kn.N_X), dtype=np.int64)
            self._xval = np.zeros(2 * need, dtype=np.float64)
        nx = kn.run_events(
            ts, cls, dup, lat, lbin, amt, member, self.tick_us,
            self.rate_f, self.rate_i, self.rate_b, self.rate_w, self.rcp,
            self.slice_f, self.slice_i, self.slice_b, self.tallow, self._traffic_slices(),
            self.nf, self.ni, self.hist, self.bhist, self.acc,
            self.hpar, self.h_rec_t, self.h_rec_n, self._xrec, self._xval, self.n,
        )
        self.events += int(ts.shape[0])
        return [
            Crossing(int(r[kn.X_SLICE]), int(r[kn.X_SIGNAL]), int(r[kn.X_BANK]),
                     int(r[kn.X_INDEX]), int(r[kn.X_TS]), int(r[kn.X_CP]), float(v))
            for r, v in zip(self._xrec[:nx], self._xval[:nx], strict=True)
        ]

    # -- bucket boundaries ------------------------------------------------------------

    def close_bucket(self, t_end: int, season: np.ndarray | None = None,
                     lam_index: float = 1.0) -> tuple[list[Crossing], list[Recovery]]:
        """Everything that happens at a bucket boundary, in a fixed order.

        1. a national silence up to ``t_end`` is checked; 2. thresholds follow
        the false-alarm budget; 3. pending lazy steps are applied (``flush``),
        expectations learn the bucket and test increments are recomputed, and
        finished recovery tests are listed (one compiled call); 4. the national
        rate test and the recovery thresholds follow. (1-2 and the flush touch
        disjoint state, so their order does not matter.) Returns the
        national-silence crossing (if any) and the recoveries. The bucket's
        counts stay in ``acc`` until :meth:`finish_bucket`.
        """
        n = self.n
        cfg = self.cfg
        crossings: list[Crossing] = []
        disc = kn.national_silence(self.nf, self.ni, t_end, self.tick_us)
        if disc >= 0:
            crossings.append(Crossing(0, kn.SIG_NATIONAL_TRAFFIC, 0, -1, int(disc),
                                      int(self.ni[kn.NI_CP]), float(self.nf[kn.NF_THR])))
            self.nf[kn.NF_THR] = np.inf
            self.ni[kn.NI_REC] = 1
            self.ni[kn.NI_REC_DONE] = 0
            self.nf[kn.NF_V] = 0.0
            self.ni[kn.NI_VRESET] = int(disc)
            self.nf[kn.NF_V_RATE] = self.nf[kn.NF_RATE]
            self.nf[kn.NF_V_JUMP] = -self.nf[kn.NF_LOG_RHO]
        # thresholds from the false-alarm budget
        elapsed = 0.0 if self.first_us is None else (t_end - self.first_us) / 1e6
        self.warm = self.warm or elapsed >= cfg.warmup.total_seconds()
        if self.warm and self.events > 0:
            per_week = self.events / max(elapsed, 1.0) * SECONDS_PER_WEEK
            budget = cfg.false_alerts_per_week / 3.0
            self.h_rate = cusum_threshold(self.n_sets * kn.N_RATE * self.k, per_week, budget)
            self._traffic_slices()
            self.h_traffic = cusum_threshold(max(self._tallow_n, 1), per_week, budget)
            # the national test observes inter-arrival times: one observation per event
            self.h_nat = cusum_threshold(1, per_week, budget)
        if season is not None:
            self.season[:n] = season[:n]
        if self._rec_out.shape[0] < n * (kn.N_RATE + 1):
            self._rec_out = np.zeros((2 * n * (kn.N_RATE + 1), 3), dtype=np.int64)
        n_rec = kn.close_rates(
            self.rate_f, self.rate_i, self.rate_b, self.rate_w,
            self.slice_f, self.slice_i, self.slice_b, self.tallow, self.ext_frozen,
            self.acc, self.hpar, self.ratios, int(self.ni[kn.NI_N]), t_end, n,
            self.decay, self.t_decay, cfg.freeze_fraction, cfg.prior_strength, self.z,
            cfg.arm_events, cfg.traffic_ratio, self.h_rate, self.h_traffic, self.warm,
            self._rec_out,
        )
        self._national(lam_index)
        self._recovery_thresholds()
        recoveries = [Recovery(int(r[0]), int(r[1]), int(r[2]))
                      for r in self._rec_out[:n_rec].tolist()] if n_rec else []
        if self.ni[kn.NI_REC_DONE] == 1:
            recoveries.append(Recovery(0, kn.SIG_NATIONAL_TRAFFIC, int(self.ni[kn.NI_VRESET])))
        self._latency_roll(t_end)
        return crossings, recoveries

    def finish_bucket(self, tl_acc: np.ndarray, tl_q: np.ndarray, row: int) -> None:
        """After the lifecycle: the bucket's timeline row (``tl_acc[row]``, ``tl_q[row]``),
        then its counts go to the running totals and the accumulators restart."""
        kn.finish_bucket(self.acc, self.cum, self.n, self.bhist, EDGES, _QUANTILES, tl_acc,
                         tl_q, row)

    def _national(self, lam_index: float) -> None:
        """The national rate test: expectation, increments and threshold."""
        count = float(self.acc[0, kn.F_ATTEMPTS])
        bucket_s = self.bucket_us / 1e6
        if self.nstate == FIRING:
            self.n_fault_events += count
            self.n_fault_us += self.bucket_us
        elif self.nf[kn.NF_W] <= self.cfg.freeze_fraction * self.h_nat:
            self.lam_e = self.lam_e * self.n_decay + count / max(lam_index, 1e-9)
            self.lam_w = self.lam_w * self.n_decay + 1.0
        if self.nstate == IDLE:
            # the normal level, robust to surges: a bucket counts at most the 99.9th
            # percentile of what the level gives, so a sale at 4x moves it a few
            # percent an hour while ordinary growth (well inside the percentile)
            # is followed at the rate tests' half-life
            x = count / max(lam_index, 1e-9)
            if self.warm and self.base_w > 0:  # (a plain mean while warming up)
                x = min(x, float(kn.poisson_quantile(0.999, self.base_e / self.base_w)))
            self.base_e = self.base_e * self.base_decay + x
            self.base_w = self.base_w * self.base_decay + 1.0
        self.lam_index = lam_index
        lam_bucket = (self.lam_e / self.lam_w) * lam_index if self.lam_w > 0 else 0.0
        lam_us = lam_bucket / self.bucket_us
        rho = self.cfg.traffic_ratio
        armed = self.warm and lam_bucket * (1.0 - rho) * 60.0 / bucket_s >= 1.0
        self.nf[kn.NF_ARMED] = 1.0 if armed else 0.0
        if not armed:
            self.nf[kn.NF_W] = 0.0
        self.nf[kn.NF_RATE] = lam_us * (1.0 - rho)
        if self.nstate == IDLE:
            self.nf[kn.NF_THR] = self.h_nat
        elif self.nstate == FIRING and lam_us > 0:
            lam_f = self.n_fault_events / self.n_fault_us if self.n_fault_us > 0 else rho * lam_us
            lam_f = min(max(lam_f, 1e-12), 0.5 * lam_us)
            self.nf[kn.NF_V_RATE] = lam_us - lam_f
            self.nf[kn.NF_V_JUMP] = math.log(lam_us / lam_f)
        self.lam_per_s = lam_bucket / bucket_s

    def _recovery_thresholds(self) -> None:
        """The reverse (recovery) test restarts like any CUSUM, so its error is not
        Wald's single-test ``e^-h`` but about one false recovery per ``e^h``
        observations: over a wave lasting ``recovery_horizon`` its threshold is
        ``ln(observations in the horizon / recovery_error)``, per slice from its
        traffic (computed where needed: :func:`_kernels.recovery_h`; the traffic
        tests observe national events: their threshold is set here)."""
        horizon_s = self.cfg.recovery_horizon.total_seconds()
        nat = max(self.lam_per_s * horizon_s, 1.0)
        self.h_rec_t = math.log(nat / self.cfg.recovery_error)

    def _latency_roll(self, t_end: int) -> None:
        window = int(self.cfg.latency_window.total_seconds() * 1e6)
        if self.last_lat_roll is None:
            self.last_lat_roll = t_end
        first = bool(np.isinf(self.lat_thr[0]))
        if t_end - self.last_lat_roll < window and not (first and self.warm):
            return
        n = self.n
        frozen = (self.rstate[:n, kn.SIG_LATENCY] != IDLE) | self.ext_frozen[:n]
        unknown = np.isinf(self.lat_thr[:n])
        kn.latency_thresholds(self.hist, self.hist_prev, n, self.cfg.latency_quantile,
                              self.cfg.slow_factor, EDGES, 100, frozen, self.lat_thr)
        # a slice's first threshold: its slow-payment expectation starts from here
        fresh = unknown & ~np.isinf(self.lat_thr[:n])
        self.xe[:n][fresh, kn.SIG_LATENCY] = 0.0
        self.ne[:n][fresh, kn.SIG_LATENCY] = 0.0
        self.hist_prev[:n] = self.hist[:n]
        self.lat_total[:n] += self.hist[:n]
        self.hist[:n] = 0
        self.last_lat_roll = t_end

    def normal_rate_per_s(self) -> float:
        """National events per second a normal (not surging) stream gives now: the
        surge-robust level times the seasonal index (0 before any bucket closed)."""
        if self.base_w <= 0:
            return 0.0
        return (self.base_e / self.base_w) * self.lam_index / (self.bucket_us / 1e6)

    # -- the only ways other modules change or read the arrays ---------------------------

    def freeze(self, frozen: Sequence[bool]) -> None:
        """Mark slices ``0..len(frozen)-1`` as frozen by an outside reason (a maintenance
        window in force): their expectations and latency thresholds stop learning."""
        k = len(frozen)
        if k > self.n:
            raise ValueError(f"freeze: {k} slices given, {self.n} watched")
        self.ext_frozen[:k] = np.asarray(frozen, dtype=np.bool_)

    def seed(self, s: int, failures: Sequence[float], attempts: float, weight: float) -> None:
        """Start slice ``s``'s rate expectations (technical, decline, risk) at
        ``failures[j] / attempts`` with the weight of ``weight`` events (a loaded
        hour-of-week profile)."""
        if not 0 <= s < self.n:
            raise ValueError(f"seed: slice {s} is not watched (0..{self.n - 1})")
        if attempts <= 0:
            raise ValueError("seed: attempts must be positive")
        for j, x in enumerate(failures[: kn.SIG_LATENCY]):
            self.xe[s, j] = weight * x / attempts
            self.ne[s, j] = weight

    def snapshot(self) -> BankSnapshot:
        """Read-only views of what metrics read (no copy; valid until the next batch)."""
        n = self.n

        def ro(a: np.ndarray) -> np.ndarray:
            v = a[:n]
            v.setflags(write=False)
            return v

        return BankSnapshot(
            n=n, acc=ro(self.acc), cum=ro(self.cum), hist=ro(self.hist),
            lat_total=ro(self.lat_total), p_mean=ro(self.p_mean), rw=ro(self.rw),
            rstate=ro(self.rstate), ext_frozen=ro(self.ext_frozen),
            h_rate=self.h_rate, h_traffic=self.h_traffic, h_nat=self.h_nat,
            h_rec=self.h_rec, warm=self.warm,
        )

    # -- state changes asked by the lifecycle -------------------------------------------

    def fire(self, s: int, sig: int) -> None:
        if sig == kn.SIG_NATIONAL_TRAFFIC:
            self.nstate = FIRING
            self.n_fault_events = 0.0
            self.n_fault_us = 0.0
        elif sig == kn.SIG_TRAFFIC:
            self.tstate[s] = FIRING
            self.tfx[s] = 0.0
            self.tfn[s] = 0.0
        else:
            self.rstate[s, sig] = FIRING
            self.fx[s, sig] = 0.0
            self.fn[s, sig] = 0.0

    def hold(self, s: int, sig: int) -> None:
        """Recovered: stop the reverse test, restart the forward one at the hold threshold."""
        hold_s = self.cfg.resolve_hold.total_seconds()
        rate = getattr(self, "lam_per_s", 0.0)
        if sig == kn.SIG_NATIONAL_TRAFFIC:
            self.nstate = HOLD
            self.ni[kn.NI_REC] = 0
            self.ni[kn.NI_REC_DONE] = 0
            self.nf[kn.NF_W] = 0.0
            self.nf[kn.NF_THR] = hold_threshold(1, rate * hold_s, self.cfg.hold_false_alarms)
        elif sig == kn.SIG_TRAFFIC:
            self.tstate[s] = HOLD
            self.trec[s] = 0
            self.tdone[s] = 0
            self.tw[s] = 0.0
            self.tthr[s] = hold_threshold(1, rate * hold_s, self.cfg.hold_false_alarms)
        else:
            self.rstate[s, sig] = HOLD
            self.rrec[s, sig] = 0
            self.rdone[s, sig] = 0
            self.rw[s, sig, :] = 0.0
            expected = rate * max(float(self.share[s]), 1e-3) * hold_s if s else rate * hold_s
            self.rthr[s, sig] = hold_threshold(self.k, expected, self.cfg.hold_false_alarms)

    def idle(self, s: int, sig: int) -> None:
        if sig == kn.SIG_NATIONAL_TRAFFIC:
            self.nstate = IDLE
            self.nf[kn.NF_THR] = self.h_nat
        elif sig == kn.SIG_TRAFFIC:
            self.tstate[s] = IDLE
            self.tthr[s] = self.h_traffic
        else:
            self.rstate[s, sig] = IDLE
            self.rthr[s, sig] = self.h_rate

    def state(self, s: int, sig: int) -> int:
        if sig == kn.SIG_NATIONAL_TRAFFIC:
            return self.nstate
        if sig == kn.SIG_TRAFFIC:
            return int(self.tstate[s])
        return int(self.rstate[s, sig])

    def threshold(self, sig: int) -> float:
        if sig == kn.SIG_NATIONAL_TRAFFIC:
            return self.h_nat
        if sig == kn.SIG_TRAFFIC:
            return self.h_traffic
        return self.h_rate

    def bank(self, s: int, sig: int) -> tuple[np.ndarray, np.ndarray]:
        """The per-event increments ``(a0, a1)`` of a rate test's designs, as they are now.

        For a firing test (whose own increments stop being refreshed) they are
        recomputed from its current expectation.
        """
        hi = float(self.p_hi[s, sig])
        if hi <= 0.0:
            return np.zeros(self.k), np.zeros(self.k)
        p1 = np.minimum(self.ratios * hi, 0.5 * (1.0 + hi))
        return np.log((1.0 - p1) / (1.0 - hi)), np.log(p1 / hi)
