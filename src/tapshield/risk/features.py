"""The feature state machine: one implementation for history and for live taps.

Every feature of a request is computed from the requests before it and the
labels reported before it, nothing else. The state is a log of past requests
(time, amount, entity slots) with, per entity and window, running counts and
sums, an index of the oldest request still inside the window (its *tail*), and
counts of the labels known so far. A request first moves each of its
entities' tails forward to its own time (expiring what fell out of the window:
exact event-time windows, not buckets), then reads the features, then joins
the log. A label moves the same tails to its ``reported_at`` and adds itself to
every window its request is still in.

Why one kernel: :func:`_run` (Numba) takes a sequence of operations (request
or label, in event-time order). Replaying a year of history is one call over
millions of operations; a live decision is the same call with one. So the
batch and the online values are the same floats by construction, and a test
proves it on generated data.

Entities (a *slot* each, all kinds in one slot space): ``user``, ``device``,
``merchant``, ``user_device`` and ``user_merchant`` (pairs: "is this a new
device for this customer?"). Distinct counts (devices per user, users per
device, merchants per user) are kept exactly with per-pair counters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import polars as pl

KINDS: tuple[str, ...] = ("user", "device", "merchant", "user_device", "user_merchant")
"""Entity kinds, in slot-column order."""
K_USER, K_DEVICE, K_MERCHANT, K_UD, K_UM = range(5)
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "device": ("device_id",),
    "merchant": ("merchant_id",),
    "user_device": ("user_id", "device_id"),
    "user_merchant": ("user_id", "merchant_id"),
}
WINDOWS: tuple[tuple[str, int], ...] = (
    ("10m", 600),
    ("1h", 3_600),
    ("1d", 86_400),
    ("7d", 7 * 86_400),
    ("30d", 30 * 86_400),
)
"""Window name and length in seconds. Counts use all five; amounts 1h..30d."""
W_1D, W_7D, W_30D = 2, 3, 4
PRIOR_WEIGHT = 20.0
"""Pseudo-labels behind a smoothed fraud rate: an entity with 2 labels, both
fraud, is not a 100 % fraud entity; it is pulled towards the fraud rate of all
labels known so far (empirical Bayes with a Beta prior of this weight)."""

# accumulator columns of ``acc`` (int64 [slot, window, 8])
A_CNT, A_SUM, A_KF, A_KL, A_PC0, A_PC1, A_DC0, A_DC1 = range(8)
PER_KIND = 12
BASE = 4
DISTINCT_AT = BASE + PER_KIND * len(KINDS)
LABELS_AT = DISTINCT_AT + 6
PER_KIND_LABELS = 9
# per-slot label memory (float64 [slot, 5]): episode start, last fraud tx time,
# genuine labels since it, genuine amount sum (yuan), genuine count
L_EP, L_LAST, L_GSF, L_GSUM, L_GCNT = range(5)
EPISODE_GAP_US = 30 * 86_400_000_000


def _feature_names() -> tuple[str, ...]:
    names = ["amount", "log_amount", "hour", "dow"]
    for k in KINDS:
        names.append(f"{k}_gap_s")
        names += [f"{k}_cnt_{w}" for w, _ in WINDOWS]
        names += [f"{k}_amt_{w}" for w, _ in WINDOWS[1:]]
        names += [f"{k}_amt_ratio_30d", f"{k}_amt_z_30d"]
    names += ["user_devices_1d", "user_devices_30d", "user_merchants_1d",
              "user_merchants_30d", "device_users_1d", "device_users_30d"]
    for k in KINDS:
        names += [f"{k}_fraud_7d", f"{k}_fraud_30d", f"{k}_labelled_30d", f"{k}_fraud_all",
                  f"{k}_fraud_rate", f"{k}_fraud_episode_age_s", f"{k}_last_fraud_age_s",
                  f"{k}_genuine_since_fraud", f"{k}_amt_ratio_genuine"]
    return tuple(names)


FEATURES: tuple[str, ...] = _feature_names()
"""Names of the engineered features, in the kernel's column order (docs/risk.md)."""
N_FEATURES = len(FEATURES)

OP_REQUEST = 0
OP_LABEL = 1


# --------------------------------------------------------------------------------------
# the kernel


