"""The payment-event contract (version 1): columns, types and rules.

This module is the single source of truth for the contract. The README's
table, the validator, the writers and the simulator all read it, so the
documentation cannot drift from what the code enforces.

Two shapes exist:

* the **wire** shape, what other systems send: the column names of the
  public table, text or native Parquet types;
* the **canonical** shape, what every stage of the pipeline receives: the
  same columns with exact types (``ts`` as UTC microseconds, ``amount_fen``
  as integer fen, enums as ``pl.Enum``), ``payment_id`` filled in.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tapshield.timeutil import TS_DTYPE

CONTRACT_VERSION = "1.0"

OUTCOMES: tuple[str, ...] = ("approved", "declined", "failed", "timeout")
"""``declined`` is a business decision (credit, risk, issuer); ``failed`` and
``timeout`` are technical. Keeping them apart is what lets a router count only
technical failures against a channel."""

RISK_DECISIONS: tuple[str, ...] = ("approve", "review", "decline")

OUTCOME_DTYPE = pl.Enum(list(OUTCOMES))
RISK_DTYPE = pl.Enum(list(RISK_DECISIONS))

DIMENSIONS: tuple[str, ...] = (
    "channel",
    "region",
    "carrier",
    "os",
    "app_version",
    "device_model",
    "server_version",
    "merchant_id",
    "merchant_category",
)
"""Categorical columns a failure wave can be sliced by."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the wire contract."""

    name: str
    required: bool
    kind: str
    description: str


WIRE_COLUMNS: tuple[Column, ...] = (
    Column("event_id", True, "string", "unique per attempt"),
    Column(
        "ts",
        True,
        "timestamp",
        "RFC 3339 with offset (e.g. `2026-11-11T20:00:00.250+08:00`) or integer epoch milliseconds",
    ),
    Column(
        "payment_id",
        False,
        "string",
        "one customer tap; retries and failovers of the same tap share it (defaults to event_id)",
    ),
    Column("user_id", True, "string", "customer"),
    Column("device_id", True, "string", "customer device"),
    Column("merchant_id", True, "string", "merchant"),
    Column("channel", True, "string", "payment channel, e.g. `nfc`, `qr`, `debit_card`, `wallet`"),
    Column("region", True, "region", "ISO 3166-2 subdivision, e.g. `CN-GD`"),
    Column(
        "amount",
        True,
        "amount",
        "decimal yuan, >= 0, at most 2 decimals (kept exact: integer fen inside)",
    ),
    Column("outcome", True, "enum", "`approved`, `declined`, `failed`, `timeout`"),
    Column("response_code", False, "code", "two-character ISO 8583 field-39 code"),
    Column("latency_ms", False, "number", "number >= 0"),
    Column("carrier", False, "string", "mobile carrier"),
    Column("os", False, "string", "device operating system"),
    Column("app_version", False, "string", "wallet app version"),
    Column("device_model", False, "string", "device model"),
    Column("server_version", False, "string", "version of the gateway server that handled it"),
    Column("merchant_category", False, "string", "merchant category code (kept as text)"),
    Column("risk_decision", False, "enum", "`approve`, `review`, `decline`"),
)

WIRE_NAMES: tuple[str, ...] = tuple(c.name for c in WIRE_COLUMNS)
REQUIRED: tuple[str, ...] = tuple(c.name for c in WIRE_COLUMNS if c.required)
OPTIONAL_STRINGS: tuple[str, ...] = (
    "carrier",
    "os",
    "app_version",
    "device_model",
    "server_version",
    "merchant_category",
)
ID_COLUMNS: tuple[str, ...] = ("event_id", "payment_id", "user_id", "device_id", "merchant_id")

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "ts": TS_DTYPE,
    "payment_id": pl.String(),
    "user_id": pl.String(),
    "device_id": pl.String(),
    "merchant_id": pl.String(),
    "channel": pl.String(),
    "region": pl.String(),
    "amount_fen": pl.Int64(),
    "outcome": OUTCOME_DTYPE,
    "response_code": pl.String(),
    "latency_ms": pl.Float64(),
    "carrier": pl.String(),
    "os": pl.String(),
    "app_version": pl.String(),
    "device_model": pl.String(),
    "server_version": pl.String(),
    "merchant_category": pl.String(),
    "risk_decision": RISK_DTYPE,
}
"""What every stage of the pipeline receives: exact types, ``payment_id`` filled."""


def empty_events() -> pl.DataFrame:
    """A canonical frame with no rows (the neutral element of ``pl.concat``)."""
    return pl.DataFrame(schema=CANONICAL_SCHEMA)


@dataclass(frozen=True, slots=True)
class Rule:
    """One validation rule, named so an error message can cite it."""

    name: str
    column: str
    text: str


RULES: tuple[Rule, ...] = (
    Rule("encoding", "*", "text is UTF-8"),
    Rule("field_count", "*", "a CSV record has no more fields than the header"),
    Rule("json_syntax", "*", "each JSONL line is one JSON object"),
    Rule("csv_quote", "*", "a field that starts with `\"` ends with a closing `\"` followed by "
         "`,` or a line end (`\"\"` inside stands for one `\"`)"),
    Rule("type", "*", "a single value: text, a number or a timestamp, never a list, map, "
         "object or true/false"),
    Rule("required", "*", "a required column must have a non-empty value"),
    Rule("id_format", "event_id, payment_id, user_id, device_id, merchant_id",
         "at most 128 bytes (UTF-8)"),
    Rule("duplicate", "event_id", "event_id is unique per attempt; a repeat is rejected"),
    Rule("ts_format", "ts", "RFC 3339 with an offset (`Z` or `+hh:mm`) or integer epoch ms"),
    Rule("ts_range", "ts", "between 2000-01-01 and 2100-01-01 (epoch ms, not seconds)"),
    Rule("channel_format", "channel", "1-64 characters: letters, digits, `_ . : -`"),
    Rule("region_format", "region", "ISO 3166-2: two capital letters, `-`, 1-3 letters or digits"),
    Rule("amount_format", "amount", "decimal yuan >= 0 with at most 2 decimals, no exponent"),
    Rule("outcome_enum", "outcome", "one of " + ", ".join(OUTCOMES)),
    Rule("response_code_format", "response_code", "two characters, digits or capital letters"),
    Rule("outcome_code_mismatch", "response_code",
         "`approved` needs an approval code (00, 08, 10, 11, 16) or none; "
         "other outcomes must not carry 00"),
    Rule("latency_format", "latency_ms", "a finite number >= 0"),
    Rule("risk_decision_enum", "risk_decision", "one of " + ", ".join(RISK_DECISIONS)),
    Rule("text_length", "carrier, os, app_version, device_model, server_version, "
         "merchant_category", "at most 128 bytes (UTF-8)"),
)
RULE_NAMES: frozenset[str] = frozenset(r.name for r in RULES)


def contract_markdown() -> str:
    """The contract as a Markdown table (used by docs and ``tapshield contract``)."""
    lines = ["| column | required | type | values / meaning |", "|---|---|---|---|"]
    for c in WIRE_COLUMNS:
        lines.append(
            f"| {c.name} | {'yes' if c.required else 'no'} | {c.kind} | {c.description} |"
        )
    lines += ["", "| rule | column | meaning |", "|---|---|---|"]
    for r in RULES:
        lines.append(f"| `{r.name}` | {r.column} | {r.text} |")
    return "\n".join(lines)
