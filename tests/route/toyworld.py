"""A small, explicit fault model the routing tests replay against.

Independent of the simulator on purpose: every probability is written here,
so a test can state what the right answer is. Vectorised like the real World.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from tapshield.timeutil import TS_DTYPE

T0 = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)
CHANNELS = ("nfc", "qr", "debit_card", "wallet")
REGIONS = ("CN-GD", "CN-ZJ", "CN-SH", "CN-BJ")


@dataclass(frozen=True)
class Fault:
    channel: str
    start_s: float
    end_s: float
    failure: float = 1.0
    """Probability that an attempt fails technically while the fault is on."""
    timeout_share: float = 0.0
    """Share of those failures that are timeouts instead of 91/96 answers."""
    authorised_share: float = 0.0
    """Share of timeouts the issuer in fact authorised (answer lost)."""
    regions: tuple[str, ...] | None = None
    fault_id: str = "f1"


@dataclass
class ToyWorld:
    faults: list[Fault] = field(default_factory=list)
    base_failure: dict[str, float] = field(
        default_factory=lambda: {"nfc": 0.002, "qr": 0.005, "debit_card": 0.005, "wallet": 0.002}
    )
    decline_rate: float = 0.03
    latency_ms: dict[str, float] = field(
        default_factory=lambda: {"nfc": 250.0, "qr": 400.0, "debit_card": 600.0, "wallet": 300.0}
    )
    timeout_ms: float = 10_000.0
    base_timeout_share: float = 0.2
    base_authorised_share: float = 0.5
    no_debit_share: float = 0.3
    """Users without a linked debit card."""
    nfc_only_share: float = 0.0

    def _p_and_fault(self, attempts: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                            np.ndarray]:
        ch = attempts["channel"].to_numpy()
        reg = attempts["region"].to_numpy()
        t = (attempts["ts"].dt.epoch("us").to_numpy() - int(T0.timestamp() * 1e6)) / 1e6
        p = attempts["channel"].replace_strict(self.base_failure, default=0.01,
                                               return_dtype=pl.Float64).to_numpy().copy()
        tshare = np.full(len(ch), self.base_timeout_share)
        ashare = np.full(len(ch), self.base_authorised_share)
        fid = np.full(len(ch), None, dtype=object)
        for f in self.faults:
            on = (ch == f.channel) & (t >= f.start_s) & (t < f.end_s)
            if f.regions is not None:
                on &= np.isin(reg, list(f.regions))
            p = np.where(on, 1.0 - (1.0 - p) * (1.0 - f.failure), p)
            tshare = np.where(on, f.timeout_share, tshare)
            ashare = np.where(on, f.authorised_share, ashare)
            fid = np.where(on, f.fault_id, fid)
        return p, tshare, ashare, fid

    def technical_failure_probability(self, attempts: pl.DataFrame) -> np.ndarray:
        return self._p_and_fault(attempts)[0]

    def attempt(self, attempts: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        n = attempts.height
        p, tshare, ashare, fid = self._p_and_fault(attempts)
        u = rng.random((5, n))
        tech = u[0] < p
        timeout = tech & (u[1] < tshare)
        authorised = timeout & (u[2] < ashare)
        declined = ~tech & (u[3] < self.decline_rate)
        approved = ~tech & ~declined
        med = attempts["channel"].replace_strict(self.latency_ms, default=300.0,
                                                 return_dtype=pl.Float64).to_numpy()
        lat = med * np.exp(0.5 * rng.standard_normal(n))
        lat = np.where(timeout, self.timeout_ms, lat)
        outcome = np.where(approved, "approved", np.where(declined, "declined",
                           np.where(timeout, "timeout", "failed")))
        code = np.where(approved, "00", np.where(declined, np.where(u[4] < 0.5, "51", "05"),
                        np.where(timeout, "68", np.where(u[4] < 0.5, "91", "96"))))
        return pl.DataFrame({
            "outcome": outcome,
            "response_code": code,
            "latency_ms": lat,
            "authorised": approved | authorised,
            "fault_id": pl.Series(fid.tolist(), dtype=pl.String),
        })

    def eligible(self, user_ids: pl.Series) -> pl.DataFrame:
        users = pl.Series("user_id", user_ids, dtype=pl.String).unique()
        h = np.array([int(hashlib.blake2b(u.encode(), digest_size=4).hexdigest(), 16) / 2**32
                      for u in users.to_list()])
        nfc_only = h < self.nfc_only_share
        no_debit = ~nfc_only & (h < self.nfc_only_share + self.no_debit_share)
        frames = []
        for ch in CHANNELS:
            has = ~nfc_only if ch != "nfc" else np.ones(len(h), dtype=bool)
            if ch == "debit_card":
                has &= ~no_debit
            frames.append(pl.DataFrame({"user_id": users.filter(pl.Series(has)),
                                        "channel": ch}))
        return pl.concat(frames)


def make_taps(n: int, duration_s: float, *, seed: int = 1, users: int = 2_000,
              regions: tuple[str, ...] = REGIONS) -> pl.DataFrame:
    """``n`` taps spread uniformly at random over ``duration_s`` from :data:`T0`."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.random(n) * duration_s)
    return pl.DataFrame({
        "event_id": [f"e{i}" for i in range(n)],
        "ts": pl.Series([T0 + timedelta(seconds=float(x)) for x in t], dtype=TS_DTYPE),
        "payment_id": [f"p{i}" for i in range(n)],
        "user_id": [f"u{x}" for x in rng.integers(0, users, n)],
        "merchant_id": [f"m{x}" for x in rng.integers(0, 100, n)],
        "channel": ["nfc"] * n,
        "region": rng.choice(list(regions), n).tolist(),
        "amount_fen": rng.integers(100, 100_000, n),
    })
