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