@nb.njit(cache=True, nogil=True)
def _expire(s: int, k: int, t: int, ev_ts: np.ndarray, ev_amt: np.ndarray, ev_la: np.ndarray,
            ev_slot: np.ndarray, ev_next: np.ndarray, ev_known: np.ndarray,
            ev_fraud: np.ndarray, tail: np.ndarray, acc: np.ndarray, facc: np.ndarray,
            wlen: np.ndarray) -> None:
    """Move slot ``s``'s tails forward to time ``t``: drop what left each window."""
    for w in range(wlen.size):
        j = tail[s, w]
        limit = t - wlen[w]
        while j >= 0 and ev_ts[j] <= limit:
            acc[s, w, A_CNT] -= 1
            acc[s, w, A_SUM] -= ev_amt[j]
            facc[s, w, 0] -= ev_la[j]
            facc[s, w, 1] -= ev_la[j] * ev_la[j]
            if ev_known[j]:
                acc[s, w, A_KL] -= 1
                acc[s, w, A_KF] -= ev_fraud[j]
            if k == K_USER:
                p = ev_slot[j, K_UD]
                if p >= 0:
                    acc[p, w, A_PC0] -= 1
                    if acc[p, w, A_PC0] == 0:
                        acc[s, w, A_DC0] -= 1
                q = ev_slot[j, K_UM]
                if q >= 0:
                    acc[q, w, A_PC0] -= 1
                    if acc[q, w, A_PC0] == 0:
                        acc[s, w, A_DC1] -= 1
            elif k == K_DEVICE:
                p = ev_slot[j, K_UD]
                if p >= 0:
                    acc[p, w, A_PC1] -= 1
                    if acc[p, w, A_PC1] == 0:
                        acc[s, w, A_DC0] -= 1
            j = ev_next[j, k]
        tail[s, w] = j


