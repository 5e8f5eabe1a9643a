"""The authorisation-request and label contracts (version 1.0), and two public layouts.

A **request** is one authorisation attempt as the risk engine sees it, known
before the answer: ``event_id``, ``ts``, ``amount`` and, when the lender has
them, entity ids, the device and app context, and any numeric ``f_<name>``
columns it already computes (a vendor's device-risk score, bureau fields).
A **label** says, later, whether a request was fraud and *when that became
known* (``reported_at``): features and training use a label only from then on.

Two public data sets have their own layouts; :func:`read_requests` and
:func:`read_labels` recognise them by their header and map them onto the
contract (documented in docs/risk.md), so the commands run on them directly:

* ``card-fraud`` (``Time, V1..V28, Amount, Class``): ``event_id`` is ``r<row>``
  (1-based data row), ``ts`` is ``CARD_ORIGIN`` plus ``Time`` seconds,
  ``V1..V28`` become ``f_v1..f_v28``; ``Class`` is the label.
* ``payment-fraud`` (``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID,
  TX_AMOUNT, ...``): ``user_id`` ``c<CUSTOMER_ID>``, ``merchant_id``
  ``t<TERMINAL_ID>``, ``TX_DATETIME`` read in the local zone; ``TX_FRAUD`` is
  the label. ``TX_FRAUD_SCENARIO`` (known only after the fact) and the
  redundant ``TX_TIME_*`` columns are dropped, never inputs.

Labels taken from such a file are reported ``label_delay`` after the payment
(default 7 days: a chargeback or an investigation, not the instant of the tap).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from tapshield.errors import ContractError
from tapshield.tabular import Field, TableContract
from tapshield.timeutil import TS_DTYPE

CONTRACT_VERSION = "1.0"
FEATURE_PREFIX = "f_"
_FEATURE_NAME = re.compile(r"^f_[a-z0-9_]{1,60}$")
_ID = r"^.{1,128}$"

BASE_FIELDS: tuple[Field, ...] = (
    Field("event_id", "string", required=True, pattern=_ID,
          description="unique per attempt (the same id as in the payment events)"),
    Field("ts", "timestamp", required=True,
          description="when the attempt reached the engine (RFC 3339 with offset, or epoch ms)"),
    Field("amount", "money", required=True, minimum=0,
          description="decimal yuan, >= 0, at most 2 decimals (integer fen inside)"),
    Field("payment_id", "string", pattern=_ID, description="the customer's tap (retries share it)"),
    Field("user_id", "string", pattern=_ID, description="customer account"),
    Field("device_id", "string", pattern=_ID, description="customer device"),
    Field("merchant_id", "string", pattern=_ID, description="merchant or terminal"),
    Field("channel", "string", description="`nfc`, `qr`, `debit_card`, `wallet`, ..."),
    Field("region", "string", description="ISO 3166-2 subdivision, e.g. `CN-GD`"),
    Field("carrier", "string", description="mobile carrier"),
    Field("os", "string", description="device operating system"),
    Field("app_version", "string", description="wallet app version"),
    Field("device_model", "string", description="device model"),
    Field("merchant_category", "string", description="merchant category code (text)"),
)
CONTEXT_COLUMNS: tuple[str, ...] = ("payment_id", "user_id", "device_id", "merchant_id",
                                    "channel", "region", "carrier", "os", "app_version",
                                    "device_model", "merchant_category")
"""Optional text columns of a request (the ids and the segments rules and the guard use)."""

LABELS = TableContract(
    name="labels",
    version=CONTRACT_VERSION,
    fields=(
        Field("event_id", "string", required=True, pattern=_ID,
              description="the request the label is about"),
        Field("label", "enum", required=True, values=("0", "1"),
              description="`1` fraud, `0` genuine"),
        Field("reported_at", "timestamp", required=True,
              description="when the label became known (chargeback, customer report, "
                          "investigation); RFC 3339 with offset or epoch ms"),
    ),
)


def requests_contract(feature_columns: tuple[str, ...] = ()) -> TableContract:
    """The request contract with the lender's own ``f_`` columns added."""
    extra = tuple(Field(c, "number", description="lender-supplied numeric feature")
                  for c in feature_columns)
    return TableContract(name="requests", version=CONTRACT_VERSION, fields=BASE_FIELDS + extra)


