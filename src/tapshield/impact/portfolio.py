"""The portfolio contract: the loan book an outage is measured against.

One row per **facility** (a loan tape), CSV or JSONL. Borrower-level columns
(merchants, margin, CFADS, cash, reserve, undrawn lines, covenant) repeat on
each facility row of the same borrower and must agree; a borrower whose rows
disagree is rejected rather than guessed. Money is decimal yuan on the wire
(integer fen inside), shares and rates are decimals (``pl.Decimal``, never
float). Repayment schedules are either given (an optional schedule file: one
row per due date) or generated from the terms on the facility row
(instalment + frequency + next due date, or rate + remaining term for a level
annuity).

Facility types:

* ``term``: amortising loan, fixed instalments;
* ``revolving``: credit line; ``limit`` required, the instalment is the
  interest or minimum payment;
* ``revenue_based``: repaid by a ``holdback_share`` of daily sales taken at
  settlement, until ``repayment_cap`` (total payback) is reached;
* ``receivables``: advances of ``advance_rate`` x ``eligible_receivables``
  (the borrowing base).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import polars as pl

from tapshield.errors import ContractError, RowError
from tapshield.impact.exact import PPM, decimal_to_ppm, div_half_even
from tapshield.tabular import ROW, Field, RowRule, TableContract, TableResult

FACILITY_TYPES: tuple[str, ...] = ("term", "revolving", "revenue_based", "receivables")
FREQUENCIES: tuple[str, ...] = ("monthly", "weekly", "daily")

_ID = r"^[^\s;]([^;]{0,126}[^\s;])?$"
_ID_LIST = r"^[^\s;]{1,128}(;[^\s;]{1,128})*$"

BORROWER_FIELDS: tuple[str, ...] = (
    "merchant_ids", "industry", "region", "contribution_margin", "cfads", "cash", "reserve",
    "undrawn", "covenant_min_dscr",
)
"""Columns that describe the borrower, not the facility: equal on all its rows."""


def _shared_merchant() -> pl.Expr:
    """True on rows listing a merchant that another borrower lists too."""
    m = pl.col("merchant_ids").str.split(";")
    pairs = pl.struct(
        m.explode().alias("m"), pl.col("borrower_id").repeat_by(m.list.len()).explode().alias("b")
    ).unique()
    shared = pairs.struct.field("m").filter(pairs.struct.field("m").is_duplicated()).implode()
    return m.list.set_intersection(shared).list.len() > 0


def _same_per_borrower(col: str) -> RowRule:
    return RowRule(
        "borrower_mismatch", col,
        f"`{col}` is a borrower figure: all facility rows of a borrower repeat the same value",
        lambda: pl.col(col).n_unique().over("borrower_id") > 1,
    )


PORTFOLIO = TableContract(
    name="portfolio",
    version="1.0",
    fields=(
        Field("borrower_id", "string", required=True, pattern=_ID,
              description="the borrower (an enterprise or a sole trader)"),
        Field("facility_id", "string", required=True, pattern=_ID,
              description="the facility (loan, line, advance); unique in the file"),
        Field("merchant_ids", "string", required=True, pattern=_ID_LIST,
              description="merchant ids whose sales fund the repayments, `;`-separated "
              "(a merchant belongs to one borrower)"),
        Field("facility_type", "enum", required=True, values=FACILITY_TYPES,
              description="term, revolving, revenue_based or receivables"),
        Field("industry", "string", default="unknown",
              description="industry for the portfolio breakdown (e.g. `restaurants`)"),
        Field("region", "string", required=True, pattern=r"^[A-Z]{2}-[A-Z0-9]{1,3}$",
              description="borrower's ISO 3166-2 region, e.g. `CN-GD`"),
        Field("outstanding", "money", required=True,
              description="amount owed now, yuan (revenue_based: payback still to collect)"),
        Field("limit", "money", description="credit limit, yuan (revolving, receivables)"),
        Field("instalment", "money",
              description="scheduled payment per `frequency` period, yuan (revenue_based: the "
              "expected remittance, optional)"),
        Field("frequency", "enum", values=FREQUENCIES, default="monthly",
              description="how often `instalment` falls due (default monthly)"),
        Field("next_due_date", "date",
              description="next due date, YYYY-MM-DD (needed with an instalment or terms)"),
        Field("annual_rate", "decimal", minimum=0, maximum=1,
              description="nominal annual interest rate, e.g. 0.0650: generates the instalment "
              "when it is empty (term: level annuity; revolving/receivables: monthly interest)"),
        Field("remaining_term_months", "integer", minimum=1, maximum=600,
              description="instalments left on a term loan"),
        Field("holdback_share", "decimal", minimum=0, maximum=1,
              description="revenue_based: share of daily sales held back for repayment"),
        Field("repayment_cap", "money",
              description="revenue_based: total payback cap, yuan (>= outstanding)"),
        Field("advance_rate", "decimal", minimum=0, maximum=1,
              description="receivables: share of eligible receivables advanced"),
        Field("eligible_receivables", "money",
              description="receivables: eligible receivables in the borrowing base, yuan"),
        Field("channels", "string", pattern=_ID_LIST,
              description="payment channels the facility collects from (revenue_based) or "
              "finances (receivables), `;`-separated; empty = all channels"),
        Field("contribution_margin", "decimal", required=True, minimum=0, maximum=1,
              description="share of a yuan of sales left after variable costs, e.g. 0.30"),
        Field("cfads", "money", required=True,
              description="cash flow available for debt service per month, yuan"),
        Field("cash", "money", default=0, description="unrestricted cash, yuan"),
        Field("reserve", "money", default=0, description="debt-service reserve, yuan"),
        Field("undrawn", "money", default=0,
              description="committed undrawn lines the borrower can draw, yuan"),
        Field("covenant_min_dscr", "decimal", minimum=1, maximum=5, scale=4,
              description="covenant minimum DSCR, e.g. 1.20 (empty: no DSCR covenant)"),
    ),
    rules=(
        RowRule("duplicate", "facility_id", "facility_id is unique in the file",
                lambda: pl.col("facility_id").is_duplicated()),
        *(_same_per_borrower(c) for c in BORROWER_FIELDS),
        RowRule("merchant_shared", "merchant_ids",
                "a merchant's sales fund one borrower: no merchant id under two borrowers",
                _shared_merchant),
        RowRule("term_schedule", "instalment",
                "a term loan needs an instalment, or annual_rate and remaining_term_months",
                lambda: (pl.col("facility_type") == "term") & pl.col("instalment").is_null()
                & (pl.col("annual_rate").is_null() | pl.col("remaining_term_months").is_null())),
        RowRule("due_date_needed", "next_due_date",
                "an instalment (given or generated from terms) needs next_due_date",
                lambda: (pl.col("instalment").is_not_null() | pl.col("annual_rate").is_not_null())
                & pl.col("next_due_date").is_null()),
        RowRule("limit_needed", "limit", "a revolving facility needs a limit",
                lambda: (pl.col("facility_type") == "revolving") & pl.col("limit").is_null()),
        RowRule("holdback_needed", "holdback_share",
                "a revenue_based facility needs a holdback_share above 0",
                lambda: (pl.col("facility_type") == "revenue_based")
                & (pl.col("holdback_share").is_null() | (pl.col("holdback_share") <= 0))),
        RowRule("cap_below_outstanding", "repayment_cap",
                "repayment_cap must not be below outstanding",
                lambda: pl.col("repayment_cap") < pl.col("outstanding")),
        RowRule("advance_needed", "advance_rate",
                "a receivables facility needs an advance_rate above 0",
                lambda: (pl.col("facility_type") == "receivables")
                & (pl.col("advance_rate").is_null() | (pl.col("advance_rate") <= 0))),
        RowRule("receivables_needed", "eligible_receivables",
                "a receivables facility needs eligible_receivables",
                lambda: (pl.col("facility_type") == "receivables")
                & pl.col("eligible_receivables").is_null()),
    ),
)

SCHEDULE = TableContract(
    name="repayment schedule",
    version="1.0",
    fields=(
        Field("facility_id", "string", required=True, pattern=_ID,
              description="a facility of the portfolio"),
        Field("due_date", "date", required=True, description="YYYY-MM-DD"),
        Field("amount", "money", required=True, description="amount due, yuan"),
    ),
    rules=(
        RowRule("duplicate", "due_date", "one row per facility and due date",
                lambda: pl.struct("facility_id", "due_date").is_duplicated()),
    ),
)

_PORTFOLIO_READ = TableContract(
    name=PORTFOLIO.name,
    version=PORTFOLIO.version,
    fields=(*PORTFOLIO.fields, Field(ROW, "integer")),
    rules=PORTFOLIO.rules,
)
"""The contract plus the input row number, kept on valid rows so rows dropped
later (a borrower with a rejected facility) can still be named by row."""

MONEY_FIELDS: tuple[str, ...] = tuple(f.name for f in PORTFOLIO.fields if f.kind == "money")


@dataclass(slots=True)
class Portfolio:
    """A validated loan book, ready for the stress model.

    ``facilities``: one row per facility (money in fen, shares in ppm, the
    instalment filled from the terms where it was empty). ``borrowers``: one
    row per borrower. ``merchants``: ``(merchant_id, borrower_id)``.
    ``schedule``: explicit due dates (``facility_id, due_date, amount_fen``)
    that replace the generated ones for their facilities.
    """

    facilities: pl.DataFrame
    borrowers: pl.DataFrame
    merchants: pl.DataFrame
    schedule: pl.DataFrame | None = None
    rejects: pl.DataFrame = field(default_factory=pl.DataFrame)
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.rejects.height


def read_portfolio(
    source: Path | str | pl.DataFrame, *, schedule: Path | str | pl.DataFrame | None = None
) -> Portfolio:
    """Validate a portfolio (file, wire frame of text, or a generated canonical frame).

    Rejected rows are kept on :attr:`Portfolio.rejects` with the row, column
    and rule; a borrower with any rejected facility is dropped whole (its DSCR
    would be wrong without it) and its other rows are rejected with the rule
    ``borrower_incomplete``.
    """
    result = _read_table(_PORTFOLIO_READ, source)
    valid, rejects = result.valid, result.rejects.drop(ROW)
    bad_borrowers = rejects.filter(pl.col("borrower_id").is_not_null())["borrower_id"].unique()
    if bad_borrowers.len():
        dropped = valid.filter(pl.col("borrower_id").is_in(bad_borrowers.implode()))
        if dropped.height:
            rejects = pl.concat([rejects, _as_rejects(dropped, "borrower_id: borrower_incomplete")])
            valid = valid.filter(~pl.col("borrower_id").is_in(bad_borrowers.implode()))
    rejects = rejects.sort("row")
    sched_frame: pl.DataFrame | None = None
    if schedule is not None:
        sres = _read_table(SCHEDULE, schedule)
        if sres.rejects.height:
            shown = "; ".join(str(e) for e in sres.errors(limit=3))
            raise ContractError(f"repayment schedule: {sres.rejects.height} bad row(s): {shown}")
        unknown = sres.valid.filter(~pl.col("facility_id").is_in(valid["facility_id"].implode()))
        if unknown.height:
            raise ContractError(
                f"repayment schedule: facility {unknown['facility_id'][0]!r} is not in the "
                "portfolio"
            )
        sched_frame = sres.valid.rename({"amount": "amount_fen"})
    facilities = _normalise(valid)
    borrowers = (
        facilities.group_by("borrower_id", maintain_order=True)
        .agg(
            *[pl.col(c).first() for c in BORROWER_FIELDS if c != "merchant_ids"],
            pl.col("merchant_ids").first(),
            pl.col("outstanding").sum().alias("outstanding"),
            pl.len().alias("facilities"),
        )
        .sort("borrower_id")
    )
    merchants = (
        borrowers.select("borrower_id", pl.col("merchant_ids").str.split(";").alias("merchant_id"))
        .explode("merchant_id")
        .select("merchant_id", "borrower_id")
    )
    errors = TableResult(valid, rejects).errors(limit=20)
    facilities = facilities.drop(ROW)
    return Portfolio(facilities, borrowers, merchants, sched_frame, rejects, errors)


def _read_table(contract: TableContract, source: Path | str | pl.DataFrame) -> TableResult:
    if isinstance(source, pl.DataFrame):
        wire = _money_text(source) if _is_canonical(source, contract) else source
        return contract.validate(wire.drop(ROW, strict=False), source=contract.name)
    return contract.read(source)


def _is_canonical(frame: pl.DataFrame, contract: TableContract) -> bool:
    money = [f.name for f in contract.fields if f.kind == "money" and f.name in frame.columns]
    return any(frame.schema[c].is_integer() for c in money)


def _fen_text(col: pl.Expr) -> pl.Expr:
    return pl.concat_str([
        (col // 100).cast(pl.String), pl.lit("."), (col % 100).cast(pl.String).str.zfill(2)
    ])


def _money_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Money columns of a canonical frame as contract text; the rest cast as they are."""
    return frame.with_columns(
        _fen_text(pl.col(c)).alias(c) for c in frame.columns
        if (c in MONEY_FIELDS or c == "amount") and frame.schema[c].is_integer()
    )


