"""Operational, not credit: label each borrower and say what the lender should do.

The test is a counterfactual one. The same projection is run twice, with and
without the outage's lost cash flow. A shortfall that appears only with the
outage (a missed due date, a covenant breach, a holdback shortfall, an
over-advance) was *caused* by it: it is labelled ``operational`` and must not
become delinquency or an event of default. A borrower who misses or breaches
even without the outage has a credit problem the outage did not create:
``credit``, and it goes to credit review as usual.

Recommended actions (each with the figures behind it):

* ``grace_period``: an operational miss on a due date before recovery (end
  of the incident + recovery tail + settlement lag): defer it to the recovery
  date, no late fee, no days past due;
* ``bridge_line``: the operational gap still open at or after recovery, at
  the upper band of the lost cash flow, plus the configured buffer;
* ``re_age``: only if the stressed DSCR of the period after recovery stays
  below 1.0 (when deferral alone cannot cure it) and it would not be without
  the outage;
* ``covenant_waiver``: a DSCR breach caused by the outage;
* ``holdback_extension``: revenue-based holdback not collected because sales
  failed: extend the collection period, no delinquency;
* ``over_advance_allowance``: a receivables over-advance caused by the drop
  of the borrowing base: tolerate it until receivables rebuild;
* ``credit_review``: a pre-existing credit problem the outage made visible.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from tapshield.events.write import fen_to_text

STATUSES: tuple[str, ...] = (
    "operational_stress", "pre_existing_credit", "affected", "not_affected",
)


def e4_expr(col: str) -> pl.Expr:
    """A ratio held in 1/10,000 as text (``11975`` -> ``"1.1975"``)."""
    c = pl.col(col)
    return pl.concat_str([(c // 10_000).cast(pl.String), pl.lit("."),
                          (c % 10_000).cast(pl.String).str.zfill(4)])


def label_borrowers(b: pl.DataFrame, day0: date) -> pl.DataFrame:
    """Add ``status``, ``label``, ``delinquency`` and ``actions`` to the stress frame."""
    affected = pl.col("lost_net_fen") > 0
    miss_op = pl.col("first_missed_day").is_not_null() & (
        pl.col("first_missed_base_day").is_null()
        | (pl.col("first_missed_base_day") > pl.col("first_missed_day"))
    )
    base_problem = (
        pl.col("first_missed_base_day").is_not_null() | pl.col("breach_before")
        | pl.col("breach_next_before") | pl.col("arrears_before")
    )
    cov_op = (pl.col("breach_after") & ~pl.col("breach_before")) | (
        pl.col("breach_next_after") & ~pl.col("breach_next_before")
    )
    rbf = pl.col("rbf_shortfall_fen") > 0
    over = pl.col("over_advance_after_fen") > pl.col("over_advance_before_fen")
    new_over = (pl.col("over_advance_before_fen") == 0) & (pl.col("over_advance_after_fen") > 0)
    gap = pl.col("operational_gap_fen").fill_null(0) > 0
    reage = pl.col("_next_below_reage") & ~pl.col("_next_base_below_reage")
    # Stress: the outage makes the borrower miss, breach, run out of cash or exceed
    # its borrowing base. A holdback shortfall alone only lengthens a revenue-based
    # advance: operational, but not stress.
    stress = affected & (miss_op.fill_null(False) | cov_op | gap | new_over | reage)
    operational = affected & (stress | rbf | over)
    b = b.with_columns(
        pl.when(~affected).then(pl.lit("not_affected"))
        .when(base_problem).then(pl.lit("pre_existing_credit"))
        .when(stress).then(pl.lit("operational_stress"))
        .otherwise(pl.lit("affected")).cast(pl.Enum(list(STATUSES))).alias("status"),
        pl.when(operational & ~base_problem).then(pl.lit("operational"))
        .when(affected & base_problem).then(pl.lit("credit"))
        .alias("label"),
        cov_op.alias("covenant_breach_caused"),
    )
    b = b.with_columns(
        pl.when(pl.col("label") == "operational")
        .then(pl.lit("suppress: payment shortfall caused by the outage, not credit; "
                     "do not report days past due"))
        .when(pl.col("label") == "credit")
        .then(pl.lit("normal: the borrower misses or breaches without the outage too"))
        .alias("delinquency"),
    )
    return _with_actions(b, day0, operational & ~base_problem)


def _day(col: str, day0: date) -> pl.Expr:
    return pl.lit(day0) + pl.duration(days=pl.col(col))


ACTION_SCHEMA: dict[str, pl.DataType] = {
    "action": pl.String(), "amount_fen": pl.Int64(), "days": pl.Int64(), "until": pl.Date(),
    "reason": pl.String(),
}


def _with_actions(b: pl.DataFrame, day0: date, operational: pl.Expr) -> pl.DataFrame:
    """Attach ``actions`` (a list of structs, in the order of the module doc).

    Built as a long table (one row per borrower and action) and grouped back:
    far faster than a list of conditional structs per row.
    """
    b = b.with_columns(operational.alias("_operational"))
    parts = []
    for rank, (name, cond, fields) in enumerate(_action_specs(day0)):
        part = b.filter(cond).select(
            "borrower_id", pl.lit(rank).alias("_rank"),
            pl.struct(
                pl.lit(name).alias("action"),
                *[(fields.get(k, pl.lit(None)).cast(t)).alias(k)
                  for k, t in ACTION_SCHEMA.items() if k != "action"],
            ).alias("_a"),
        )
        parts.append(part)
    long = pl.concat(parts)
    grouped = long.sort("borrower_id", "_rank").group_by("borrower_id").agg(
        pl.col("_a").alias("actions"))
    out = b.join(grouped, on="borrower_id", how="left").drop("_operational")
    empty = pl.lit([], dtype=pl.List(pl.Struct(ACTION_SCHEMA)))
    return out.with_columns(pl.col("actions").fill_null(empty))


def _action_specs(day0: date) -> list[tuple[str, pl.Expr, dict[str, pl.Expr]]]:
    operational = pl.col("_operational")
    money = fen_to_text
    first_miss_date = _day("first_operational_miss_day", day0)
    grace_days = (pl.col("recovery_date") - first_miss_date).dt.total_days().clip(lower_bound=1)
    dscr_reason = pl.concat_str([
        pl.lit("stressed DSCR "), e4_expr("dscr_after_e4"), pl.lit(" below the covenant "),
        e4_expr("covenant_e4"), pl.lit(" (it was "), e4_expr("dscr_before_e4"),
        pl.lit(" without the outage)"),
    ], ignore_nulls=True)
    return [
        ("grace_period", operational & pl.col("grace_needed").fill_null(False), {
            "days": grace_days, "until": pl.col("recovery_date"),
            "reason": pl.concat_str([
                pl.lit("payment due "), first_miss_date.cast(pl.String),
                pl.lit(" cannot be met from cash flow during the outage; balance recovers by "),
                pl.col("recovery_date").cast(pl.String),
                pl.lit(" (outage + recovery tail + settlement lag)"),
            ])}),
        ("bridge_line", operational & (pl.col("bridge_fen").fill_null(0) > 0), {
            "amount_fen": pl.col("bridge_fen"),
            "reason": pl.concat_str([
                pl.lit("operational cash gap open at recovery; sized at the upper band of lost "
                       "cash flow ("), money("lost_cf_high_fen"), pl.lit(" yuan) plus buffer"),
            ])}),
        ("re_age",
         operational & pl.col("_next_below_reage") & ~pl.col("_next_base_below_reage"), {
             "reason": pl.concat_str([
                 pl.lit("stressed DSCR of the period after recovery "),
                 e4_expr("dscr_next_after_e4"),
                 pl.lit(" stays below 1.0; deferral alone does not cure it")])}),
        ("covenant_waiver", pl.col("covenant_breach_caused") & operational,
         {"reason": dscr_reason}),
        ("holdback_extension", (pl.col("rbf_shortfall_fen") > 0) & (pl.col("lost_net_fen") > 0), {
            "amount_fen": pl.col("rbf_shortfall_fen"),
            "reason": pl.concat_str([pl.lit("holdback not collected on lost sales: "),
                                     money("rbf_shortfall_fen"),
                                     pl.lit(" yuan; extend collection, not delinquent")])}),
        ("over_advance_allowance",
         pl.col("over_advance_after_fen") > pl.col("over_advance_before_fen"), {
             "amount_fen": pl.col("over_advance_after_fen") - pl.col("over_advance_before_fen"),
             "reason": pl.concat_str([
                 pl.lit("borrowing base fell by "), money("borrowing_base_drop_fen"),
                 pl.lit(" yuan; tolerate the over-advance until receivables rebuild")])}),
        ("credit_review", pl.col("status") == "pre_existing_credit", {
            "reason": pl.when(pl.col("arrears_before"))
            .then(pl.lit("in arrears before the incident: a credit matter, not operational"))
            .otherwise(pl.lit("misses a payment or breaches a covenant even without the "
                              "outage: a credit matter, not operational"))}),
    ]
