"""The failure cube: counts per combination of dimensions, now and in the recent past.

Localisation works on *leaves*: one leaf is one full combination of the
dimension values (``channel=nfc, region=CN-GD, carrier=cmcc, ...``). For each
leaf the cube holds the failures and attempts of the anomalous bucket and of
each history bucket before it. Everything downstream (the localiser and the
published baselines) reads this one structure, so they are compared on
exactly the same input.

Any table a user exports from another system becomes a cube through
:func:`cube_from_table`; it checks the table the way an on-call engineer
needs: a bad row is named (row, column, rule) instead of being half-used,
because a localisation over a silently truncated table points at the wrong
slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tapshield.errors import ContractError, clip

NULL_VALUE = "(null)"
"""How a missing dimension value is shown: it is a slice like any other."""


@dataclass(frozen=True, slots=True)
class Cube:
    """Leaves of a failure cube as dense NumPy arrays (one row per leaf).

    ``codes[l, d]`` indexes ``labels[d]``; ``f``/``n`` are the anomalous
    bucket's failures and attempts; ``hf``/``hn`` are ``(leaves, buckets)``
    history matrices, oldest bucket first.
    """

    dims: tuple[str, ...]
    labels: tuple[np.ndarray, ...]
    codes: np.ndarray
    f: np.ndarray
    n: np.ndarray
    hf: np.ndarray
    hn: np.ndarray
    at: Any = None
    history: tuple[Any, ...] = ()

    @property
    def leaves(self) -> int:
        return int(self.codes.shape[0])

    @property
    def cards(self) -> np.ndarray:
        return np.array([len(lab) for lab in self.labels], dtype=np.int64)

    def values(self, leaf: int, dims: Sequence[int]) -> dict[str, str]:
        """The combination ``{dim: value}`` of ``leaf`` restricted to ``dims``."""
        return {self.dims[d]: str(self.labels[d][self.codes[leaf, d]]) for d in dims}

    def mask(self, combination: dict[str, str]) -> np.ndarray:
        """Leaves inside ``combination`` (``{}`` = all)."""
        out = np.ones(self.leaves, dtype=bool)
        for dim, value in combination.items():
            d = self.dims.index(dim)
            hit = np.flatnonzero(self.labels[d] == value)
            if hit.size == 0:
                return np.zeros(self.leaves, dtype=bool)
            out &= self.codes[:, d] == hit[0]
        return out


def cube_from_leaves(
    current: pl.DataFrame,
    history: pl.DataFrame | None,
    dims: Sequence[str],
    *,
    failures: str = "failures",
    total: str = "total",
    bucket: str = "bucket",
) -> Cube:
    """Build a cube from already-checked frames.

    ``current`` has ``dims``, ``failures``, ``total`` for the anomalous period;
    ``history`` the same plus ``bucket`` (any sortable type) for the baseline
    buckets. Rows repeating a combination are summed.
    """
    dims = tuple(dims)
    cur = (
        _dims_as_text(current, dims)
        .group_by(dims, maintain_order=True)
        .agg(pl.col(failures).cast(pl.Float64).sum().alias("_f"),
             pl.col(total).cast(pl.Float64).sum().alias("_n"))
    )
    if history is not None and history.height:
        hist = (
            _dims_as_text(history, dims)
            .group_by([*dims, bucket], maintain_order=True)
            .agg(pl.col(failures).cast(pl.Float64).sum().alias("_f"),
                 pl.col(total).cast(pl.Float64).sum().alias("_n"))
        )
        buckets = hist.get_column(bucket).unique().sort().to_list()
    else:
        hist = pl.DataFrame(schema={**dict.fromkeys(dims, pl.String), bucket: pl.Int64,
                                    "_f": pl.Float64, "_n": pl.Float64})
        buckets = []
    # Leaves = every combination seen now or in the history window.
    keys = pl.concat([cur.select(dims), hist.select(dims)]).unique(maintain_order=True)
    labels: list[np.ndarray] = []
    code_cols: list[pl.Series] = []
    for d in dims:
        cats = keys.get_column(d).unique().sort()
        labels.append(np.asarray(cats.to_list(), dtype=object))
        lookup = pl.DataFrame({d: cats, "_c": pl.int_range(cats.len(), eager=True)})
        code_cols.append(keys.select(d).join(lookup, on=d, how="left").get_column("_c"))
    keys = keys.with_columns(
        *[c.alias(f"_c{i}") for i, c in enumerate(code_cols)]
    ).with_row_index("_leaf")
    cur_idx = cur.join(keys, on=list(dims), how="left")
    n_leaves = keys.height
    f = np.zeros(n_leaves)
    n = np.zeros(n_leaves)
    li = cur_idx.get_column("_leaf").to_numpy()
    f[li] = cur_idx.get_column("_f").to_numpy()
    n[li] = cur_idx.get_column("_n").to_numpy()
    hf = np.zeros((n_leaves, len(buckets)))
    hn = np.zeros((n_leaves, len(buckets)))
    if buckets:
        bmap = pl.DataFrame({bucket: pl.Series(buckets, dtype=hist.schema[bucket]),
                             "_b": pl.int_range(len(buckets), eager=True)})
        h_idx = hist.join(keys, on=list(dims), how="left").join(bmap, on=bucket, how="left")
        hl = h_idx.get_column("_leaf").to_numpy()
        hb = h_idx.get_column("_b").to_numpy()
        hf[hl, hb] = h_idx.get_column("_f").to_numpy()
        hn[hl, hb] = h_idx.get_column("_n").to_numpy()
    codes = np.column_stack(
        [keys.get_column(f"_c{i}").to_numpy().astype(np.int64) for i in range(len(dims))]
    ) if dims else np.zeros((n_leaves, 0), dtype=np.int64)
    return Cube(dims=dims, labels=tuple(labels), codes=codes, f=f, n=n, hf=hf, hn=hn,
                history=tuple(buckets))


def _dims_as_text(frame: pl.DataFrame, dims: Sequence[str]) -> pl.DataFrame:
    return frame.with_columns(
        [pl.col(d).cast(pl.String).fill_null(NULL_VALUE) for d in dims]
    )


# -- tables exported from other systems ---------------------------------------------


def cube_from_table(
    frame: pl.DataFrame,
    dims: Sequence[str],
    *,
    time_col: str,
    failures: str,
    total: str,
    at: Any,
    history: int = 4,
    source: str = "table",
) -> Cube:
    """Check a long table (one row per bucket and combination) and build its cube.

    The anomalous bucket is ``at`` (compared in the time column's own type;
    text is parsed to that type); the baseline is the ``history`` distinct
    buckets before it. Raises :class:`~tapshield.errors.ContractError` naming
    the row, the column and the rule of the first problem.
    """
    dims = tuple(dims)
    if not dims:
        raise ContractError("no dimensions given: name at least one column with --dims")
    if len(set(dims)) != len(dims):
        raise ContractError(f"a dimension is named twice in {', '.join(dims)}")
    special = {time_col, failures, total}
    if len(special) != 3:
        raise ContractError("the time, failures and total columns must be three different columns")
    clash = [d for d in dims if d in special]
    if clash:
        raise ContractError(
            f"{', '.join(clash)} cannot be both a dimension and the time/failures/total column"
        )
    if history < 1:
        raise ContractError("--history must be at least 1 bucket")
    needed = [time_col, *dims, failures, total]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ContractError(
            f"{source}: missing column{plural} {', '.join(missing)} "
            f"(the table has: {', '.join(frame.columns) or 'no columns'})"
        )
    if frame.height == 0:
        raise ContractError(f"{source}: the table has no rows")
    frame = frame.select(needed).with_row_index("_row", offset=1)
    frame = frame.with_columns(
        _count(frame, failures, source).alias(failures),
        _count(frame, total, source).alias(total),
    )
    over = frame.filter(pl.col(failures) > pl.col(total))
    if over.height:
        r = over.row(0, named=True)
        raise ContractError(
            f"{source}: row {r['_row']}, column {failures!r}: rule failures_le_total "
            f"({failures} {r[failures]:g} > {total} {r[total]:g}; {over.height} such row(s))"
        )
    nulls = frame.filter(pl.col(time_col).is_null())
    if nulls.height:
        raise ContractError(
            f"{source}: row {nulls.item(0, '_row')}, column {time_col!r}: rule required "
            "(empty time bucket)"
        )
    at_value = _coerce_at(at, frame.schema[time_col], time_col)
    buckets = frame.get_column(time_col).unique().sort()
    if not (buckets == at_value).any():
        first, last = buckets[0], buckets[-1]
        raise ContractError(
            f"--at {at!s} is not a bucket of column {time_col!r} "
            f"({buckets.len()} buckets, from {first} to {last})"
        )
    before = buckets.filter(buckets < at_value)
    if before.len() == 0:
        raise ContractError(
            f"--at {at!s} is the first bucket of column {time_col!r}: "
            "there is no history before it to compare with"
        )
    hist_buckets = before.tail(history)
    current = frame.filter(pl.col(time_col) == at_value)
    past = frame.filter(pl.col(time_col).is_in(hist_buckets.implode())).rename(
        {time_col: "_bucket"}
    )
    cube = cube_from_leaves(current, past, dims, failures=failures, total=total,
                            bucket="_bucket")
    return Cube(dims=cube.dims, labels=cube.labels, codes=cube.codes, f=cube.f, n=cube.n,
                hf=cube.hf, hn=cube.hn, at=at_value, history=cube.history)


def _count(frame: pl.DataFrame, col: str, source: str) -> pl.Series:
    """A count column as Float64, or a ContractError naming the first bad row."""
    s = frame.get_column(col)
    if s.dtype == pl.String:
        parsed = s.str.strip_chars().cast(pl.Float64, strict=False)
        bad = parsed.is_null() & s.is_not_null() & (s.str.strip_chars() != "")
        if bad.any():
            i = int(bad.arg_true()[0])
            raise ContractError(
                f"{source}: row {frame.item(i, '_row')}, column {col!r}: rule numeric_count "
                f"(value {clip(str(s[i]))!r} is not a number; {int(bad.sum())} such row(s))"
            )
        s = parsed
    elif s.dtype.is_numeric() or s.dtype == pl.Null:
        s = s.cast(pl.Float64)
    else:
        raise ContractError(f"{source}: column {col!r}: rule numeric_count (type {s.dtype})")
    if s.is_null().any():
        i = int(s.is_null().arg_true()[0])
        raise ContractError(
            f"{source}: row {frame.item(i, '_row')}, column {col!r}: rule required "
            "(empty count)"
        )
    bad = ~s.is_finite()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise ContractError(
            f"{source}: row {frame.item(i, '_row')}, column {col!r}: rule finite_count "
            f"(value {s[i]})"
        )
    neg = s < 0
    if neg.any():
        i = int(neg.arg_true()[0])
        raise ContractError(
            f"{source}: row {frame.item(i, '_row')}, column {col!r}: rule non_negative "
            f"(value {s[i]:g}; {int(neg.sum())} such row(s))"
        )
    return s


def _coerce_at(at: Any, dtype: pl.DataType, time_col: str) -> Any:
    """``at`` in the time column's type (the CLI passes text)."""
    if not isinstance(at, str):
        return at
    text = at.strip()
    try:
        if dtype.is_integer():
            return int(float(text)) if float(text).is_integer() else float(text)
        if dtype.is_float():
            return float(text)
        if isinstance(dtype, pl.Datetime):
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            tz = dtype.time_zone
            if tz is not None and value.tzinfo is None:
                raise ContractError(
                    f"--at {at!r} has no UTC offset but column {time_col!r} is in {tz}"
                )
            return value
        if isinstance(dtype, pl.Date):
            return date.fromisoformat(text)
    except ValueError as exc:
        raise ContractError(
            f"--at {at!r} is not a value of column {time_col!r} (type {dtype})"
        ) from exc
    return text


