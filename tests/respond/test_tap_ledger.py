"""The dict-based TapLedger counts exactly what the frame-based ledger it replaced counted.

``FrameLedger`` below is the previous implementation, kept verbatim as the
reference: every batch sequence hypothesis draws (taps failing and approved in
and out of scope, inside and outside the incident's time range, retries of the
same tap across batches, rescue cut-offs) must give the same figures after
every batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.events.schema import CANONICAL_SCHEMA
from tapshield.incident import scope_expr
from tapshield.respond.incidents import FAILURE_EXPRS, TapLedger

T0 = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)


class FrameLedger:
    """The frame-based ledger before the dict (the reference)."""

    def __init__(self, scope: list[dict[str, str]], failure: str) -> None:
        self.scope = scope
        self.failure = failure
        self.failed_attempts = 0
        self._taps = pl.DataFrame(schema={
            "payment_id": pl.String(), "amount_fen": pl.Int64(), "user_id": pl.String(),
            "merchant_id": pl.String(), "rescued": pl.Boolean()})

    def observe(self, batch: pl.DataFrame, *, start: datetime, end: datetime | None,
                rescue_until: datetime | None = None) -> None:
        if batch.height == 0:
            return
        window = pl.col("ts") >= start
        if end is not None:
            window = window & (pl.col("ts") <= end)
        hit = batch.filter(
            window & scope_expr(self.scope) & FAILURE_EXPRS[self.failure]().fill_null(False))
        if hit.height:
            self.failed_attempts += hit.height
            new = hit.select("payment_id", "amount_fen", "user_id", "merchant_id",
                             rescued=pl.lit(False))
            self._taps = pl.concat([self._taps, new]).unique(
                "payment_id", keep="first", maintain_order=True)
        if self._taps.height:
            ok = pl.col("outcome") == "approved"
            if rescue_until is not None:
                ok = ok & (pl.col("ts") <= rescue_until)
            approved = batch.filter(ok)["payment_id"]
            self._taps = self._taps.with_columns(
                pl.col("rescued") | pl.col("payment_id").is_in(approved.implode()))

    def figures(self) -> dict[str, int]:
        lost = self._taps.filter(~pl.col("rescued"))
        return {
            "failed_attempts": self.failed_attempts,
            "failed_payments": lost.height,
            "affected_users": lost["user_id"].n_unique(),
            "affected_merchants": lost["merchant_id"].n_unique(),
            "lost_fen": int(lost["amount_fen"].sum() or 0),
        }


OUTCOMES = [("approved", "00", "approve"), ("failed", "96", "approve"),
            ("timeout", "68", "approve"), ("declined", "51", "approve"),
            ("declined", "59", "decline"), ("declined", "05", "review")]

attempt = st.tuples(
    st.integers(0, 600),                 # second of the day's hour
    st.integers(0, 12),                  # tap id (few: retries collide)
    st.sampled_from(["nfc", "qr"]),
    st.sampled_from(["CN-GD", "CN-HN"]),
    st.integers(0, len(OUTCOMES) - 1),
    st.integers(0, 50_000),              # fen
    st.integers(0, 4),                   # user
    st.integers(0, 3),                   # merchant
)


def frame(specs: list[tuple[int, int, str, str, int, int, int, int]]) -> pl.DataFrame:
    cols: dict[str, list[object]] = {c: [] for c in CANONICAL_SCHEMA}
    for i, (sec, tap, channel, region, o, fen, user, merchant) in enumerate(sorted(specs)):
        outcome, code, risk = OUTCOMES[o]
        row: dict[str, object] = {
            "event_id": f"e{i}", "ts": T0 + timedelta(seconds=sec), "payment_id": f"p{tap}",
            "user_id": f"u{user}", "device_id": "d", "merchant_id": f"m{merchant}",
            "channel": channel, "region": region, "amount_fen": fen, "outcome": outcome,
            "response_code": code, "latency_ms": 100.0, "risk_decision": risk}
        for c, values in cols.items():
            values.append(row.get(c))
    return pl.DataFrame(cols, schema=CANONICAL_SCHEMA)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(attempt, max_size=25), min_size=1, max_size=4),
    scope=st.sampled_from([[], [{"channel": "nfc"}], [{"channel": "qr", "region": "CN-GD"}],
                           [{"region": "CN-HN"}, {"channel": "nfc"}]]),
    failure=st.sampled_from(sorted(FAILURE_EXPRS)),
    start_s=st.integers(0, 300),
    length_s=st.one_of(st.none(), st.integers(0, 400)),
    tail_s=st.one_of(st.none(), st.integers(0, 300)),
)
def test_dict_ledger_equals_frame_ledger(
    batches: list[list[tuple[int, int, str, str, int, int, int, int]]],
    scope: list[dict[str, str]], failure: str, start_s: int, length_s: int | None,
    tail_s: int | None,
) -> None:
    start = T0 + timedelta(seconds=start_s)
    end = None if length_s is None else start + timedelta(seconds=length_s)
    rescue = None if end is None or tail_s is None else end + timedelta(seconds=tail_s)
    new, old = TapLedger(scope, failure), FrameLedger(scope, failure)
    for specs in batches:
        batch = frame(specs)
        new.observe(batch, start=start, end=end, rescue_until=rescue)
        old.observe(batch, start=start, end=end, rescue_until=rescue)
        assert new.figures() == old.figures()


def test_a_retry_in_a_later_batch_rescues_and_a_late_one_does_not() -> None:
    """Hand case: p1 fails twice, then is approved within the tail; p2's approval comes late."""
    ledger = TapLedger([{"channel": "nfc"}], "technical")
    start, end = T0, T0 + timedelta(seconds=100)
    until = end + timedelta(seconds=60)
    ledger.observe(frame([(10, 1, "nfc", "CN-GD", 1, 500, 1, 1),
                          (20, 1, "nfc", "CN-GD", 2, 500, 1, 1),
                          (30, 2, "nfc", "CN-GD", 1, 700, 2, 1),
                          (40, 3, "qr", "CN-GD", 1, 900, 3, 1)]),
                   start=start, end=end, rescue_until=until)
    assert ledger.figures() == {"failed_attempts": 3, "failed_payments": 2,
                                "affected_users": 2, "affected_merchants": 1, "lost_fen": 1200}
    ledger.observe(frame([(150, 1, "qr", "CN-GD", 0, 500, 1, 1),
                          (200, 2, "qr", "CN-GD", 0, 700, 2, 1)]),
                   start=start, end=end, rescue_until=until)
    assert ledger.figures() == {"failed_attempts": 3, "failed_payments": 1,
                                "affected_users": 1, "affected_merchants": 1, "lost_fen": 700}
