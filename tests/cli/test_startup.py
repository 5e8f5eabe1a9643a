"""``tapshield --help`` and ``--version`` load no command's dependencies.

Each command imports what it needs when it runs (item 6 of issue 11): the help
screen of a tool used from shells and CI must not pay for SciPy, the Numba
kernels and Polars. This checks which modules were loaded, not how long it
took (timings live in benchmarks/startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("scipy", "numba", "polars", "numpy", "pyarrow", "sqlalchemy", "jinja2", "lightgbm",
         "fastapi", "prometheus_client", "httpx", "tapshield.monitor", "tapshield.pipeline")

PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["tapshield", *json.loads(sys.argv[1])]
from tapshield.cli import main
try:
    main()
except SystemExit:
    pass
loaded = sorted({m for m in sys.modules for h in heavy
                 if m == h or m.startswith(h + ".")})
sys.stderr.write("LOADED " + json.dumps(loaded) + "\\n")
"""


def loaded_by(*args: str) -> list[str]:
    env = dict(os.environ, COLUMNS="100")
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )
    line = next(x for x in run.stderr.splitlines() if x.startswith("LOADED "))
    assert run.stdout, run.stderr
    return list(json.loads(line.removeprefix("LOADED ")))


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("analyze", "--help"),
                                  ("live", "--help"), ("drill", "--help")])
def test_help_and_version_load_no_heavy_module(args: tuple[str, ...]) -> None:
    assert loaded_by(*args) == []


def test_the_probe_can_fail() -> None:
    """The probe sees a heavy import when one happens (a command that runs does)."""
    assert "polars" in loaded_by("simulate", "--list")
