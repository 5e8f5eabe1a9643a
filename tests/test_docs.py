"""The documentation stays true to the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from tapshield.events.changes import CHANGES
from tapshield.events.schema import contract_markdown

ROOT = Path(__file__).resolve().parents[1]


def _section(text: str, name: str) -> str:
    m = re.search(rf"<!-- BEGIN {name} \(generated\) -->\n(.*?)\n<!-- END {name} -->", text, re.S)
    assert m, f"section {name} missing"
    return m.group(1).strip()


def test_contract_tables_match_the_code() -> None:
    doc = (ROOT / "docs" / "contracts.md").read_text()
    assert _section(doc, "events-contract") == contract_markdown().strip()
    assert _section(doc, "changes-contract") == CHANGES.markdown().strip()


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in readme and "scripts/test" in ci
    assert "tapshield demo" in readme


def test_readme_scenario_library_matches_the_library() -> None:
    from tapshield.simulate import load_scenario, scenario_names

    m = re.search(r"<!-- BEGIN scenario-library -->\n(.*?)\n<!-- END scenario-library -->",
                  (ROOT / "README.md").read_text(), re.S)
    assert m, "README's scenario table is missing"
    table = m.group(1).strip()
    rows = [r.split("|") for r in table.splitlines()[2:]]
    listed = {r[1].strip().strip("`"): {k.strip() for k in r[2].split(",")} for r in rows}
    assert sorted(listed) == sorted(scenario_names())
    for name, kinds in listed.items():
        sc = load_scenario(name)
        actual = {f.kind for f in sc.faults} | ({"festival"} if sc.festival else set())
        assert kinds == actual, name


def test_risk_contract_tables_match_the_code() -> None:
    from tapshield.risk.contract import LABELS, REQUESTS

    doc = (ROOT / "docs" / "contracts.md").read_text()
    assert _section(doc, "requests-contract") == REQUESTS.markdown().strip()
    assert _section(doc, "labels-contract") == LABELS.markdown().strip()
