"""Every contract rule, with a row that breaks it (and the valid spellings it must keep)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from tapshield.events.idindex import EventIdIndex
from tapshield.events.schema import REQUIRED, RULE_NAMES
from tapshield.events.validate import validate_frame
from tests.events.helpers import GOOD, rows

BROKEN: list[tuple[str, str, dict[str, str | None]]] = [
    *[("required", c, {c: None}) for c in REQUIRED],
    *[("required", c, {c: ""}) for c in ("event_id", "user_id", "amount", "ts")],
    ("id_format", "user_id", {"user_id": "u" * 129}),
    ("id_format", "merchant_id", {"merchant_id": "m" * 200}),
    ("ts_format", "ts", {"ts": "2026-11-11T20:00:00"}),
    ("ts_format", "ts", {"ts": "yesterday"}),
    ("ts_format", "ts", {"ts": "2026-02-30T10:00:00+08:00"}),
    ("ts_format", "ts", {"ts": "2026-11-11T25:00:00+08:00"}),
    ("ts_format", "ts", {"ts": "2026-11-11T20:00:00.+08:00"}),
    ("ts_range", "ts", {"ts": "1795737600"}),
    ("ts_range", "ts", {"ts": "1899-01-01T00:00:00Z"}),
    ("channel_format", "channel", {"channel": "n fc"}),
    ("channel_format", "channel", {"channel": "-nfc"}),
    ("region_format", "region", {"region": "cn-gd"}),
    ("region_format", "region", {"region": "Guangdong"}),
    ("amount_format", "amount", {"amount": "1.234"}),
    ("amount_format", "amount", {"amount": "-1.00"}),
    ("amount_format", "amount", {"amount": "1e3"}),
    ("amount_format", "amount", {"amount": "12,50"}),
    ("amount_format", "amount", {"amount": ".5"}),
    ("outcome_enum", "outcome", {"outcome": "ok"}),
    ("outcome_enum", "outcome", {"outcome": "Approved"}),
    ("response_code_format", "response_code", {"response_code": "5", "outcome": "declined"}),
    ("response_code_format", "response_code",
     {"response_code": "ABC", "outcome": "declined"}),
    ("outcome_code_mismatch", "response_code", {"response_code": "05"}),
    ("outcome_code_mismatch", "response_code", {"outcome": "declined", "response_code": "00"}),
    ("outcome_code_mismatch", "response_code", {"outcome": "timeout", "response_code": "00"}),
    ("latency_format", "latency_ms", {"latency_ms": "-1"}),
    ("latency_format", "latency_ms", {"latency_ms": "fast"}),
    ("latency_format", "latency_ms", {"latency_ms": "nan"}),
    ("latency_format", "latency_ms", {"latency_ms": "inf"}),
    ("risk_decision_enum", "risk_decision", {"risk_decision": "maybe"}),
    ("text_length", "carrier", {"carrier": "c" * 129}),
]


@pytest.mark.parametrize(("rule", "column", "change"), BROKEN,
                         ids=[f"{r}-{c}-{i}" for i, (r, c, _) in enumerate(BROKEN)])
def test_broken_row_is_rejected_naming_rule_and_column(
    rule: str, column: str, change: dict[str, str | None]
) -> None:
    frame = rows({}, change, {})
    result = validate_frame(frame, EventIdIndex())
    assert result.valid.height == 2, "the good rows around it go on"
    assert result.rejects["row"].to_list() == [2]
    errors = result.errors()
    assert any(e.rule == rule and e.column == column for e in errors), errors
    assert rule in RULE_NAMES
    text = str(errors[0])
    assert "row 2" in text and errors[0].column in text


def test_every_rule_except_structural_ones_has_a_failing_row() -> None:
    structural = {  # tested in test_read_write and test_robustness
        "encoding", "field_count", "json_syntax", "duplicate", "csv_quote", "type"
    }
    covered = {r for r, _, _ in BROKEN} | structural
    assert covered == set(RULE_NAMES)


def test_duplicate_event_id_within_a_batch_and_across_batches() -> None:
    index = EventIdIndex()
    first = validate_frame(rows({}, {"event_id": "e1"}), index)
    assert first.rejects["row"].to_list() == [2]
    assert "event_id: duplicate" in first.rejects["errors"][0]
    second = validate_frame(rows({"event_id": "e1"}, {"event_id": "zz"}), index, first_row=3)
    assert second.rejects["row"].to_list() == [3]
    assert second.valid["event_id"].to_list() == ["zz"]


def test_rejected_row_does_not_poison_the_id_index() -> None:
    index = EventIdIndex()
    bad = validate_frame(rows({"event_id": "x", "amount": "oops"}), index)
    assert bad.rejects.height == 1
    good = validate_frame(rows({"event_id": "x"}), index)
    assert good.valid.height == 1


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-11T20:00:00.250+08:00", datetime(2026, 11, 11, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-11T12:00:00Z", datetime(2026, 11, 11, 12, 0, tzinfo=UTC)),
        ("2026-11-11t12:00:00z", datetime(2026, 11, 11, 12, 0, tzinfo=UTC)),
        ("2026-11-11 20:00:00+0800", datetime(2026, 11, 11, 12, 0, tzinfo=UTC)),
        ("2026-11-11T07:00:00.123456789-05:00",
         datetime(2026, 11, 11, 12, 0, 0, 123456, tzinfo=UTC)),
        ("1795737600758", datetime(2026, 11, 27, 0, 0, 0, 758000, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_valid_timestamp_spellings(ts: str, expected: datetime) -> None:
    result = validate_frame(rows({"ts": ts}))
    assert result.rejects.height == 0, result.errors()
    assert result.valid["ts"][0] == expected


@pytest.mark.parametrize(("amount", "fen"), [("0", 0), ("12.5", 1250), ("12.05", 1205),
                                             ("999999999999999.99", 99999999999999999)])
def test_amounts_are_exact_fen(amount: str, fen: int) -> None:
    result = validate_frame(rows({"amount": amount}))
    assert result.valid["amount_fen"].to_list() == [fen]


def test_optional_columns_may_be_absent_or_empty() -> None:
    frame = rows({"payment_id": None, "carrier": "", "response_code": ""}).drop(
        "latency_ms", "risk_decision", "os"
    )
    result = validate_frame(frame)
    assert result.rejects.height == 0, result.errors()
    row = result.valid.row(0, named=True)
    assert row["payment_id"] == row["event_id"], "payment_id defaults to event_id"
    assert row["carrier"] is None and row["response_code"] is None and row["os"] is None
    assert row["latency_ms"] is None and row["risk_decision"] is None


def test_canonical_types() -> None:
    from tapshield.events.schema import CANONICAL_SCHEMA

    result = validate_frame(rows({}))
    assert dict(result.valid.schema) == CANONICAL_SCHEMA


def test_native_parquet_types_are_accepted() -> None:
    frame = pl.DataFrame(
        {**{k: [v] for k, v in GOOD.items()}}
    ).with_columns(
        pl.lit(1795737600758).alias("ts"),
        pl.lit(12.5).alias("amount"),
        pl.lit(230.5).alias("latency_ms"),
        pl.lit(5812).alias("merchant_category"),
    )
    result = validate_frame(frame)
    assert result.rejects.height == 0, result.errors()
    assert result.valid["amount_fen"][0] == 1250
    assert result.valid["merchant_category"][0] == "5812"


def test_unusable_float_amounts_from_parquet_are_rejected() -> None:
    frame = pl.DataFrame({k: [v, v] for k, v in GOOD.items()}).with_columns(
        pl.Series("event_id", ["a", "b"]), pl.Series("amount", [12.345, -1.0])
    )
    result = validate_frame(frame)
    assert result.rejects["row"].to_list() == [1, 2]