@nb.njit(cache=True, nogil=True)
def _run(op_kind: np.ndarray, op_ev: np.ndarray, op_t: np.ndarray, op_y: np.ndarray,
         op_row: np.ndarray, out: np.ndarray,
         ev_ts: np.ndarray, ev_amt: np.ndarray, ev_la: np.ndarray, ev_slot: np.ndarray,
         ev_next: np.ndarray, ev_known: np.ndarray, ev_fraud: np.ndarray,
         last: np.ndarray, last_ts: np.ndarray, tail: np.ndarray, acc: np.ndarray,
         facc: np.ndarray, alltime: np.ndarray, lmem: np.ndarray, glob: np.ndarray,
         wlen: np.ndarray, tz_offset_us: int) -> None:
    """Apply operations in order; write each request's features to ``out[op_row]``.

    ``op_kind`` 0 = request (event ``op_ev``, already filled in ``ev_*`` except
    its links), 1 = label (``op_y`` for event ``op_ev`` at time ``op_t``).
    """
    nan = np.float32(np.nan)
    nw = wlen.size
    for o in range(op_kind.size):
        i = op_ev[o]
        t = op_t[o]
        if op_kind[o] == OP_LABEL:
            y = op_y[o]
            old = ev_fraud[i] if ev_known[i] else -1
            for k in range(5):
                s = ev_slot[i, k]
                if s < 0:
                    continue
                _expire(s, k, t, ev_ts, ev_amt, ev_la, ev_slot, ev_next, ev_known, ev_fraud,
                        tail, acc, facc, wlen)
                for w in range(nw):
                    if ev_ts[i] > t - wlen[w] and tail[s, w] >= 0 and tail[s, w] <= i:
                        if old < 0:
                            acc[s, w, A_KL] += 1
                            acc[s, w, A_KF] += y
                        else:
                            acc[s, w, A_KF] += y - old
                if old < 0:
                    alltime[s, 1] += 1
                    alltime[s, 0] += y
                    txt = ev_ts[i]
                    if y == 1:
                        if np.isnan(lmem[s, L_LAST]) or txt - lmem[s, L_LAST] > EPISODE_GAP_US:
                            lmem[s, L_EP] = txt
                        if np.isnan(lmem[s, L_LAST]) or txt > lmem[s, L_LAST]:
                            lmem[s, L_LAST] = txt
                            lmem[s, L_GSF] = 0.0
                    else:
                        lmem[s, L_GSUM] += ev_amt[i] / 100.0
                        lmem[s, L_GCNT] += 1.0
                        if not np.isnan(lmem[s, L_LAST]) and txt > lmem[s, L_LAST]:
                            lmem[s, L_GSF] += 1.0
                else:
                    alltime[s, 0] += y - old
            if old < 0:
                glob[1] += 1
                glob[0] += y
            else:
                glob[0] += y - old
            ev_known[i] = 1
            ev_fraud[i] = y
            continue
        # a request: expire, read, then join the log
        r = op_row[o]
        row = out[r]
        amt = ev_amt[i]
        la = ev_la[i]
        row[0] = np.float32(amt / 100.0)
        row[1] = np.float32(la)
        local = t + tz_offset_us
        day = local // 86_400_000_000
        row[2] = np.float32((local - day * 86_400_000_000) / 3_600_000_000.0)
        row[3] = np.float32((day + 3) % 7)
        prior = (glob[0] + 0.5) / (glob[1] + 1.0)
        for k in range(5):
            s = ev_slot[i, k]
            base = BASE + PER_KIND * k
            lab = LABELS_AT + PER_KIND_LABELS * k
            if s < 0:
                for c in range(PER_KIND):
                    row[base + c] = nan
                for c in range(PER_KIND_LABELS):
                    row[lab + c] = nan
                continue
            _expire(s, k, t, ev_ts, ev_amt, ev_la, ev_slot, ev_next, ev_known, ev_fraud,
                    tail, acc, facc, wlen)
            row[base] = nan if last[s] < 0 else np.float32((t - last_ts[s]) / 1e6)
            for w in range(nw):
                row[base + 1 + w] = np.float32(acc[s, w, A_CNT])
            for w in range(1, nw):
                row[base + 5 + w] = np.float32(acc[s, w, A_SUM] / 100.0)
            c30 = acc[s, W_30D, A_CNT]
            if c30 > 0:
                mean_amt = acc[s, W_30D, A_SUM] / 100.0 / c30
                row[base + 10] = np.float32((amt / 100.0) / max(mean_amt, 0.01))
            else:
                row[base + 10] = nan
            if c30 > 1:
                m = facc[s, W_30D, 0] / c30
                v = max(facc[s, W_30D, 1] / c30 - m * m, 0.0)
                row[base + 11] = np.float32((la - m) / math.sqrt(v + 0.01))
            else:
                row[base + 11] = nan
            row[lab] = np.float32(acc[s, W_7D, A_KF])
            row[lab + 1] = np.float32(acc[s, W_30D, A_KF])
            row[lab + 2] = np.float32(acc[s, W_30D, A_KL])
            row[lab + 3] = np.float32(alltime[s, 0])
            row[lab + 4] = np.float32((alltime[s, 0] + PRIOR_WEIGHT * prior)
                                      / (alltime[s, 1] + PRIOR_WEIGHT))
            lf = lmem[s, L_LAST]
            if np.isnan(lf):
                row[lab + 5] = nan
                row[lab + 6] = nan
                row[lab + 7] = nan
            else:
                row[lab + 5] = np.float32((t - lmem[s, L_EP]) / 1e6)
                row[lab + 6] = np.float32((t - lf) / 1e6)
                row[lab + 7] = np.float32(lmem[s, L_GSF])
            if lmem[s, L_GCNT] > 0:
                row[lab + 8] = np.float32((amt / 100.0)
                                          / max(lmem[s, L_GSUM] / lmem[s, L_GCNT], 0.01))
            else:
                row[lab + 8] = nan
        u = ev_slot[i, K_USER]
        d = ev_slot[i, K_DEVICE]
        if u >= 0:
            row[DISTINCT_AT] = np.float32(acc[u, W_1D, A_DC0])
            row[DISTINCT_AT + 1] = np.float32(acc[u, W_30D, A_DC0])
            row[DISTINCT_AT + 2] = np.float32(acc[u, W_1D, A_DC1])
            row[DISTINCT_AT + 3] = np.float32(acc[u, W_30D, A_DC1])
        else:
            for c in range(4):
                row[DISTINCT_AT + c] = nan
        if d >= 0:
            row[DISTINCT_AT + 4] = np.float32(acc[d, W_1D, A_DC0])
            row[DISTINCT_AT + 5] = np.float32(acc[d, W_30D, A_DC0])
        else:
            row[DISTINCT_AT + 4] = nan
            row[DISTINCT_AT + 5] = nan
        # join the log
        for k in range(5):
            s = ev_slot[i, k]
            ev_next[i, k] = -1
            if s < 0:
                continue
            if last[s] >= 0:
                ev_next[last[s], k] = i
            last[s] = i
            last_ts[s] = t
            for w in range(nw):
                if tail[s, w] < 0:
                    tail[s, w] = i
                acc[s, w, A_CNT] += 1
                acc[s, w, A_SUM] += amt
                facc[s, w, 0] += la
                facc[s, w, 1] += la * la
                if k == K_USER:
                    p = ev_slot[i, K_UD]
                    if p >= 0:
                        acc[p, w, A_PC0] += 1
                        if acc[p, w, A_PC0] == 1:
                            acc[s, w, A_DC0] += 1
                    q = ev_slot[i, K_UM]
                    if q >= 0:
                        acc[q, w, A_PC0] += 1
                        if acc[q, w, A_PC0] == 1:
                            acc[s, w, A_DC1] += 1
                elif k == K_DEVICE:
                    p = ev_slot[i, K_UD]
                    if p >= 0:
                        acc[p, w, A_PC1] += 1
                        if acc[p, w, A_PC1] == 1:
                            acc[s, w, A_DC0] += 1


