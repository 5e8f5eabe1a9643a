from __future__ import annotations

from pathlib import Path

import pytest

from tapshield.errors import ContractError
from tapshield.events.changes import read_changes, scope_of


def test_public_example_is_accepted(examples: Path) -> None:
    result = read_changes(examples / "changes.csv")
    assert result.rejects.height == 0
    assert result.valid["kind"].cast(str).to_list() == ["deploy", "maintenance"]
    assert result.valid["version"][1] is None, "empty optional fields stay empty"


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("2026-11-27T08:00:00+08:00,deploi,gateway,v1,,", "kind: enum"),
        ("yesterday,deploy,gateway,v1,,", "ts: timestamp"),
        ("2026-11-27T08:00:00+08:00,deploy,gate way,v1,,", "component: format"),
        ("2026-11-27T08:00:00+08:00,maintenance,channel:nfc,,,", "end_ts: maintenance_end"),
        ("2026-11-27T08:00:00+08:00,maintenance,channel:nfc,,2026-11-27T07:00:00+08:00,",
         "end_ts: end_before_start"),
        (",deploy,gateway,v1,,", "ts: required"),
    ],
)
def test_each_rule_rejects_its_row(tmp_path: Path, line: str, rule: str) -> None:
    path = tmp_path / "changes.csv"
    path.write_text(
        "ts,kind,component,version,end_ts,note\n"
        "2026-11-27T07:00:00+08:00,config,gateway,c1,,ok\n" + line + "\n"
    )
    result = read_changes(path)
    assert result.valid.height == 1
    assert result.rejects["row"].to_list() == [2]
    assert rule in result.rejects["errors"][0]


def test_jsonl_and_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text('{"ts": 1795737600000, "kind": "rule_change", "component": "risk_rules"}\nxx\n')
    result = read_changes(p)
    assert result.valid.height == 1 and result.rejects["errors"].to_list() == ["*: json_syntax"]
    bad = tmp_path / "c.csv"
    bad.write_text("ts,component\n2026-11-27T07:00:00+08:00,app\n")
    with pytest.raises(ContractError, match="missing required changes column kind"):
        read_changes(bad)


def test_scope_of_component() -> None:
    assert scope_of("channel:nfc") == {"channel": "nfc"}
    assert scope_of("gateway") == {}
    assert scope_of("risk_rules") == {}