REQUESTS = requests_contract(("f_<name>",))
"""The contract as documented (one ``f_<name>`` row standing for any number)."""

CARD_ORIGIN = datetime(2013, 9, 1, tzinfo=UTC) - timedelta(hours=8)
"""``Time = 0`` of the card-fraud layout: local midnight at UTC+8 (so its hour of
day is ``Time`` modulo a day, as in the source)."""
LAYOUTS: dict[str, frozenset[str]] = {
    "card-fraud": frozenset({"Time", "V1", "V28", "Amount"}),
    "payment-fraud": frozenset({"TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID",
                                "TERMINAL_ID", "TX_AMOUNT"}),
}
LABEL_COLUMN = {"card-fraud": "Class", "payment-fraud": "TX_FRAUD"}
DEFAULT_LABEL_DELAY = timedelta(days=7)


@dataclass(slots=True)
class Requests:
    """Validated requests: canonical frame, rejects and what was recognised."""

    frame: pl.DataFrame
    """``event_id, ts (UTC us), amount_fen``, context columns, ``f_`` columns."""
    rejects: pl.DataFrame
    layout: str
    feature_columns: tuple[str, ...]
    ignored_columns: list[str]


def _read_raw(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise ContractError(f"{path}: no such file")
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".csv"):
            raw = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
        elif name.endswith(".parquet"):
            raw = pl.read_parquet(path)
            raw = raw.with_columns(pl.all().cast(pl.String))
        elif name.endswith((".jsonl", ".ndjson")):
            raw = pl.read_ndjson(path, infer_schema_length=None)
            raw = raw.with_columns(pl.all().cast(pl.String))
        else:
            raise ContractError(f"{path.name}: unknown file type; use .csv, .jsonl or .parquet")
    except pl.exceptions.PolarsError as exc:
        raise ContractError(f"{path.name}: unreadable ({exc})") from exc
    if raw.height == 0 and raw.width == 0:
        raise ContractError(f"{path.name}: empty file")
    return raw.rename({c: c.strip() for c in raw.columns})


def detect_layout(columns: list[str]) -> str:
    cols = set(columns)
    for name, needed in LAYOUTS.items():
        if needed <= cols:
            return name
    return "contract"


def _from_layout(raw: pl.DataFrame, layout: str) -> pl.DataFrame:
    """Map a public layout onto the request contract's wire columns (text)."""
    if layout == "card-fraud":
        origin_ms = int(CARD_ORIGIN.timestamp() * 1000)
        vs = [c for c in raw.columns if re.fullmatch(r"V\d+", c)]
        return raw.with_row_index("_row", offset=1).select(
            pl.col("_row"),
            pl.format("r{}", pl.col("_row")).alias("event_id"),
            (pl.col("Time").cast(pl.Float64, strict=False) * 1000 + origin_ms)
            .round(0).cast(pl.Int64, strict=False).cast(pl.String).alias("ts"),
            pl.col("Amount").alias("amount"),
            *[pl.col(c).alias(f"f_{c.lower()}") for c in vs],
        )
    if layout == "payment-fraud":
        return raw.with_row_index("_row", offset=1).select(
            pl.col("_row"),
            pl.col("TRANSACTION_ID").alias("event_id"),
            (pl.col("TX_DATETIME").str.strip_chars() + "+08:00").alias("ts"),
            pl.format("c{}", pl.col("CUSTOMER_ID")).alias("user_id"),
            pl.format("t{}", pl.col("TERMINAL_ID")).alias("merchant_id"),
            pl.col("TX_AMOUNT").alias("amount"),
        )
    return raw


