"""Diagnosis gives the same answer in every process, whatever Python's string hashing.

Python salts ``hash(str)`` per process (PYTHONHASHSEED), so a set of dimension
names iterates in a different order in every run. Screening broke ties between
equally scored dimensions in that order, and ``tapshield analyze`` named
different scopes for the same small fraud notices from one run to the next
(the declines of one card tester's phone tie on carrier, os and model).
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import numpy as np, polars as pl
from tapshield.diagnose.events import screen_dims
rng = np.random.default_rng(3)
n = 40_000
region = rng.choice([f"R{i}" for i in range(8)], n)
p = rng.choice([f"P{i}" for i in range(6)], n)
bucket = np.where(rng.random(n) < 0.5, 0, -1)
rate = np.full(n, 0.01)
now = bucket == 0
rate[now & (region == "R1")] = 0.6
rate[now & (p == "P2")] = 0.3   # q is a copy of p: the two always tie
frame = pl.DataFrame({"_bucket": bucket, "failed": rng.random(n) < rate,
                      "region": region, "p": p, "q": p, "z": rng.choice(["a", "b"], n)})
print(screen_dims(frame, "failed", ["region", "p", "q", "z"]),
      screen_dims(frame, "failed", ["region", "q", "p", "z"]))
"""


def test_tied_dimensions_are_chosen_in_the_order_given_in_every_process() -> None:
    expected = "['region', 'p', 'q', 'z'] ['region', 'q', 'p', 'z']"
    for seed in ("1", "2", "3", "4"):
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected, f"PYTHONHASHSEED={seed}"
