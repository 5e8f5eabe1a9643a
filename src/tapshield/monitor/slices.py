"""Which slices an event belongs to, as integer indices, computed per batch.

A *slice set* is a tuple of dimensions (``()`` = the whole flow,
``("channel",)``, ``("channel", "region")``); a *slice* is one combination
of values (``{channel: nfc, region: CN-GD}``). Every event belongs to at most
one slice of each set, so a batch's membership is an ``int32`` matrix
``[events, sets]`` (-1 where a value is missing or the slice is not watched).

Values become dense integer codes through Polars' 64-bit string hash and a
small compiled hash table per dimension (append-only, so codes are stable
for the life of the monitor); codes become slice indices through dense
lookup arrays: a few vectorised passes per batch, no Python per event.
A slice is watched from its ``min_slice_events``-th event on, decided per
event from cumulative counts, so the result does not depend on batching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from tapshield.monitor import _kernels as kn

NATIONAL = 0
"""Index of the whole-flow slice (always allocated)."""
_SEED = 0x7A95
"""Seed of the value hashes behind dimension codes."""
_TRUE = np.ones(0, dtype=np.bool_)


def _all_true(n: int) -> np.ndarray:
    """A read-only all-true mask of ``n`` rows (shared, grown on demand)."""
    global _TRUE  # noqa: PLW0603 - a process-wide constant buffer
    if _TRUE.shape[0] < n:
        _TRUE = np.ones(max(n, 2 * _TRUE.shape[0]), dtype=np.bool_)
        _TRUE.setflags(write=False)
    return _TRUE[:n]


@dataclass(frozen=True, slots=True)
class SliceInfo:
    index: int
    set_index: int
    dims: tuple[str, ...]
    values: tuple[str, ...]
    mapping: dict[str, str]
    key: str

    @property
    def as_dict(self) -> dict[str, str]:
        """The slice as ``{dimension: value}`` (a copy: callers may keep it)."""
        return dict(self.mapping)


def slice_key(slice_: dict[str, str]) -> str:
    """Stable text key of a slice: ``channel=nfc|region=CN-GD``; ``*`` = everything."""
    if not slice_:
        return "*"
    return "|".join(f"{k}={slice_[k]}" for k in sorted(slice_))


def intersects(a: dict[str, str], b: dict[str, str]) -> bool:
    """Can an event be in both slices (no dimension with two different values)?"""
    return all(b.get(k, v) == v for k, v in a.items())


def refines(child: dict[str, str], parent: dict[str, str]) -> bool:
    """Is every event of ``child`` also in ``parent``?"""
    return all(child.get(k) == v for k, v in parent.items())


class SliceRegistry:
    """Dimension codes, slice indices, and the membership matrix of each batch."""

    def __init__(self, sets: tuple[tuple[str, ...], ...], min_events: int,
                 max_slices: int, min_events_by_dim: dict[str, int] | None = None) -> None:
        self.sets = sets
        self.min_events = max(1, int(min_events))
        by_dim = min_events_by_dim or {}
        self.min_events_of = [max([self.min_events, *(by_dim.get(d, 0) for d in dims)])
                              for dims in sets]
        self.max_slices = int(max_slices)
        self.dims: tuple[str, ...] = tuple(sorted({d for s in sets for d in s}))
        self._codes = {d: _Codes() for d in self.dims}
        self._maps: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        for dims in sets:
            shape = (1,) * max(len(dims), 1)
            self._maps.append(np.full(shape, -1, dtype=np.int32))
            self._counts.append(np.zeros(shape, dtype=np.int64))
        self.infos: list[SliceInfo] = []
        self._by_key: dict[str, int] = {}
        self.unwatched = 0
        """Slices that reached ``min_events`` after ``max_slices`` was reached."""
        if () not in sets:
            raise ValueError("the slice sets must include () (the whole flow)")
        national_set = sets.index(())
        self.national_set = national_set
        self._add(national_set, (), ())
        self.set_of_dim: dict[str, int] = {s[0]: i for i, s in enumerate(sets) if len(s) == 1}
        self._new_rows = np.zeros(max(self.max_slices, 1), dtype=np.int64)
        """Rows where :func:`_kernels.member_set` allocated slices (at most ``max_slices``)."""
        if any(len(d) > 2 for d in sets):
            raise ValueError("a slice set has at most two dimensions")

    def __len__(self) -> int:
        return len(self.infos)

    def index_of(self, slice_: dict[str, str]) -> int | None:
        return self._by_key.get(slice_key(slice_))

    def _add(self, set_index: int, dims: tuple[str, ...], values: tuple[str, ...]) -> int:
        idx = len(self.infos)
        mapping = dict(zip(dims, values, strict=True))
        info = SliceInfo(idx, set_index, dims, values, mapping, slice_key(mapping))
        self.infos.append(info)
        self._by_key[info.key] = idx
        return idx

    def codes(self, batch: pl.DataFrame) -> dict[str, np.ndarray]:
        """Integer code of each dimension value (-1 = missing).

        Text columns are hashed in one Polars pass (all dimensions at once, in
        parallel); dictionary-encoded columns (``Categorical``/``Enum``) map
        to codes through their categories, not row by row.
        """
        schema = batch.schema
        text = [d for d in self.dims if not isinstance(schema[d], pl.Categorical | pl.Enum)]
        hashed = batch.select([pl.col(d).hash(_SEED) for d in text]) if text else None
        out: dict[str, np.ndarray] = {}
        for d in self.dims:
            column = batch.get_column(d)
            if hashed is not None and d in text:
                out[d] = self._codes[d].encode(column, hashed.get_column(d).to_numpy())
            else:
                out[d] = self._codes[d].encode_dictionary(column)
        return out

    def value(self, dim: str, code: int) -> str:
        return self._codes[dim].values[code]

    def membership(self, batch: pl.DataFrame, codes: dict[str, np.ndarray]) -> np.ndarray:
        """``int32 [sets, events]``: the slice of each set each event belongs to.

        One compiled pass per slice set (:func:`_kernels.member_set`) looks the
        codes up in the set's dense map, counts events of slices not watched
        yet and allocates a slice at its ``min_events``-th event, in stream
        order; Python only names the (rare) new slices.
        """
        n = batch.height
        member = np.full((len(self.sets), n), -1, dtype=np.int32)
        top = {d: int(c.max()) if c.size else -1 for d, c in codes.items()}
        none = np.empty(0, dtype=np.int64)
        for j, dims in enumerate(self.sets):
            if not dims:
                member[j] = 0
                continue
            if any(top[d] < 0 for d in dims):
                continue
            self._grow(j, [top[d] for d in dims])
            shape = self._maps[j].shape
            c0 = codes[dims[0]]
            c1 = codes[dims[1]] if len(dims) == 2 else none
            stride = shape[1] if len(dims) == 2 else 1
            n_new, unwatched = kn.member_set(
                c0, c1, stride, self._maps[j].reshape(-1), self._counts[j].reshape(-1),
                self.min_events_of[j], member[j], self._new_rows, len(self.infos),
                self.max_slices)
            self.unwatched += unwatched
            if n_new > self._new_rows.shape[0]:
                raise AssertionError("member_set: more new slices than rows")
            for row in self._new_rows[:n_new].tolist():
                values = tuple(self.value(d, int(codes[d][row])) for d in dims)
                self._add(j, dims, values)
        return member

    def _grow(self, j: int, maxes: list[int]) -> None:
        cur = self._maps[j]
        need = tuple(max(s, m + 1) for s, m in zip(cur.shape, maxes, strict=True))
        if need == cur.shape:
            return
        shape = tuple(max(n, 2 * s) if n > s else s for n, s in zip(need, cur.shape,
                                                                       strict=True))
        new_map = np.full(shape, -1, dtype=np.int32)
        new_cnt = np.zeros(shape, dtype=np.int64)
        region = tuple(slice(0, s) for s in cur.shape)
        new_map[region] = cur
        new_cnt[region] = self._counts[j]
        self._maps[j], self._counts[j] = new_map, new_cnt


class _Codes:
    """Stable dense codes of one dimension's values."""

    def __init__(self) -> None:
        self.table = np.zeros(64, dtype=np.uint64)
        self.codes_of = np.zeros(64, dtype=np.int64)
        self.values: list[str] = []

    def encode_dictionary(self, column: pl.Series) -> np.ndarray:
        """Codes of a ``Categorical``/``Enum`` column: its categories are encoded
        (as text, so the codes agree with text batches), rows look them up."""
        dtype = column.dtype
        phys = column.to_physical()
        if phys.null_count() == phys.len():  # nothing but nulls
            return np.full(column.len(), -1, dtype=np.int64)
        ids = phys.drop_nulls().to_numpy().astype(np.int64)
        # an Enum lists its categories; a Categorical's (possibly global, growing)
        # category pool is indexed by the physical id: only ids up to the largest used
        if isinstance(dtype, pl.Enum):
            pool = dtype.categories
        else:
            assert isinstance(dtype, pl.Categorical)
            pool = dtype.categories.to_series()
        cats = pool.head(int(ids.max()) + 1).cast(pl.String)
        lut = self.encode(cats, cats.hash(_SEED).to_numpy())
        out: np.ndarray
        if phys.null_count():
            out = np.full(column.len(), -1, dtype=np.int64)
            out[phys.is_not_null().to_numpy()] = lut[ids]
        else:
            out = lut[ids]
        return out

    def encode(self, column: pl.Series, hashes: np.ndarray) -> np.ndarray:
        """Codes of a text column whose values hash (``_SEED``) to ``hashes``."""
        n = column.len()
        valid = column.is_not_null().to_numpy() if column.null_count() else _all_true(n)
        out = np.empty(n, dtype=np.int64)
        new_rows = np.empty(n, dtype=np.int64)
        start = 0
        while True:
            before = len(self.values)
            got = kn.hash_codes(self.table, self.codes_of, hashes[start:], valid[start:],
                               out[start:], new_rows, before)
            count = abs(got)
            rows = new_rows[: count - before] + start
            if rows.size:
                self.values.extend(column.gather(rows).cast(pl.String).to_list())
            if got >= 0:
                return out
            # table half full: double it and continue after the row that filled it
            start = int(rows[-1]) + 1
            big = np.zeros(self.table.shape[0] * 2, dtype=np.uint64)
            big_codes = np.zeros(big.shape[0], dtype=np.int64)
            kn.rehash(self.table, self.codes_of, big, big_codes)
            self.table, self.codes_of = big, big_codes
            if start >= n:
                return out
