"""Facts about an incident that a person can check, computed from events and changes.

Classification (:mod:`tapshield.diagnose.classify`) only ever looks at these
facts, and every fact it uses becomes an evidence sentence, so the reasoning
behind a cause is on the page: what failed and how much more than usual,
with which response codes and latency, where it cuts across (channels,
carriers, regions), what changed shortly before, and what the declined
attempts look like (many ordinary customers, or a few devices firing fast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from tapshield.events.changes import scope_of
from tapshield.events.codes import DESCRIPTIONS, TECHNICAL_CODES
from tapshield.incident import scope_expr

LOOKBACK = timedelta(hours=2)
"""How far before the wave a change is considered a suspect: release and rule
problems show within minutes of the change, slow rollouts within an hour or
two; older changes have had a long clean run."""

MIN_SLICE = 30
"""Attempts a value needs in the wave before its own ratio is judged (below that
one failure moves it by more than 3 percentage points)."""

NETWORK_CODES = frozenset({"68", "92"})
"""Response too late / destination unreachable: the path, not the host."""
HOST_CODES = frozenset({"91", "96", "06", "20", "22", "28", "90"})
"""Issuer/switch inoperative, malfunction, errors: a host answered badly."""


PRIOR_ATTEMPTS = 20.0
"""Attempts' worth of the whole flow's ratio behind a slice's baseline: a slice
that did not exist before (a new version) is judged against the flow, and a
slice with thousands of attempts against itself."""


@dataclass(slots=True)
class Rates:
    failed: int
    total: int
    base_failed: int
    base_total: int
    flow_ratio: float = 0.0
    """The whole flow's baseline ratio (the prior of the slice's)."""

    @property
    def ratio(self) -> float:
        return self.failed / self.total if self.total else 0.0

    @property
    def base_ratio(self) -> float:
        prior = max(self.flow_ratio, 1e-4)
        return (self.base_failed + PRIOR_ATTEMPTS * prior) / (self.base_total + PRIOR_ATTEMPTS)

    @property
    def expected(self) -> float:
        return self.total * self.base_ratio

    @property
    def excess(self) -> float:
        return self.failed - self.expected

    @property
    def lift(self) -> float:
        return self.ratio / self.base_ratio if self.base_ratio > 0 else 0.0


@dataclass(slots=True)
class Change:
    ts: datetime
    kind: str
    component: str
    version: str | None
    note: str | None
    matches_scope: bool
    minutes_before: float


@dataclass(slots=True)
class Facts:
    duration: timedelta
    signature: str
    rates: dict[str, Rates]
    """technical / risk / decline / slow rates inside the scope."""
    codes: list[tuple[str, float]]
    """Response codes of the extra failures, share of the excess (largest first)."""
    timeout_share: float
    latency_now: float | None
    latency_base: float | None
    spread: dict[str, tuple[int, int]]
    """Per dimension: (values elevated, values with enough attempts) inside the scope."""
    scope_dims: set[str]
    """Dimensions of the scope's main combination (the one holding most extra failures)."""
    changes: list[Change]
    maintenance: list[Change]
    new_versions: list[str]
    fraud: dict[str, float] = field(default_factory=dict)
    fingerprint: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Device attributes shared by most risk declines (value, share): an attack's
    phones often look alike because they are emulated from one."""
    volume_drop: float = 0.0
    """Share of the expected attempts that did not arrive (traffic drops)."""

    def main(self) -> Rates:
        return self.rates.get(self.signature, self.rates["technical"])


def gather(
    frame: pl.DataFrame,
    scope: list[dict[str, str]],
    *,
    signature: str,
    signatures: dict[str, pl.Expr],
    changes: pl.DataFrame,
    start: datetime,
    now: datetime,
    history: int,
) -> Facts:
    """Facts inside ``scope`` (``[]`` = everything) of a bucketed frame (see events.py).

    ``signatures`` maps each failure signature (technical, risk_decline,
    decline, slow) to its expression; they are evaluated inside the scope only.
    """
    failed_cols = {name: f"_fact_{name}" for name in signatures}
    flow = frame.filter(pl.col("_bucket") < 0).select(
        [e.fill_null(False).mean().alias(n) for n, e in signatures.items()]
    )
    inside = frame.filter(scope_expr(scope)).with_columns(
        [e.fill_null(False).alias(failed_cols[n]) for n, e in signatures.items()]
    )
    cur = inside.filter(pl.col("_bucket") == 0)
    base = inside.filter(pl.col("_bucket") < 0)
    rates: dict[str, Rates] = {}
    for name, col in failed_cols.items():
        g = flow.item(0, name) if flow.height else None
        rates[name] = Rates(
            failed=int(cur.get_column(col).sum()), total=cur.height,
            base_failed=int(base.get_column(col).sum()), base_total=base.height,
            flow_ratio=float(g) if g is not None else 0.0,
        )
    main_col = failed_cols.get(signature, failed_cols["technical"])
    codes = _excess_codes(cur, base, main_col)
    tech_cur = cur.filter(pl.col(failed_cols["technical"]))
    timeout_share = _share(
        (tech_cur.get_column("outcome").cast(pl.String) == "timeout")
        | tech_cur.get_column("response_code").is_in(sorted(NETWORK_CODES)).fill_null(False)
    )
    lat_now = _median(cur.get_column("latency_ms"))
    lat_base = _median(base.get_column("latency_ms"))
    spread = _spreads(inside, main_col, SPREAD_DIMS,
                      rates[_name_of(failed_cols, main_col)].flow_ratio)
    # The dimensions of the main root cause (the scope is ordered by excess):
    # a stray deeper condition on a minor cause must not decide the cause.
    scope_dims = set(scope[0]) if scope else set()
    chg, maint = _changes(changes, scope, start, now)
    new_versions = _new_versions(inside, scope)
    facts = Facts(
        duration=now - start, signature=signature, rates=rates, codes=codes,
        timeout_share=timeout_share, latency_now=lat_now, latency_base=lat_base,
        spread=spread, scope_dims=scope_dims, changes=chg, maintenance=maint,
        new_versions=new_versions,
    )
    risk_col = failed_cols.get("risk_decline")
    if risk_col is not None and signature in ("risk_decline", "decline"):
        facts.fraud = _fraud_shape(cur.filter(pl.col(risk_col)), frame, start)
        facts.fingerprint = _fingerprint(cur.filter(pl.col(risk_col)), inside)
    if history > 0 and base.height:
        expected = base.height / history
        facts.volume_drop = max(0.0, 1.0 - cur.height / expected) if expected > 0 else 0.0
    return facts


def _share(mask: pl.Series) -> float:
    """Share of true values (0 for an empty series)."""
    return float(mask.sum()) / mask.len() if mask.len() else 0.0


def _median(s: pl.Series) -> float | None:
    s = s.drop_nulls()
    if s.len() == 0:
        return None
    m = s.median()
    return float(m) if isinstance(m, (int, float)) else None


def _excess_codes(cur: pl.DataFrame, base: pl.DataFrame, col: str) -> list[tuple[str, float]]:
    """Which response codes carry the extra failures (share of the excess)."""
    if cur.height == 0:
        return []
    c = (cur.filter(pl.col(col)).group_by("response_code", maintain_order=True).len()
         .rename({"len": "now"}))
    b = (base.filter(pl.col(col)).group_by("response_code", maintain_order=True).len()
         .rename({"len": "before"}))
    t = c.join(b, on="response_code", how="left", nulls_equal=True).fill_null(0)
    scale = cur.height / max(base.height, 1)
    t = t.with_columns((pl.col("now") - pl.col("before") * scale).clip(lower_bound=0).alias("x"))
    total = float(t.get_column("x").sum())
    if total <= 0:
        return []
    t = t.sort("x", descending=True, maintain_order=True)
    return [(str(code) if code is not None else "none", float(x) / total)
            for code, x in t.select("response_code", "x").iter_rows() if x >= 0.01 * total]


def _name_of(cols: dict[str, str], col: str) -> str:
    return next(k for k, v in cols.items() if v == col)


SPREAD_DIMS = ("channel", "carrier", "region", "app_version", "server_version")


def _spreads(inside: pl.DataFrame, col: str, dims: Sequence[str],
             flow_ratio: float) -> dict[str, tuple[int, int]]:
    """:func:`_spread` of every dimension in ``dims``, counted in one Polars call.

    Each dimension's values are counted now (bucket 0) and before (buckets
    < 0) in one group-by of the scope's rows, all dimensions in one
    ``collect_all``; the test is then :func:`_spread_test`, as in
    :func:`_spread`. Only counts enter it, so the result does not depend on
    the order the values come in (``tests/diagnose/test_fast_paths.py``
    checks it against :func:`_spread` dimension by dimension).
    """
    now = pl.col("_bucket") == 0
    fail = pl.col(col).fill_null(False)
    tables = pl.collect_all([
        inside.lazy().group_by(d).agg(
            (fail & now).sum().alias("f"), now.sum().alias("n"),
            (fail & ~now).sum().alias("fb"), (~now).sum().alias("nb"))
        .filter(pl.col("n") >= MIN_SLICE)
        for d in dims
    ])
    return {d: _spread_test(t, flow_ratio) for d, t in zip(dims, tables, strict=True)}


def _spread(cur: pl.DataFrame, base: pl.DataFrame, col: str, dim: str,
            flow_ratio: float) -> tuple[int, int]:
    """(values whose ratio at least doubled, significantly; values with enough attempts)."""
    a = cur.group_by(dim, maintain_order=True).agg(
        pl.col(col).sum().alias("f"), pl.len().alias("n"))
    b = base.group_by(dim, maintain_order=True).agg(
        pl.col(col).sum().alias("fb"), pl.len().alias("nb"))
    t = a.join(b, on=dim, how="left", nulls_equal=True).fill_null(0).filter(
        pl.col("n") >= MIN_SLICE)
    return _spread_test(t, flow_ratio)


def _spread_test(t: pl.DataFrame, flow_ratio: float) -> tuple[int, int]:
    """The test of :func:`_spread` on a table of ``f``, ``n``, ``fb``, ``nb`` per value."""
    if t.height == 0:
        return (0, 0)
    f = t.get_column("f").cast(pl.Float64).to_numpy()
    n = t.get_column("n").cast(pl.Float64).to_numpy()
    prior = max(flow_ratio, 1e-4)
    p = ((t.get_column("fb").cast(pl.Float64).to_numpy() + PRIOR_ATTEMPTS * prior)
         / (t.get_column("nb").cast(pl.Float64).to_numpy() + PRIOR_ATTEMPTS))
    expected = n * p
    z = (f - expected) / np.sqrt(np.maximum(expected * (1 - p), 1e-9))
    up = (f >= 2 * expected) & (z >= 3.0)
    return (int(up.sum()), int(t.height))


def _changes(changes: pl.DataFrame, scope: list[dict[str, str]], start: datetime,
             now: datetime) -> tuple[list[Change], list[Change]]:
    if changes.height == 0:
        return [], []
    values: dict[str, set[str]] = {}
    for combo in scope:
        for d, v in combo.items():
            values.setdefault(d, set()).add(v)
    suspects: list[Change] = []
    maint: list[Change] = []
    for row in changes.iter_rows(named=True):
        ts = row["ts"]
        kind = row["kind"]
        comp = row["component"]
        version = row.get("version")
        touched = scope_of(comp)
        if kind == "maintenance":
            end = row.get("end_ts")
            if ts <= now and (end is None or end >= start):
                hit = not touched or not scope or any(
                    v in values.get(d, {v}) for d, v in touched.items())
                maint.append(Change(ts, kind, comp, version, row.get("note"), hit,
                                    (start - ts).total_seconds() / 60))
            continue
        if not (start - LOOKBACK <= ts <= now):
            continue
        match = _matches(kind, comp, version, touched, values)
        suspects.append(Change(ts, kind, comp, version, row.get("note"), match,
                               (start - ts).total_seconds() / 60))
    return suspects, maint


def _matches(kind: str, comp: str, version: Any, touched: dict[str, str],
             values: dict[str, set[str]]) -> bool:
    """Does a change plausibly touch the scope?"""
    v = str(version) if version is not None else ""
    if comp == "app":
        return v in values.get("app_version", set())
    if comp == "gateway":
        return v in values.get("server_version", set())
    if touched:
        return all(val in values.get(d, {val}) for d, val in touched.items())
    return kind == "rule_change"


def _new_versions(inside: pl.DataFrame, scope: list[dict[str, str]]) -> list[str]:
    """Versions in the scope whose share of traffic grew a lot (a rollout or canary)."""
    out = []
    for combo in scope:
        for d in ("app_version", "server_version"):
            v = combo.get(d)
            if v is None:
                continue
            cur = inside.filter(pl.col("_bucket") == 0)
            base = inside.filter(pl.col("_bucket") < 0)
            now_share = cur.height and cur.filter(pl.col(d) == v).height / cur.height
            before = base.filter(pl.col(d) == v).height / max(base.height, 1)
            if now_share and before < 0.5 * now_share:
                out.append(f"{d}={v}")
    return out


def _fraud_shape(declined: pl.DataFrame, frame: pl.DataFrame, start: datetime
                 ) -> dict[str, float]:
    """How concentrated the risk declines are on devices and accounts."""
    if declined.height == 0:
        return {}
    per_dev = (declined.group_by("device_id", maintain_order=True).len()
               .sort("len", descending=True, maintain_order=True))
    n = declined.height
    top5 = float(per_dev.head(5).get_column("len").sum()) / n
    devices = per_dev.height
    accounts = declined.get_column("user_id").n_unique()
    devs = per_dev.get_column("device_id")
    seen = (frame.filter((pl.col("ts") < start) & pl.col("device_id").is_in(devs.implode()))
            .get_column("device_id").unique())
    new_share = _share(~declined.get_column("device_id").is_in(seen.implode()))
    small = _share(declined.get_column("amount_fen") <= 200)
    return {
        "declines": float(n),
        "devices": float(devices),
        "per_device": n / max(devices, 1),
        "accounts_per_device": accounts / max(devices, 1),
        "top5_share": top5,
        "new_device_share": new_share,
        "small_amount_share": small,
    }


FINGERPRINT_DIMS = ("device_model", "os", "app_version", "carrier")


def _fingerprint(declined: pl.DataFrame, inside: pl.DataFrame) -> dict[str, tuple[str, float]]:
    """Device attributes over-represented among the declines (>= 80% vs < 50% usually)."""
    out: dict[str, tuple[str, float]] = {}
    if declined.height < 20:
        return out
    base = inside.filter(pl.col("_bucket") < 0)
    for d in FINGERPRINT_DIMS:
        top = (declined.group_by(d, maintain_order=True).len()
               .sort("len", descending=True, maintain_order=True).head(1))
        if top.height == 0:
            continue
        value, count = top.row(0)
        share = count / declined.height
        usual = base.filter(pl.col(d) == value).height / max(base.height, 1)
        if share >= 0.8 and usual < 0.5:
            out[d] = (str(value), share)
    return out


def describe_code(code: str) -> str:
    d = DESCRIPTIONS.get(code)
    return f"{code} ({d})" if d else code


def is_network_code(code: str) -> bool:
    return code in NETWORK_CODES


def is_host_code(code: str) -> bool:
    return code in HOST_CODES or (code in TECHNICAL_CODES and code not in NETWORK_CODES)