def to_wire(frame: pl.DataFrame) -> pl.DataFrame:
    """A canonical portfolio or schedule frame (money in fen) as contract text."""
    out = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in MONEY_FIELDS or name == "amount":
            out.append(_fen_text(col).alias(name))
        elif isinstance(dtype, pl.Decimal):
            out.append(col.cast(pl.String).str.replace(r"(\.\d*?)0+$", "$1").str.replace(r"\.$", "")
                       .alias(name))
        else:
            out.append(col.cast(pl.String).alias(name))
    return frame.select(out)


def write_portfolio(frame: pl.DataFrame, path: Path | str) -> Path:
    """Write a canonical portfolio (or schedule) as CSV or JSONL in the wire contract."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    wire = to_wire(frame)
    name = p.name.lower()
    if name.endswith(".csv"):
        wire.write_csv(p)
    elif name.endswith((".jsonl", ".ndjson")):
        wire.write_ndjson(p)
    else:
        raise ContractError(f"{p.name}: write the portfolio as .csv or .jsonl")
    return p


def _as_rejects(frame: pl.DataFrame, error: str) -> pl.DataFrame:
    return to_wire(frame.select(PORTFOLIO.names)).select(
        frame[ROW].cast(pl.Int64).alias("row"), pl.lit(error).alias("errors"), *PORTFOLIO.names
    )


# -- normalisation -----------------------------------------------------------


def _normalise(valid: pl.DataFrame) -> pl.DataFrame:
    """Fill generated instalments and express shares as integer ppm."""
    f = valid.with_columns(
        decimal_to_ppm("contribution_margin").alias("margin_ppm"),
        decimal_to_ppm("holdback_share").alias("holdback_ppm"),
        decimal_to_ppm("advance_rate").alias("advance_ppm"),
        decimal_to_ppm("annual_rate").alias("rate_ppm"),
        (pl.col("covenant_min_dscr").cast(pl.Decimal(38, 4)) * 10_000).cast(pl.Int64)
        .alias("covenant_e4"),
        pl.col("channels").str.split(";").alias("channel_list"),
    )
    # Interest-only instalment for lines (revolving, receivables): monthly interest.
    interest = div_half_even(
        pl.col("outstanding").cast(pl.Int128) * pl.col("rate_ppm"), 12 * PPM
    )
    f = f.with_columns(
        pl.when(pl.col("instalment").is_null() & pl.col("rate_ppm").is_not_null()
                & pl.col("facility_type").is_in(["revolving", "receivables"]))
        .then(interest).otherwise(pl.col("instalment")).alias("instalment")
    )
    need = f.filter(
        (pl.col("facility_type") == "term") & pl.col("instalment").is_null()
        & pl.col("rate_ppm").is_not_null() & pl.col("remaining_term_months").is_not_null()
    )
    if need.height:
        values = [
            annuity_fen(o, r, n)
            for o, r, n in need.select("outstanding", "rate_ppm", "remaining_term_months").rows()
        ]
        gen = pl.DataFrame({"facility_id": need["facility_id"], "_gen": values},
                           schema={"facility_id": pl.String(), "_gen": pl.Int64()})
        f = f.join(gen, on="facility_id", how="left").with_columns(
            pl.coalesce("instalment", "_gen").alias("instalment")
        ).drop("_gen")
    return f


def annuity_fen(outstanding_fen: int, rate_ppm: int, months: int) -> int:
    """Level monthly instalment of an annuity, half-even to the fen.

    ``P * i / (1 - (1 + i) ** -n)`` with ``i`` the annual rate / 12, computed in
    34-digit Decimal; a zero rate gives ``P / n``.
    """
    with localcontext() as ctx:
        ctx.prec = 34
        p = Decimal(outstanding_fen)
        n = int(months)
        i = Decimal(rate_ppm) / PPM / 12
        value = p / n if i == 0 else p * i / (1 - (1 + i) ** -n)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# -- schedules ------------------------------------------------------------


def due_schedule(portfolio: Portfolio, start: date, end: date) -> pl.DataFrame:
    """Every payment due in ``[start, end]``.

    Columns ``facility_id, borrower_id, due_date, amount_fen, paid``. Generated
    from instalment + frequency + next due date, backwards as well as forwards
    (a period's debt service includes the instalments already paid in it); a
    generated date before ``next_due_date`` is ``paid``. Term loans stop after
    ``remaining_term_months``. Explicit schedule rows replace the generated ones
    of their facility; whether they are paid is unknown (``null``): the caller
    treats the past as paid.
    """
    f = portfolio.facilities.filter(
        pl.col("instalment").is_not_null() & pl.col("next_due_date").is_not_null()
        & (pl.col("instalment") > 0)
    )
    if portfolio.schedule is not None:
        f = f.filter(~pl.col("facility_id").is_in(portfolio.schedule["facility_id"].implode()))
    span_days = (end - start).days + 1
    parts: list[pl.DataFrame] = []
    for freq, step_days in (("daily", 1), ("weekly", 7)):
        sub = f.filter(pl.col("frequency") == freq)
        if sub.height:
            n_max = span_days // step_days + 2
            gap = (pl.lit(start) - pl.col("next_due_date")).dt.total_days()
            sub = sub.with_columns(
                # first due date on or after `start` on the facility's own step
                # (ceil of a possibly negative number of steps)
                (pl.col("next_due_date") + pl.duration(
                    days=-((-gap) // step_days) * step_days)).alias("_first"),
                pl.int_ranges(0, n_max).alias("_k"),
            ).explode("_k").with_columns(
                (pl.col("_first") + pl.duration(days=pl.col("_k") * step_days)).alias("due_date")
            )
            parts.append(sub)
    sub = f.filter(pl.col("frequency") == "monthly")
    if sub.height:
        months = (end.year - start.year) * 12 + end.month - start.month + 2
        first_k = (
            (start.year - pl.col("next_due_date").dt.year()) * 12
            + (start.month - pl.col("next_due_date").dt.month()) - 1
        )
        # k months after the next due date, on the same day of the month (or the
        # month's last day): integer month arithmetic, no per-row date parsing
        nd = pl.col("next_due_date")
        total = nd.dt.year() * 12 + nd.dt.month() - 1 + pl.col("_k")
        month_start = pl.date(total // 12, total % 12 + 1, 1)
        sub = sub.with_columns(
            pl.int_ranges(first_k, first_k + months + 1).alias("_k")
        ).explode("_k").with_columns(
            (month_start + pl.duration(days=pl.min_horizontal(
                nd.dt.day(), month_start.dt.month_end().dt.day()) - 1)).alias("due_date")
        )
        parts.append(sub)
    cols = ["facility_id", "borrower_id", "due_date", "amount_fen", "paid"]
    frames = [
        p.with_columns(
            pl.col("instalment").alias("amount_fen"),
            (pl.col("due_date") < pl.col("next_due_date")).alias("paid"),
            # instalments left: the term's own count (monthly), else unlimited
            pl.when(pl.col("facility_type") == "term")
            .then(pl.col("remaining_term_months")).alias("_left"),
            pl.col("_k").alias("_n"),
        ).filter(
            (pl.col("due_date") >= pl.lit(start)) & (pl.col("due_date") <= pl.lit(end))
            & (pl.col("_left").is_null() | (pl.col("frequency") != "monthly")
               | (pl.col("_n") < pl.col("_left")))
        ).select(cols)
        for p in parts
    ]
    if portfolio.schedule is not None:
        owners = portfolio.facilities.select("facility_id", "borrower_id")
        frames.append(
            portfolio.schedule.join(owners, on="facility_id", how="inner")
            .filter((pl.col("due_date") >= pl.lit(start)) & (pl.col("due_date") <= pl.lit(end)))
            .with_columns(pl.lit(None, dtype=pl.Boolean).alias("paid"))
            .select(cols)
        )
    if not frames:
        return pl.DataFrame(schema={"facility_id": pl.String(), "borrower_id": pl.String(),
                                    "due_date": pl.Date(), "amount_fen": pl.Int64(),
                                    "paid": pl.Boolean()})
    return pl.concat(frames).sort("borrower_id", "due_date", "facility_id")

