"""Synthetic authorisation requests and labels with known fraud patterns.

For tests, examples and the speed benchmark (a state of a million users),
not for quality claims: those are measured on the public data sets. Customers
pay at a few usual merchants from one or two devices; three kinds of fraud
are planted, each needing a different feature family to catch:

* a **compromised merchant** (every payment there is fraud for some days):
  label-derived merchant risk, known only after ``reported_at``;
* a **taken-over account** (a new device, a burst of large payments):
  new-device, velocity and amount-against-history features;
* **card testing** (many small payments from one device across accounts):
  accounts-per-device and device velocity.

Labels are reported 1 to 10 days after the payment.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from tapshield.timeutil import TS_DTYPE

START = datetime(2026, 10, 1, tzinfo=UTC)
REGIONS = ("CN-GD", "CN-ZJ", "CN-JS", "CN-SH", "CN-BJ")
MODELS = ("HW-6", "HW-7", "MI-12", "IP-14", "OP-9")


def generate(n_users: int = 2_000, days: int = 30, *, per_user_day: float = 1.0,
             n_merchants: int | None = None, seed: int = 1,
             fraud: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(requests, labels)``: requests in the canonical shape, in time order."""
    rng = np.random.default_rng(seed)
    n_merchants = n_merchants or max(50, n_users // 10)
    span_us = days * 86_400_000_000
    t0 = int(START.timestamp() * 1_000_000)
    n = int(rng.poisson(n_users * days * per_user_day))
    user = rng.integers(0, n_users, n)
    ts = t0 + np.sort(rng.integers(0, span_us, n))
    rng.shuffle(user)
    home = rng.integers(0, n_merchants, (n_users, 4))
    merchant = home[user, rng.integers(0, 4, n)]
    other = rng.random(n) < 0.1
    merchant[other] = rng.integers(0, n_merchants, int(other.sum()))
    n_dev = 1 + (rng.random(n_users) < 0.3)
    dev_slot = rng.integers(0, 2, n) % n_dev[user]
    device = user * 2 + dev_slot
    mean_amt = np.exp(rng.normal(4.0, 0.8, n_users))
    amount = np.maximum(1, (mean_amt[user] * np.exp(rng.normal(0, 0.5, n)) * 100)).astype(
        np.int64)
    label = np.zeros(n, np.int8)
    kind = np.zeros(n, np.int8)
    if fraud:
        # compromised merchants: a few per week, 7 days each
        for _ in range(max(1, days // 7) * 2):
            m = int(rng.integers(0, n_merchants))
            start = t0 + int(rng.integers(0, span_us))
            hit = (merchant == m) & (ts >= start) & (ts < start + 7 * 86_400_000_000)
            label[hit] = 1
            kind[hit] = 1
        # account takeover: new device, large amounts, a burst in one day
        victims = rng.choice(n_users, max(1, n_users // 200), replace=False)
        extra_ts, extra_user, extra_dev, extra_m, extra_amt = [], [], [], [], []
        for v in victims:
            start = t0 + int(rng.integers(0, span_us - 86_400_000_000))
            k = int(rng.integers(3, 8))
            extra_ts.append(start + np.sort(rng.integers(0, 6 * 3_600_000_000, k)))
            extra_user.append(np.full(k, v))
            extra_dev.append(np.full(k, 10_000_000 + int(v)))
            extra_m.append(rng.integers(0, n_merchants, k))
            extra_amt.append((mean_amt[v] * 5 * np.exp(rng.normal(0, 0.3, k)) * 100)
                             .astype(np.int64))
        # card testing: one device, many accounts, small amounts
        for j in range(max(1, days // 10)):
            start = t0 + int(rng.integers(0, span_us - 86_400_000_000))
            k = 30
            extra_ts.append(start + np.sort(rng.integers(0, 3_600_000_000, k)))
            extra_user.append(rng.integers(0, n_users, k))
            extra_dev.append(np.full(k, 20_000_000 + j))
            extra_m.append(np.full(k, int(rng.integers(0, n_merchants))))
            extra_amt.append(rng.integers(100, 500, k).astype(np.int64))
        if extra_ts:
            m_kind = np.concatenate([np.full(a.size, 2 if i < len(victims) else 3, np.int8)
                                     for i, a in enumerate(extra_ts)])
            ts = np.concatenate([ts, *extra_ts])
            user = np.concatenate([user, *extra_user])
            device = np.concatenate([device, *extra_dev])
            merchant = np.concatenate([merchant, *extra_m])
            amount = np.concatenate([amount, *extra_amt])
            label = np.concatenate([label, np.ones(m_kind.size, np.int8)])
            kind = np.concatenate([kind, m_kind])
            order = np.argsort(ts, kind="stable")
            ts, user, device, merchant = ts[order], user[order], device[order], merchant[order]
            amount, label, kind = amount[order], label[order], kind[order]
    n = ts.size
    region = np.asarray(REGIONS)[user % len(REGIONS)]
    model = np.asarray(MODELS)[device % len(MODELS)]
    ids = np.char.add("e", np.arange(n).astype(str))
    requests = pl.DataFrame({
        "event_id": ids,
        "ts": pl.Series(ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "amount_fen": amount,
        "user_id": np.char.add("u", user.astype(str)),
        "device_id": np.char.add("d", device.astype(str)),
        "merchant_id": np.char.add("m", merchant.astype(str)),
        "channel": np.where(rng.random(n) < 0.6, "nfc", "qr"),
        "region": region,
        "device_model": model,
        "app_version": np.where(rng.random(n) < 0.2, "8.2.0", "8.1.4"),
    }).with_columns(pl.col("ts").cast(TS_DTYPE))
    delay = rng.integers(86_400_000_000, 10 * 86_400_000_000, n)
    labels = pl.DataFrame({
        "event_id": ids, "label": label,
        "reported_at": pl.Series(ts + delay).cast(pl.Datetime("us")).dt
        .replace_time_zone("UTC"),
    }).with_columns(pl.col("reported_at").cast(TS_DTYPE))
    return requests, labels.with_columns(pl.Series("pattern", kind))


def write_files(requests: pl.DataFrame, labels: pl.DataFrame, req_path: str,
                lab_path: str) -> None:
    """Write both as contract CSV files (amounts as decimal yuan, RFC 3339 times)."""
    wire = requests.with_columns(
        (pl.col("amount_fen") // 100).cast(pl.String).alias("_y"),
        (pl.col("amount_fen") % 100).cast(pl.String).str.zfill(2).alias("_f"),
    ).with_columns(pl.format("{}.{}", "_y", "_f").alias("amount")).drop(
        "amount_fen", "_y", "_f").with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
    wire.write_csv(req_path)
    labels.select("event_id", "label",
                  pl.col("reported_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv(
        lab_path)
