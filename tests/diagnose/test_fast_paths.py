"""The fast paths of a diagnosis give exactly what the long ways gave (issue 15, speed).

Each fast path is checked against the computation it replaced, kept beside it
in the code: the event cube from shared dimension codes against the group-by
and ``cube_from_leaves``; the spread of five dimensions in one call against
``_spread`` one dimension at a time; the sorted labels against Polars'
``unique().sort()``. Frames are drawn by hypothesis (few values so leaves
repeat, nulls, text that sorts differently by case and accents, history buckets
with gaps), and the cubes must be equal array for array, not merely close.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.diagnose.events import DimCodes, event_cube, event_cube_frames
from tapshield.diagnose.evidence import SPREAD_DIMS, _spread, _spreads

VALUES = ["a", "B", "b", "é", "z1", "Z", "10", "9", None]
DIMS = ["channel", "region", "carrier", "merchant_id"]

row = st.tuples(
    st.sampled_from([0, 0, -1, -2, -4, -7]),      # bucket (gaps: no -3, -5, -6)
    st.booleans(),                                 # failed
    *[st.sampled_from(VALUES) for _ in DIMS],
)


def frame(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    cols: dict[str, list[object]] = {"_bucket": [], "_f_main": [], **{d: [] for d in DIMS}}
    for r in rows:
        cols["_bucket"].append(r[0])
        cols["_f_main"].append(r[1])
        for d, v in zip(DIMS, r[2:], strict=True):
            cols[d].append(v)
    schema = {"_bucket": pl.Int64, "_f_main": pl.Boolean, **dict.fromkeys(DIMS, pl.String)}
    return pl.DataFrame(cols, schema=schema)


def assert_same_cube(a: object, b: object) -> None:
    for field in ("dims", "history"):
        assert getattr(a, field) == getattr(b, field), field
    for x, y in zip(a.labels, b.labels, strict=True):  # type: ignore[attr-defined]
        assert x.dtype == y.dtype and x.tolist() == y.tolist()
    for field in ("codes", "f", "n", "hf", "hn"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape, field
        assert x.dtype == y.dtype, field
        assert np.array_equal(x, y), field


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=80),
       dims=st.lists(st.sampled_from(DIMS), min_size=1, max_size=4, unique=True))
def test_event_cube_equals_the_group_by_cube(rows: list[tuple[object, ...]],
                                             dims: list[str]) -> None:
    f = frame(rows)
    assert_same_cube(event_cube(f, "_f_main", dims), event_cube_frames(f, "_f_main", dims))


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=60))
def test_shared_codes_give_the_same_cubes_in_any_order_of_use(
        rows: list[tuple[object, ...]]) -> None:
    """One :class:`DimCodes` serves a screen and two cubes, as in a diagnosis."""
    f = frame(rows)
    coded = DimCodes(f)
    for dims in (DIMS, ["merchant_id", "channel"], ["region"]):
        assert_same_cube(event_cube(f, "_f_main", dims, coded),
                         event_cube_frames(f, "_f_main", dims))


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=60))
def test_sorted_labels_are_polars_sorted_unique(rows: list[tuple[object, ...]]) -> None:
    f = frame(rows)
    coded = DimCodes(f)
    for d in DIMS:
        labels, place = coded.sorted_labels(d)
        expected = f.get_column(d).fill_null("(null)").unique().sort().to_list()
        assert labels.tolist() == expected
        codes, _ = coded.codes([d])
        assert labels[place[codes[d]]].tolist() == f.get_column(d).fill_null("(null)").to_list()


def test_event_cube_of_a_real_window_matches() -> None:
    """A window of the simulator's traffic (thousands of leaves, 30 history buckets)."""
    from tapshield.diagnose.events import bucketed, signature_expr
    from tests.diagnose.factory import BASELINE, NOW, START, Flow

    events = Flow().technical({"channel": "nfc", "region": "CN-GD"}, 0.6, ["91"]).events()
    f, _ = bucketed(events, START, NOW, START - BASELINE)
    work = f.with_columns(signature_expr("technical").fill_null(False).alias("_f_main"))
    dims = ["channel", "region", "merchant_id", "device_model", "app_version"]
    assert_same_cube(event_cube(work, "_f_main", dims), event_cube_frames(work, "_f_main", dims))


spread_row = st.tuples(
    st.sampled_from([0, -1, -2]), st.booleans(),
    *[st.sampled_from(["x", "y", None]) for _ in SPREAD_DIMS],
)


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(spread_row, min_size=0, max_size=400),
       flow=st.floats(0.0, 0.2))
def test_spreads_in_one_call_equal_spread_per_dimension(
        rows: list[tuple[object, ...]], flow: float) -> None:
    cols: dict[str, list[object]] = {"_bucket": [r[0] for r in rows],
                                     "_fact": [r[1] for r in rows]}
    for i, d in enumerate(SPREAD_DIMS):
        cols[d] = [r[2 + i] for r in rows]
    inside = pl.DataFrame(cols, schema={"_bucket": pl.Int64, "_fact": pl.Boolean,
                                        **dict.fromkeys(SPREAD_DIMS, pl.String)})
    cur = inside.filter(pl.col("_bucket") == 0)
    base = inside.filter(pl.col("_bucket") < 0)
    got = _spreads(inside, "_fact", SPREAD_DIMS, flow)
    assert got == {d: _spread(cur, base, "_fact", d, flow) for d in SPREAD_DIMS}
