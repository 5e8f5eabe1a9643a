"""docs/routing.md's threshold table is what the code computes."""

from __future__ import annotations

import re
from pathlib import Path

from tapshield.route.stats import failures_to_eliminate, readmission_test

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def test_elimination_table_matches_the_statistics() -> None:
    rows = re.findall(r"^\| ([\d.]+) %[^|]*\| ([\d */]+) \| (\d+) \|$", DOC.read_text(), re.M)
    assert len(rows) == 5
    for pct, ks, probes in rows:
        p0 = float(pct) / 100
        expected = [failures_to_eliminate(p0, 0.5, arl) for arl in (1e4, 1e6, 1e8)]
        assert [int(k) for k in re.findall(r"\d+", ks)] == expected
        assert int(probes) == readmission_test(p0, 0.5, 0.001).successes_in_a_row