def _two_decimals(raw: pl.DataFrame) -> pl.DataFrame:
    """Public data prints amounts as floats (``146.0``, ``2.9999999``): keep those
    exact to the fen as exact; anything else stays as written and is rejected."""
    a = pl.col("amount")
    num = a.cast(pl.Float64, strict=False)
    fen = (num * 100).round(0)
    exact = (num * 100 - fen).abs() < 1e-6
    fixed = pl.format("{}.{}", (fen // 100).cast(pl.Int64),
                      (fen % 100).cast(pl.Int64).cast(pl.String).str.zfill(2))
    return raw.with_columns(pl.when(num.is_not_null() & exact & (num >= 0)).then(fixed)
                            .otherwise(a).alias("amount"))


def read_requests(path: Path | str, *, layout: str = "auto") -> Requests:
    """Read and validate a requests file (CSV[.gz], JSONL, Parquet)."""
    p = Path(path)
    raw = _read_raw(p)
    found = detect_layout(raw.columns) if layout == "auto" else layout
    if found not in ("contract", *LAYOUTS):
        raise ContractError(f"unknown layout {layout!r} (auto, contract, {', '.join(LAYOUTS)})")
    wire = _from_layout(raw, found)
    if found != "contract":
        wire = _two_decimals(wire)
    feats = tuple(sorted(c for c in wire.columns if c.startswith(FEATURE_PREFIX)))
    bad = [c for c in feats if not _FEATURE_NAME.match(c)]
    if bad:
        raise ContractError(f"{p.name}: feature column {bad[0]!r} must match f_[a-z0-9_]+")
    contract = requests_contract(feats)
    result = contract.validate(wire, source=p.name)
    frame = result.valid.rename({"amount": "amount_fen"})
    rejects = result.rejects
    dup = frame["event_id"].is_duplicated() & ~frame["event_id"].is_first_distinct()
    if dup.any():
        rows = (pl.Series(range(1, wire.height + 1)) if "_row" not in wire.columns else
                wire["_row"]).filter(~pl.Series(_bad_rows(wire, rejects))).filter(dup)
        extra = frame.filter(dup).select(
            pl.Series("row", rows, dtype=pl.Int64),
            pl.lit("event_id: duplicate").alias("errors"),
            *[pl.col(c).cast(pl.String) for c in ("event_id",)])
        rejects = pl.concat([rejects, extra], how="diagonal_relaxed").sort("row")
        frame = frame.filter(~dup)
    return Requests(frame=frame, rejects=rejects, layout=found, feature_columns=feats,
                    ignored_columns=[c for c in result.ignored_columns if c != "_row"])


def _bad_rows(wire: pl.DataFrame, rejects: pl.DataFrame) -> list[bool]:
    """Which wire rows were rejected (by their 1-based row number)."""
    rows = wire["_row"] if "_row" in wire.columns else pl.Series(range(1, wire.height + 1))
    return rows.is_in(rejects["row"].to_list()).to_list()


def read_labels(path: Path | str, *, layout: str = "auto",
                label_delay: timedelta = DEFAULT_LABEL_DELAY,
                requests: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read labels: a labels-contract file, or a public layout's label column.

    For a public layout ``reported_at`` is the request's ``ts`` plus
    ``label_delay``. Returns ``(labels, rejects)``; labels have ``event_id``,
    ``label`` (Int8) and ``reported_at`` (UTC us).
    """
    p = Path(path)
    raw = _read_raw(p)
    found = detect_layout(raw.columns) if layout == "auto" else layout
    if found in LAYOUTS:
        col = LABEL_COLUMN[found]
        if col not in raw.columns:
            raise ContractError(f"{p.name}: the {found} layout has no {col} column here")
        req = read_requests(p, layout=found).frame if requests is None else requests
        wire = _from_layout(raw, found).select("_row", "event_id").with_columns(
            raw[col].str.strip_chars().alias("label"))
        joined = wire.join(req.select("event_id", "ts"), on="event_id", how="left")
        wire = joined.select(
            "_row", "event_id", "label",
            (pl.col("ts").dt.epoch("ms") + int(label_delay.total_seconds() * 1000))
            .cast(pl.String).alias("reported_at"))
    else:
        wire = raw
    result = LABELS.validate(wire, source=p.name)
    valid = result.valid.with_columns(pl.col("label").cast(pl.String).cast(pl.Int8))
    return valid, result.rejects


def empty_labels() -> pl.DataFrame:
    return pl.DataFrame(schema={"event_id": pl.String, "label": pl.Int8,
                                "reported_at": TS_DTYPE})
