"""The Monitor: canonical event batches in, alert state changes out.

One code path for a replay and a live stream. Per batch it

1. turns the columns it needs into arrays (outcome class, latency bin,
   amount, payment hash, one slice index per slice set), vectorised;
2. cuts the batch at time-bucket boundaries (event time) and, for each
   piece, closes the buckets that ended before it (expectations, levels,
   resolution, the timeline), then runs every detector over the piece's
   events in one compiled pass;
3. hands each detector crossing to the alert lifecycle, which opens, groups
   or absorbs it.

Nothing depends on how the stream was cut into batches: detectors change
state only at events and at bucket boundaries, and bucket boundaries are
event time. Events that arrive *late* (their bucket already closed: the
pipeline passes on events beyond its allowed lateness rather than drop them)
are counted into the open bucket at the time already reached, and in
``late_events``.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import ContractError
from tapshield.events.codes import RISK_CODES, TECHNICAL_CODES
from tapshield.events.schema import OUTCOME_DTYPE, RISK_DECISIONS, RISK_DTYPE
from tapshield.monitor import _kernels as kn
from tapshield.monitor.alerts import AlertEvent
from tapshield.monitor.config import MonitorConfig
from tapshield.monitor.detectors import Crossing, DetectorBank
from tapshield.monitor.lifecycle import Alert, Lifecycle
from tapshield.monitor.recent import Chunk, RecentEvents
from tapshield.monitor.seasonal import SeasonalProfile
from tapshield.monitor.sketch import bin_of
from tapshield.monitor.slices import SliceRegistry
from tapshield.timeline import check_timeline
from tapshield.timeutil import TS_DTYPE, epoch_us

TAP_WINDOW_US = 120 * 1_000_000
"""A payment_id seen again within 2 minutes is a retry of the same tap, not a
new tap (customers retry within seconds; the simulator's and real apps' retry
chains end well inside two minutes)."""
TAP_PIECE = 16_384
"""Rows per call of the compiled tap counter (see :meth:`Monitor._first_taps`)."""
MAX_GAP_BUCKETS = 8640
"""A gap in the stream longer than a day of buckets is jumped over rather than
walked bucket by bucket (expectations do not decay across it)."""

_TRAFFIC = (kn.SIG_TRAFFIC, kn.SIG_NATIONAL_TRAFFIC)
"""Traffic-drop signals (a slice's share, the national rate)."""
_TECH_CODES = sorted(TECHNICAL_CODES)
_RISK_CODES = sorted(RISK_CODES)
_RISK_DECLINE = RISK_DECISIONS.index("decline")
_NEEDED = ("ts", "payment_id", "device_id", "outcome", "response_code", "latency_ms",
           "amount_fen", "risk_decision")


class Monitor:
    """Streaming metrics, detectors, warning levels and the alert lifecycle."""

    def __init__(self, config: MonitorConfig | None = None, *,
                 changes: pl.DataFrame | None = None) -> None:
        self.config = cfg = config or MonitorConfig()
        self.registry = SliceRegistry(cfg.slices, cfg.min_slice_events, cfg.max_slices,
                                      cfg.min_slice_events_by_dim)
        self.bank = DetectorBank(cfg, len(cfg.slices))
        self.recent = RecentEvents(int(cfg.retention.total_seconds() * 1e6),
                                   cfg.max_buffer_events)
        self.lifecycle = Lifecycle(cfg, self.registry, self.bank, self.recent, changes)
        self.profile = SeasonalProfile(cfg.tz, cfg.festivals)
        if cfg.profile is not None:
            self.profile.load(cfg.profile)
            self.bank.warm = True
        self.bucket_us = self.bank.bucket_us
        self.open_bucket: int | None = None
        self.max_ts: int | None = None
        self.seq = 0
        self._last_seq = -1
        self.events = 0
        self.late_events = 0
        self.skipped_buckets = 0
        self._bucket_late = 0
        self._bucket_taps = 0
        # the timeline, one row per closed bucket: (start, taps, late, open alerts),
        # the national counters, latency p50/p95/p99 and the expected technical rate
        self._tl_n = 0
        self._tl_i = np.zeros((0, 4), dtype=np.int64)
        self._tl_acc = np.zeros((0, kn.N_FIELDS), dtype=np.int64)
        self._tl_q = np.zeros((0, 3), dtype=np.float64)
        self._tl_exp = np.zeros(0, dtype=np.float64)
        self._dedup = pl.DataFrame(schema={"k": pl.UInt64, "t": pl.Int64})
        self._dedup_us = int(cfg.decline_dedup.total_seconds() * 1e6)
        self._tap_table = np.zeros(1 << 16, dtype=np.uint64)
        self._tap_seen = np.zeros(1 << 16, dtype=np.int64)
        self._tap_used = 0
        self._closed = False
        self._held: list[tuple[list[Crossing], int, int]] = []
        """Crossings waiting for their bucket to close (see :meth:`_decide`):
        ``(crossings, sequence number of the segment's first event, late events)``."""

    # -- the stream -----------------------------------------------------------------

    def process(self, batch: pl.DataFrame) -> list[AlertEvent]:
        """Feed canonical events in event-time order; returns the alert state changes."""
        if self._closed:
            raise RuntimeError("the monitor was closed: the stream has ended")
        if batch.height == 0:
            return []
        p = self._prepare(batch)
        ts, bucket = p["ts"], p["bucket"]
        out: list[AlertEvent] = []
        n = ts.shape[0]
        cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
        bounds = np.r_[0, cuts, n]
        # the whole batch goes into the recent-events buffer at once: every view the
        # lifecycle takes stops at the event being decided on (a sequence number)
        self.recent.add(Chunk(self.seq, ts, p["cls"], p["dup"], p["lat"], p["amt"], p["pay"],
                              p["dev"], p["member"]))
        taps = np.r_[0, np.cumsum(p["taps"])].tolist()
        lates = np.r_[0, np.cumsum(p["late"])].tolist()
        for lo_, hi_ in itertools.pairwise(bounds.tolist()):
            lo, hi = int(lo_), int(hi_)
            b = int(bucket[lo])
            if self.open_bucket is None:
                self.open_bucket = b
            out.extend(self._advance_to(b))
            seg = slice(lo, hi)
            crossings = self.bank.run(ts[seg], p["cls"][seg], p["dup"][seg], p["lat"][seg],
                                      p["lbin"][seg], p["amt"][seg], p["member"][:, seg])
            self._bucket_taps += taps[hi] - taps[lo]
            late = lates[hi] - lates[lo]
            self._bucket_late += late
            self.late_events += late
            self._last_seq = self.seq + hi - 1
            self.lifecycle.late_events = self.late_events
            out.extend(self._decide(crossings, self.seq + lo))
        self.seq += n
        self.events += n
        return out

    def advance(self, now: datetime) -> list[AlertEvent]:
        """Live mode: time has reached ``now`` with no more events (close due buckets).

        In a replay the next event does this; a live stream that falls silent
        needs the clock to find the silence.
        """
        if self._closed or self.open_bucket is None:
            return []
        t = epoch_us(now)
        if self.max_ts is not None and t <= self.max_ts:
            return []
        return self._advance_to(t // self.bucket_us)

    def close(self) -> list[AlertEvent]:
        """End of stream: close the open bucket; alerts still firing stay open.

        The last bucket is partial: no traffic drop is judged in it (at the end
        of a file a silence and the end of the data look the same; a live
        stream that falls silent is found by :meth:`advance`).
        """
        if self._closed:
            return []
        self._closed = True
        if self.open_bucket is None or self.max_ts is None:
            return []
        return self._close_bucket(max(self.max_ts, self.open_bucket * self.bucket_us),
                                  final=True)

    def _decide(self, crossings: list[Crossing], seq0: int) -> list[AlertEvent]:
        """Hand a segment's crossings to the lifecycle, holding traffic drops back.

        A traffic-drop crossing (a slice's share or the national rate) is
        decided only once its bucket has closed because time moved on (a later
        event, or :meth:`advance`): the stream's last events must not be
        judged a silence just because the data ends. Everything after it in
        the bucket is held too, so the lifecycle still sees the crossings in
        their order (held or not, it decides on the same state: views stop at
        each crossing's event, and expectations change only at bucket close).
        """
        if not crossings:
            return []
        if not self._held:
            ordered = self.lifecycle.order(crossings)
            first = next((i for i, c in enumerate(ordered) if c.signal in _TRAFFIC), None)
            if first is None:
                return self.lifecycle.on_crossings(ordered, seq0)
            now, crossings = ordered[:first], ordered[first:]
            self._held.append((crossings, seq0, self.late_events))
            return self.lifecycle.on_crossings(now, seq0)
        self._held.append((crossings, seq0, self.late_events))
        return []

    def _release(self, final: bool) -> list[AlertEvent]:
        """Decide the held crossings (at the end of the stream: without traffic drops)."""
        out: list[AlertEvent] = []
        held, self._held = self._held, []
        late = self.lifecycle.late_events
        for crossings, seq0, late_then in held:
            self.lifecycle.late_events = late_then
            kept = [c for c in crossings if c.signal not in _TRAFFIC] if final else crossings
            out.extend(self.lifecycle.on_crossings(kept, seq0))
        self.lifecycle.late_events = late
        return out

    # -- buckets ----------------------------------------------------------------------

    def _advance_to(self, b: int) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        assert self.open_bucket is not None
        walked = 0
        while self.open_bucket < b:
            if walked >= MAX_GAP_BUCKETS:
                self.skipped_buckets += b - self.open_bucket
                self.open_bucket = b
                break
            out.extend(self._close_bucket((self.open_bucket + 1) * self.bucket_us))
            self.open_bucket += 1
            walked += 1
        return out

    def _close_bucket(self, t_end: int, final: bool = False) -> list[AlertEvent]:
        assert self.open_bucket is not None
        out = self._release(final) if self._held else []
        bank = self.bank
        n = bank.n
        season = self.profile.index(t_end, n)
        crossings, recoveries = bank.close_bucket(t_end, season,
                                                  self.profile.traffic_index(t_end))
        if final:
            crossings = [c for c in crossings if c.signal not in _TRAFFIC]
        out.extend(self.lifecycle.on_bucket(t_end, recoveries, crossings, self._last_seq))
        # the profile learns from slices whose tests are idle after the lifecycle's say
        self.profile.learn(bank.acc, n, self.open_bucket * self.bucket_us, bank.rstate,
                           bank.ext_frozen)
        self._timeline_row()
        self._bucket_taps = 0
        self._bucket_late = 0
        return out

    def _timeline_row(self) -> None:
        """Record the closing bucket's national row; the counts themselves are copied by
        the compiled :meth:`DetectorBank.finish_bucket`, which also restarts them."""
        row = self._tl_n
        if row == self._tl_i.shape[0]:
            cap = max(1024, 2 * row)
            self._tl_i = _grown(self._tl_i, cap)
            self._tl_acc = _grown(self._tl_acc, cap)
            self._tl_q = _grown(self._tl_q, cap)
            self._tl_exp = _grown(self._tl_exp, cap)
        assert self.open_bucket is not None
        self._tl_i[row] = (self.open_bucket * self.bucket_us, self._bucket_taps,
                           self._bucket_late, len(self.lifecycle.alerts))
        self._tl_exp[row] = (float(self.bank.p_mean[0, kn.SIG_TECHNICAL]) if self.bank.warm
                             else np.nan)
        self.bank.finish_bucket(self._tl_acc, self._tl_q, row)
        self._tl_n = row + 1

    # -- preparing a batch --------------------------------------------------------------

    def _prepare(self, batch: pl.DataFrame) -> dict[str, np.ndarray]:
        missing = [c for c in (*_NEEDED, *self.registry.dims) if c not in batch.columns]
        if missing:
            raise ContractError(f"monitor input lacks column(s) {', '.join(missing)}: "
                                "feed canonical events (tapshield.events.read)")
        outcome = batch.get_column("outcome")
        if outcome.dtype != OUTCOME_DTYPE:
            outcome = outcome.cast(OUTCOME_DTYPE)
        decision = batch.get_column("risk_decision")
        if decision.dtype != RISK_DTYPE:
            decision = decision.cast(RISK_DTYPE)
        cols = batch.select(
            pl.col("ts").cast(TS_DTYPE).cast(pl.Int64).alias("ts"),
            pl.col("response_code").is_in(_TECH_CODES).fill_null(False).alias("tech"),
            pl.col("response_code").is_in(_RISK_CODES).fill_null(False).alias("risk"),
            pl.col("latency_ms").cast(pl.Float64).fill_null(float("nan")).alias("lat"),
            pl.col("amount_fen").cast(pl.Int64).fill_null(0).alias("amt"),
            pl.col("payment_id").hash(7).alias("pay"),
            pl.col("device_id").hash(11).alias("dev"),
        )
        risk = cols.get_column("risk").to_numpy() | (
            decision.to_physical().fill_null(0).to_numpy() == _RISK_DECLINE)
        cls_a = np.empty(batch.height, dtype=np.int8)
        kn.classify(outcome.to_physical().fill_null(0).to_numpy(),
                    cols.get_column("tech").to_numpy(), risk, cls_a)
        raw_ts = cols.get_column("ts").to_numpy()
        carry = raw_ts[0] if self.max_ts is None else self.max_ts
        ts = np.maximum.accumulate(np.maximum(raw_ts, carry)).astype(np.int64)
        self.max_ts = int(ts[-1])
        bucket = ts // self.bucket_us
        late = (raw_ts // self.bucket_us) < bucket
        if self.open_bucket is not None:
            late |= (raw_ts // self.bucket_us) < self.open_bucket
        lat = np.ascontiguousarray(cols.get_column("lat").to_numpy(), dtype=np.float64)
        pay = cols.get_column("pay").to_numpy()
        codes = self.registry.codes(batch)
        before = len(self.registry)
        member = self.registry.membership(batch, codes)
        if len(self.registry) != before:
            self._new_slices(before)
        return {
            "ts": ts, "bucket": bucket, "late": late, "cls": cls_a,
            "dup": self._dedup_declines(ts, cls_a, cols.get_column("dev").to_numpy()),
            "lat": lat, "lbin": bin_of(lat),
            "amt": np.ascontiguousarray(cols.get_column("amt").to_numpy(), dtype=np.int64),
            "pay": pay, "dev": cols.get_column("dev").to_numpy(),
            "taps": self._first_taps(ts, pay), "member": member,
        }

    def _new_slices(self, before: int) -> None:
        self.bank.ensure(len(self.registry))
        allowed = self.config.traffic_dims
        for info in self.registry.infos[before:]:
            self.bank.allow_traffic(info.index, bool(info.dims) and set(info.dims) <= allowed)
        self.profile.attach(self.registry)
        if not self.profile.loaded:
            return
        arm = self.config.arm_events
        for info in self.registry.infos[before:]:
            rows = self.profile.loaded.get(info.key)
            if rows is None:
                continue
            tot = rows.sum(axis=0).astype(np.float64)
            if tot[0] <= 0:
                continue
            weight = min(float(tot[0]), 5.0 * arm)
            self.bank.seed(info.index, [float(x) for x in tot[1:4]], float(tot[0]), weight)

    def _dedup_declines(self, ts: np.ndarray, cls: np.ndarray, dev: np.ndarray) -> np.ndarray:
        """Declines by a device within ``decline_dedup`` of its previous decline are repeats."""
        dup = np.zeros(ts.shape[0], dtype=np.bool_)
        rows = np.flatnonzero((cls == kn.DECLINE) | (cls == kn.RISK))
        if rows.size == 0 or self._dedup_us <= 0:
            return dup
        f = pl.DataFrame({"k": dev[rows], "t": ts[rows]})
        f = f.with_columns(pl.col("t").shift(1).over("k").alias("prev"))
        f = f.join(self._dedup.rename({"t": "last"}), on="k", how="left",
                   maintain_order="left")
        d = f.select(((pl.col("t") - pl.coalesce("prev", "last")) <= self._dedup_us)
                     .fill_null(False)).to_series().to_numpy()
        dup[rows] = d
        newest = int(ts[-1])
        self._dedup = (
            pl.concat([self._dedup, f.select("k", "t")])
            .group_by("k").agg(pl.col("t").max())
            .filter(pl.col("t") >= newest - self._dedup_us)
        )
        return dup

    def _first_taps(self, ts: np.ndarray, pay: np.ndarray) -> np.ndarray:
        """True for the first attempt of each tap (payment_id) seen recently.

        A batch goes through in pieces of ``TAP_PIECE`` rows, so the table only
        holds the taps of the window plus one piece (it stays in cache); taps
        older than the window are dropped whenever it fills. The result does
        not depend on when that happens (a dropped tap is older than the window).
        """
        n = ts.shape[0]
        out = np.empty(n, dtype=np.bool_)
        for lo in range(0, n, TAP_PIECE):
            hi = min(n, lo + TAP_PIECE)
            k = hi - lo
            if 2 * (self._tap_used + k) > self._tap_table.shape[0]:
                # make room first: drop taps older than the window, grow if still crowded
                cutoff = int(ts[lo]) - TAP_WINDOW_US
                size = self._tap_table.shape[0]
                while True:
                    table = np.zeros(size, dtype=np.uint64)
                    seen = np.zeros(size, dtype=np.int64)
                    kept = kn.compact_taps(self._tap_table, self._tap_seen, table, seen, cutoff)
                    if 4 * (kept + k) <= size:
                        break
                    size *= 2
                self._tap_table, self._tap_seen, self._tap_used = table, seen, kept
            self._tap_used += kn.first_taps(self._tap_table, self._tap_seen, pay[lo:hi],
                                            ts[lo:hi], TAP_WINDOW_US, out[lo:hi])
        return out

    # -- outputs --------------------------------------------------------------------------

    def timeline(self) -> pl.DataFrame:
        """Per-bucket national series for the report's plots."""
        k = self._tl_n
        ti, acc = self._tl_i[:k], self._tl_acc[:k]
        attempts = acc[:, kn.F_ATTEMPTS]
        declines = acc[:, kn.F_DECLINE] + acc[:, kn.F_RISK]
        has = attempts > 0

        def opt(x: np.ndarray) -> pl.Series:
            """NaN marks a missing figure (no attempts, no latency, not warm yet)."""
            return pl.Series(x, dtype=pl.Float64).fill_nan(None)

        def rate(x: np.ndarray) -> pl.Series:
            return opt(np.divide(x, attempts, out=np.full(k, np.nan), where=has))

        return check_timeline(pl.DataFrame({
            "bucket_start": pl.Series(ti[:, 0], dtype=pl.Int64).cast(TS_DTYPE),
            "attempts": pl.Series(attempts, dtype=pl.Int64),
            "taps": pl.Series(ti[:, 1], dtype=pl.Int64),
            "approved": pl.Series(acc[:, kn.F_APPROVED], dtype=pl.Int64),
            "technical_failures": pl.Series(acc[:, kn.F_TECHNICAL], dtype=pl.Int64),
            "declines": pl.Series(declines, dtype=pl.Int64),
            "risk_declines": pl.Series(acc[:, kn.F_RISK], dtype=pl.Int64),
            "success_rate": rate(acc[:, kn.F_APPROVED]),
            "technical_rate": rate(acc[:, kn.F_TECHNICAL]),
            "decline_rate": rate(declines),
            "risk_decline_rate": rate(acc[:, kn.F_RISK]),
            "latency_p50_ms": opt(self._tl_q[:k, 0]),
            "latency_p95_ms": opt(self._tl_q[:k, 1]),
            "latency_p99_ms": opt(self._tl_q[:k, 2]),
            "expected_technical_rate": opt(self._tl_exp[:k]),
            "technical_failed_fen": pl.Series(acc[:, kn.F_TECH_FEN], dtype=pl.Int64),
            "late_events": pl.Series(ti[:, 2], dtype=pl.Int64),
            "open_alerts": pl.Series(ti[:, 3], dtype=pl.Int64),
        }), "Monitor.timeline")

    def open_alerts(self) -> list[Alert]:
        return self.lifecycle.open_alerts()

    def save_profile(self, path: Path | str) -> Path:
        """Save the hour-of-week profile learnt so far (``profile:`` in the config reads it)."""
        return self.profile.save(path, self.registry)

    def stats(self) -> dict[str, Any]:
        b = self.bank
        return {
            "events": self.events,
            "late_events": self.late_events,
            "watched_slices": len(self.registry),
            "unwatched_slices": self.registry.unwatched,
            "skipped_buckets": self.skipped_buckets,
            "threshold_rate": b.h_rate,
            "threshold_traffic_share": b.h_traffic,
            "threshold_national_rate": b.h_nat,
            "threshold_recovery": b.h_rec,
            "open_alerts": len(self.lifecycle.alerts),
        }


def _grown(a: np.ndarray, cap: int) -> np.ndarray:
    """``a`` in a larger zeroed array (rows ``cap``), for append-only tables."""
    out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out