# --------------------------------------------------------------------------------------
# the state


def _grow(a: np.ndarray, n: int, fill: float | int) -> np.ndarray:
    if a.shape[0] >= n:
        return a
    size = max(n, int(a.shape[0] * 1.6) + 1024)
    b = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Settings of the state machine that must match between training and serving."""

    tz_offset_s: int = 8 * 3600
    """Fixed offset of the business's local time (``hour``, ``dow``); default UTC+8."""

    def to_dict(self) -> dict[str, Any]:
        return {"tz_offset_s": self.tz_offset_s}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureConfig:
        return cls(tz_offset_s=int(d.get("tz_offset_s", 8 * 3600)))


class FeatureState:
    """Per-entity history behind the features; fed in event-time order.

    ``batch`` replays a frame of requests (and labels) and returns the
    features of every request; ``one`` answers one live request and
    ``label_one`` applies one label. Both go through the same kernel.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.slots: list[dict[str, int]] = [{} for _ in KINDS]
        self.n_slots = 0
        self.n_events = 0
        self.event_index: dict[str, int] = {}
        self.clock_us = -(2**62)
        nw = len(WINDOWS)
        self.wlen = np.array([s * 1_000_000 for _, s in WINDOWS], dtype=np.int64)
        self.ev_ts = np.zeros(0, np.int64)
        self.ev_amt = np.zeros(0, np.int64)
        self.ev_la = np.zeros(0, np.float64)
        self.ev_slot = np.zeros((0, 5), np.int32)
        self.ev_next = np.zeros((0, 5), np.int32)
        self.ev_known = np.zeros(0, np.int8)
        self.ev_fraud = np.zeros(0, np.int8)
        self.last = np.zeros(0, np.int32)
        self.last_ts = np.zeros(0, np.int64)
        self.tail = np.zeros((0, nw), np.int32)
        self.acc = np.zeros((0, nw, 8), np.int64)
        self.facc = np.zeros((0, nw, 2), np.float64)
        self.alltime = np.zeros((0, 2), np.int64)
        self.lmem = np.zeros((0, 5), np.float64)
        self.glob = np.zeros(2, np.int64)
        self.unmatched_labels = 0
        self.pending = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8))
        """Labels reported after the newest request seen: (event, time, label),
        applied when a later request arrives (never earlier: no look-ahead)."""
        self._one_out = np.zeros((1, N_FEATURES), np.float32)
        self._ops1 = (np.zeros(1, np.int8), np.zeros(1, np.int64), np.zeros(1, np.int64),
                      np.zeros(1, np.int8), np.zeros(1, np.int64))

    # -- capacity ----------------------------------------------------------------------

    def _reserve(self, events: int, slots: int) -> None:
        ne = self.n_events + events
        if self.ev_ts.shape[0] < ne:
            self.ev_ts = _grow(self.ev_ts, ne, 0)
            self.ev_amt = _grow(self.ev_amt, ne, 0)
            self.ev_la = _grow(self.ev_la, ne, 0.0)
            self.ev_slot = _grow(self.ev_slot, ne, -1)
            self.ev_next = _grow(self.ev_next, ne, -1)
            self.ev_known = _grow(self.ev_known, ne, 0)
            self.ev_fraud = _grow(self.ev_fraud, ne, 0)
        ns = self.n_slots + slots
        if self.last.shape[0] < ns:
            self.last = _grow(self.last, ns, -1)
            self.last_ts = _grow(self.last_ts, ns, 0)
            self.tail = _grow(self.tail, ns, -1)
            self.acc = _grow(self.acc, ns, 0)
            self.facc = _grow(self.facc, ns, 0.0)
            self.alltime = _grow(self.alltime, ns, 0)
            old = self.lmem.shape[0]
            self.lmem = _grow(self.lmem, ns, np.nan)
            self.lmem[old:, L_GSF:] = 0.0

    def _slot(self, k: int, key: str | None) -> int:
        if key is None:
            return -1
        table = self.slots[k]
        s = table.get(key)
        if s is None:
            s = self.n_slots
            table[key] = s
            self.n_slots += 1
        return s

    def _call(self, kinds: np.ndarray, evs: np.ndarray, times: np.ndarray, ys: np.ndarray,
              rows: np.ndarray, out: np.ndarray) -> None:
        _run(kinds, evs, times, ys, rows, out, self.ev_ts, self.ev_amt, self.ev_la,
             self.ev_slot, self.ev_next, self.ev_known, self.ev_fraud, self.last,
             self.last_ts, self.tail, self.acc, self.facc, self.alltime, self.lmem,
             self.glob, self.wlen, self.config.tz_offset_s * 1_000_000)

    # -- online ------------------------------------------------------------------------

    def one(self, event_id: str, ts_us: int, amount_fen: int, user_id: str | None,
            device_id: str | None, merchant_id: str | None) -> np.ndarray:
        """Features of one live request (then it joins the history). Returns a
        view valid until the next call: copy it to keep it."""
        if event_id in self.event_index:
            raise ValueError(f"event_id {event_id!r} was already scored")
        self._reserve(1, 5)
        i = self.n_events
        keys = (user_id, device_id, merchant_id,
                None if user_id is None or device_id is None else f"{user_id}\x1f{device_id}",
                None if user_id is None or merchant_id is None
                else f"{user_id}\x1f{merchant_id}")
        for k, key in enumerate(keys):
            self.ev_slot[i, k] = self._slot(k, key)
        t = max(int(ts_us), self.clock_us)
        if self.pending[0].size and self.pending[1][0] < t:
            self._apply_pending(t)
        self.ev_ts[i] = t
        self.ev_amt[i] = int(amount_fen)
        self.ev_la[i] = math.log1p(amount_fen / 100.0)
        self.n_events += 1
        self.event_index[event_id] = i
        self.clock_us = t
        kinds, evs, times, ys, rows = self._ops1
        kinds[0] = OP_REQUEST
        evs[0] = i
        times[0] = t
        self._call(kinds, evs, times, ys, rows, self._one_out)
        row: np.ndarray = self._one_out[0]
        return row

    def _apply_pending(self, t: int) -> None:
        """Apply the pending labels reported strictly before ``t``."""
        pev, pt, py = self.pending
        n = int(np.searchsorted(pt, t, side="left"))
        if n == 0:
            return
        kinds = np.full(n, OP_LABEL, np.int8)
        rows = np.full(n, -1, np.int64)
        self._call(kinds, pev[:n], pt[:n], py[:n], rows, self._one_out)
        self.pending = (pev[n:], pt[n:], py[n:])

    def label_one(self, event_id: str, label: int, reported_us: int) -> bool:
        """Apply one label from its report time on; False if the request is unknown."""
        i = self.event_index.get(event_id)
        if i is None:
            self.unmatched_labels += 1
            return False
        t = max(int(reported_us), int(self.ev_ts[i]))
        if t > self.clock_us:
            self._add_pending(np.array([i], np.int64), np.array([t], np.int64),
                              np.array([1 if label else 0], np.int8))
            return True
        t = self.clock_us
        kinds, evs, times, ys, rows = self._ops1
        kinds[0] = OP_LABEL
        evs[0] = i
        times[0] = t
        ys[0] = 1 if label else 0
        self._call(kinds, evs, times, ys, rows, self._one_out)
        return True

    # -- batch -------------------------------------------------------------------------

    def batch(self, requests: pl.DataFrame, labels: pl.DataFrame | None = None,
              *, chunk_ops: int = 262_144) -> np.ndarray:
        """Features of every request (rows in the frame's order), labels applied
        from their ``reported_at`` on. Requests are processed in ``ts`` order
        (ties in frame order); a label reported at the same instant as a request
        is not seen by it."""
        out = np.empty((requests.height, N_FEATURES), np.float32)
        for rows, feats in self.iter_batch(requests, labels, chunk_ops=chunk_ops):
            out[rows] = feats
        return out

    def iter_batch(self, requests: pl.DataFrame, labels: pl.DataFrame | None = None,
                   *, chunk_ops: int = 262_144) -> Any:
        """Like :meth:`batch`, yielding ``(row positions, features)`` chunk by
        chunk in time order, so a caller can keep a sample of a long history
        without holding every feature row."""
        n = requests.height
        if n == 0:
            return
        order = np.argsort(requests["ts"].dt.epoch("us").to_numpy(), kind="stable")
        req = requests[order]
        ts = req["ts"].dt.epoch("us").to_numpy().astype(np.int64)
        ts = np.maximum(ts, self.clock_us)
        ids = req["event_id"].to_list()
        base = self.n_events
        index = self.event_index
        before = len(index)
        index.update(zip(ids, range(base, base + n), strict=True))
        if len(index) != before + n:
            raise ValueError("an event_id is repeated or was already scored")
        slots = self._encode(req)
        self._reserve(n, 0)
        sl = slice(base, base + n)
        self.ev_ts[sl] = ts
        amt = req["amount_fen"].to_numpy().astype(np.int64)
        self.ev_amt[sl] = amt
        self.ev_la[sl] = np.log1p(amt / 100.0)
        self.ev_slot[sl] = slots
        self.n_events += n
        # operations: requests then labels, merged by time (requests first on ties)
        op_kind = np.zeros(n, np.int8)
        op_ev = np.arange(base, base + n, dtype=np.int64)
        op_t = ts
        op_y = np.zeros(n, np.int8)
        if labels is not None and labels.height:
            ids_frame = pl.DataFrame({"event_id": req["event_id"],
                                      "_ev": np.arange(base, base + n, dtype=np.int64)})
            self._add_pending(*self._label_ops(labels, ids_frame))
        pev, pt, py = self.pending
        if pev.size:
            now = int(ts[-1])
            n_due = int(np.searchsorted(pt, now, side="right"))
            self.pending = (pev[n_due:], pt[n_due:], py[n_due:])
            op_kind = np.concatenate([op_kind, np.ones(n_due, np.int8)])
            op_ev = np.concatenate([op_ev, pev[:n_due]])
            op_t = np.concatenate([op_t, pt[:n_due]])
            op_y = np.concatenate([op_y, py[:n_due]])
            o = np.lexsort((op_kind, op_t))
            op_kind, op_ev, op_t, op_y = op_kind[o], op_ev[o], op_t[o], op_y[o]
        op_row = np.where(op_kind == OP_REQUEST, op_ev - base, -1).astype(np.int64)
        done = 0
        total = op_kind.size
        while done < total:
            end = min(total, done + chunk_ops)
            k = op_kind[done:end]
            rows = op_row[done:end]
            nreq = int((k == OP_REQUEST).sum())
            local_rows = np.where(rows >= 0, np.cumsum(rows >= 0) - 1, -1).astype(np.int64)
            out = np.empty((max(nreq, 1), N_FEATURES), np.float32)
            self._call(k, op_ev[done:end], op_t[done:end], op_y[done:end], local_rows, out)
            self.clock_us = max(self.clock_us, int(op_t[end - 1]))
            yield order[rows[rows >= 0]], out[:nreq]
            done = end

    def _add_pending(self, ev: np.ndarray, t: np.ndarray, y: np.ndarray) -> None:
        pev, pt, py = self.pending
        ev, t, y = np.concatenate([pev, ev]), np.concatenate([pt, t]), np.concatenate([py, y])
        o = np.argsort(t, kind="stable")
        self.pending = (ev[o], t[o], y[o])

    def _label_ops(self, labels: pl.DataFrame, batch_ids: pl.DataFrame | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Label operations for the known requests: (event index, time, label).

        A label takes effect at its ``reported_at``, never before its request
        (a report dated before the payment is an upstream clock problem).
        ``batch_ids`` (``event_id``, ``_ev``) resolves labels of the requests
        being replayed with one join instead of a dictionary look-up each."""
        lab = labels.select("event_id", "label", "reported_at")
        if batch_ids is not None:
            lab = lab.join(batch_ids, on="event_id", how="left", maintain_order="left")
            ev = lab["_ev"].fill_null(-1).to_numpy().astype(np.int64)
        else:
            ev = np.full(lab.height, -1, np.int64)
        miss = np.flatnonzero(ev < 0)
        if miss.size:
            index = self.event_index
            ids = lab["event_id"].gather(miss).to_list()
            ev[miss] = np.fromiter((index.get(e, -1) for e in ids), np.int64, len(ids))
        rep = lab["reported_at"].dt.epoch("us").to_numpy().astype(np.int64)
        y = lab["label"].to_numpy().astype(np.int8)
        known = ev >= 0
        self.unmatched_labels += int((~known).sum())
        ev, rep, y = ev[known], rep[known], y[known]
        t = np.maximum(rep, self.ev_ts[ev])
        return ev, t, y

    def _encode(self, req: pl.DataFrame) -> np.ndarray:
        n = req.height
        out = np.full((n, 5), -1, np.int32)
        for k, kind in enumerate(KINDS):
            cols = ID_COLUMNS[kind]
            if any(c not in req.columns for c in cols):
                continue
            key = (req[cols[0]] if len(cols) == 1 else
                   req.select(pl.concat_str([pl.col(c) for c in cols], separator="\x1f"))
                   .to_series())
            if key.null_count() == n:
                continue
            uniq = key.drop_nulls().unique(maintain_order=True).to_list()
            table = self.slots[k]
            mapping = np.empty(len(uniq), np.int32)
            for j, c in enumerate(uniq):
                s = table.get(c)
                if s is None:
                    s = self.n_slots
                    table[c] = s
                    self.n_slots += 1
                mapping[j] = s
            codes = key.replace_strict(uniq, np.arange(len(uniq)), default=-1,
                                       return_dtype=pl.Int64).to_numpy()
            valid = codes >= 0
            out[valid, k] = mapping[codes[valid]]
        self._reserve(0, 0)
        return out

    # -- snapshot ----------------------------------------------------------------------

    _ARRAYS: tuple[str, ...] = ("ev_ts", "ev_amt", "ev_la", "ev_slot", "ev_next", "ev_known",
                                "ev_fraud", "last", "last_ts", "tail", "acc", "facc",
                                "alltime", "lmem", "glob")

    def snapshot(self, path: Path | str) -> None:
        """Write the whole state (arrays and keys) to one ``.npz`` file."""
        arrays: dict[str, np.ndarray] = {}
        for name in self._ARRAYS:
            a = getattr(self, name)
            if name.startswith("ev_"):
                a = a[: self.n_events]
            elif name != "glob":
                a = a[: self.n_slots]
            arrays[name] = a
        for k, table in enumerate(self.slots):
            arrays[f"keys_{k}"] = np.array(list(table), dtype=np.str_)
            arrays[f"vals_{k}"] = np.fromiter(table.values(), np.int64, len(table))
        ids = list(self.event_index)
        arrays["event_ids"] = np.array(ids, dtype=np.str_)
        arrays["event_pos"] = np.fromiter(self.event_index.values(), np.int64, len(ids))
        arrays["pending_ev"], arrays["pending_t"], arrays["pending_y"] = self.pending
        arrays["meta"] = np.array([self.n_slots, self.n_events, self.clock_us,
                                   self.unmatched_labels, self.config.tz_offset_s], np.int64)
        with Path(path).open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def restore(cls, path: Path | str) -> FeatureState:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = z["meta"]
            st = cls(FeatureConfig(tz_offset_s=int(meta[4])))
            for name in cls._ARRAYS:
                setattr(st, name, np.array(z[name]))
            st.n_slots, st.n_events, st.clock_us, st.unmatched_labels = (int(v) for v in meta[:4])
            for k in range(len(KINDS)):
                st.slots[k] = dict(zip(z[f"keys_{k}"].tolist(),
                                       z[f"vals_{k}"].tolist(), strict=True))
            st.pending = (np.array(z["pending_ev"]), np.array(z["pending_t"]),
                          np.array(z["pending_y"]))
            st.event_index = dict(zip(z["event_ids"].tolist(), z["event_pos"].tolist(),
                                      strict=True))
        return st


def feature_frame(values: np.ndarray, names: Sequence[str] = FEATURES) -> pl.DataFrame:
    """Feature rows as a frame with NaN as null (how rules see a missing value)."""
    return pl.DataFrame(values, schema=list(names), orient="row").fill_nan(None)
