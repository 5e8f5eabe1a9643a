"""The compiled checks say exactly what the contract's regexes and Polars' casts say.

Validation replaced per-row regexes, ``str -> f64`` casts and enum casts by
kernels walking the string buffers; these properties pin them to the
definitions they replace, on arbitrary text, including strings long enough to
live outside the Arrow views and columns made of several chunks.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.events.codes import APPROVAL_CODES
from tapshield.events.schema import OUTCOMES
from tapshield.parsing import (
    BAD,
    CHANNEL,
    CODE,
    MISSING,
    NO_MATCH,
    NO_VALUE,
    OK,
    REGION,
    byte_length_range,
    check_format,
    code_classes,
    match_choices,
    parse_plain_numbers,
    parse_timestamps,
)

# The contract's format rules as regular expressions: the definitions the
# compiled checks replaced, kept here as the oracle they are tested against.
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_REGION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
_CODE_RE = re.compile(r"^[0-9A-Z]{2}$")

ALPHABET = st.sampled_from([*list("aZ09_.:-/ -é\n"), "CN", "GD", "-", "00", "approved", "1.5"])
TEXT = st.lists(ALPHABET, max_size=30).map("".join)
VALUES = st.lists(st.one_of(st.none(), TEXT, st.sampled_from(["", "x" * 70, "nfc"])), max_size=40)


def _chunked(values: list[str | None]) -> pl.Series:
    """The values as a Series of several chunks (as a CSV batch arrives)."""
    series = pl.Series(values[: len(values) // 2], dtype=pl.String)
    series.append(pl.Series(values[len(values) // 2 :], dtype=pl.String))
    return series


def _expected(values: list[str | None], pattern: re.Pattern[str]) -> list[int]:
    return [
        MISSING if not v else OK if pattern.fullmatch(v) and not v.endswith("\n") else BAD
        for v in values
    ]


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_formats_agree_with_the_contract_regexes(values: list[str | None]) -> None:
    series = _chunked(values)
    assert check_format(series, CHANNEL).tolist() == _expected(values, _CHANNEL_RE)
    assert check_format(series, REGION).tolist() == _expected(values, _REGION_RE)
    assert check_format(series, CODE).tolist() == _expected(values, _CODE_RE)


def test_code_classes_name_the_approval_codes() -> None:
    table = code_classes(dict.fromkeys(APPROVAL_CODES, 4))
    codes = pl.Series(["00", "08", "51", "5", None, "0A"])
    assert check_format(codes, CODE, table).tolist() == [4, 4, OK, BAD, MISSING, OK]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.from_regex(r"\A[0-9]{1,17}(\.[0-9]{0,6})?\Z"),
            st.sampled_from(["", "1e3", ".5", "-0", "inf", "nan", " 1", "+1", "0x10", "fast"]),
        ),
        max_size=40,
    )
)
def test_plain_numbers_are_the_doubles_polars_parses(values: list[str | None]) -> None:
    series = _chunked(values)
    value, status = parse_plain_numbers(series)
    reference = series.cast(pl.Float64, strict=False).to_numpy()
    for v, got, st_, want in zip(values, value, status, reference, strict=True):
        if not v:
            assert st_ == MISSING
        elif st_ == OK:
            assert np.float64(got).tobytes() == np.float64(want).tobytes(), v
        else:
            assert st_ == BAD


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from([*OUTCOMES, "", "Approved", "ok", "x" * 20])),
                max_size=40))
def test_choices_are_what_an_enum_cast_says(values: list[str | None]) -> None:
    codes = match_choices(_chunked(values), OUTCOMES)
    for v, code in zip(values, codes, strict=True):
        if not v:
            assert code == NO_VALUE
        elif v in OUTCOMES:
            assert code == OUTCOMES.index(v)
        else:
            assert code == NO_MATCH


@settings(max_examples=100, deadline=None)
@given(VALUES)
def test_length_range_of_present_values(values: list[str | None]) -> None:
    present = [len(v.encode()) for v in values if v is not None]
    expected = (min(present), max(present)) if present else (-1, -1)
    assert byte_length_range(_chunked(values)) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(
                [
                    "2026-11-11T20:00:00.250+08:00",
                    "2026-11-11T20:00:60Z",
                    "2026-11-11 25:00:00Z",
                    "2026-02-29T00:00:00Z",
                    "2024-02-29T23:59:59.999999999-05:30",
                    "2026-11-11T20:00:00",
                    "1899-12-31T23:59:59Z",
                    "1795737600758",
                    "2026-11-1xT20:00:00Z",
                    "",
                ]
            ),
            st.from_regex(r"\A20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]Z\Z"),
        ),
        max_size=30,
    )
)
def test_timestamps_do_not_depend_on_the_row_before(values: list[str | None]) -> None:
    """The kernel remembers the previous row's date; every row must still read
    exactly as it would alone."""
    got_us, got_status = parse_timestamps(_chunked(values))
    for v, us, status in zip(values, got_us, got_status, strict=True):
        alone_us, alone_status = parse_timestamps(pl.Series([v], dtype=pl.String))
        assert status == alone_status[0], v
        if status == OK:
            assert us == alone_us[0], v


def test_id_index_answers_like_a_set() -> None:
    """Across bitmap growths and run merges, the index knows exactly what was added."""
    from tapshield.events.idindex import EventIdIndex

    rng = np.random.default_rng(7)
    index, added = EventIdIndex(), set()
    for batch in range(60):
        fresh = rng.integers(0, 2**64, 3000, dtype=np.uint64)
        again = np.array(sorted(added)[: batch * 50], dtype=np.uint64)
        queries = np.sort(np.concatenate([fresh, again, np.zeros(batch % 2, dtype=np.uint64)]))
        seen = index.seen_sorted(queries)
        assert seen.tolist() == [int(q) in added for q in queries]
        new = np.unique(queries[~seen])
        index.add_sorted(new)
        added.update(int(q) for q in new)
        assert index.size == len(added)