def read_table(path: str, *, time_col: str | None = None) -> pl.DataFrame:
    """Read a user's table (CSV, Parquet or JSON lines), text kept as text.

    CSV is read without type guessing so dimension values such as ``0500``
    stay exactly as written; the time column is then given the narrowest type
    its values fit (integer, number, else text) so buckets sort naturally.
    """
    p = Path(path)
    if not p.exists():
        raise ContractError(f"{p}: no such file")
    if p.is_dir():
        raise ContractError(f"{p}: is a directory, not a table")
    name = p.name.lower().removesuffix(".gz")
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(p)
        elif name.endswith((".jsonl", ".ndjson")):
            frame = pl.read_ndjson(p, infer_schema_length=None)
        else:
            if p.stat().st_size == 0:
                raise ContractError(f"{p.name}: the file is empty")
            frame = pl.read_csv(p, infer_schema=False, raise_if_empty=False)
            frame = frame.rename({c: c.strip() for c in frame.columns})
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
        raise ContractError(f"{p.name}: unreadable table ({clip(str(exc), 120)})") from exc
    if frame.width == 0:
        raise ContractError(f"{p.name}: the file is empty")
    if time_col is not None and time_col in frame.columns and frame.schema[time_col] == pl.String:
        col = frame.get_column(time_col).str.strip_chars()
        for dtype in (pl.Int64, pl.Float64):
            cast = col.cast(dtype, strict=False)
            if cast.null_count() == col.null_count() + (col == "").sum():
                frame = frame.with_columns(cast.alias(time_col))
                break
    return frame
