"""Rules: the live evaluator and the columnar one agree, bad rules are refused by name."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapshield.risk.engine import known_name
from tapshield.risk.rules import Condition, RuleError, load_rules

CONDITIONS = [
    "amount > 100 and user_cnt_1h >= 3",
    "not (amount > 100) or channel == 'qr'",
    "region in ['CN-GD', 'CN-ZJ'] and not user_cnt_1h < 2",
    "amount / user_cnt_1h > 50",
    "amount - 2 * user_cnt_1h != 10 or region not in ['CN-BJ']",
    "score > 0.2 and (channel != 'nfc' or amount <= -1 + 5)",
    "50 < amount <= 300",
]

values = st.one_of(st.none(), st.floats(-5, 500, allow_nan=False), st.sampled_from([0.0, 10.0]))
texts = st.one_of(st.none(), st.sampled_from(["CN-GD", "CN-ZJ", "CN-BJ"]))
channels = st.one_of(st.none(), st.sampled_from(["nfc", "qr"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(values, values, values, texts, channels), min_size=1, max_size=30))
def test_live_and_columnar_evaluation_agree(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    frame = pl.DataFrame(rows, schema={"amount": pl.Float64, "user_cnt_1h": pl.Float64,
                                       "score": pl.Float64, "region": pl.String,
                                       "channel": pl.String}, orient="row")
    for text in CONDITIONS:
        cond = Condition.parse(text, known_name())
        pred = cond.compile()
        live = [pred(lambda n, r=r: r[n]) is True for r in frame.iter_rows(named=True)]
        cols = frame.select(cond.expr().fill_null(False)).to_series().to_list()
        assert live == cols, text


def test_missing_values_do_not_fire() -> None:
    pred = Condition.parse("not (amount > 100)", known_name()).compile()
    assert pred(lambda n: None) is None  # unknown, so the rule does not fire
    pred = Condition.parse("amount > 100 or channel == 'qr'", known_name()).compile()
    assert pred(lambda n: {"amount": None, "channel": "qr"}[n]) is True


@pytest.mark.parametrize("bad, message", [
    ("__import__('os').system('x')", "not allowed"),
    ("amount > 1 and nosuchfeature", "unknown name"),
    ("amount >", "cannot parse"),
    ("amount.real > 1", "not allowed"),
    ("amount > True", "use comparisons"),
])
def test_bad_conditions_are_refused(bad: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        Condition.parse(bad, known_name())


def test_rule_file_errors_name_the_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "r.yaml"
    p.write_text("version: v1\nrules:\n  - id: a\n    when: amount > 1\n    action: block\n")
    with pytest.raises(RuleError, match="rule a: action must be one of"):
        load_rules(p, known=known_name())
    p.write_text("rules: []\n")
    with pytest.raises(RuleError, match="needs a `version`"):
        load_rules(p, known=known_name())
    p.write_text("version: v1\nlists:\n  deny:\n    card: [x]\n")
    with pytest.raises(RuleError, match=r"lists\.deny\.card"):
        load_rules(p, known=known_name())
