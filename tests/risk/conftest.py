"""Shared synthetic data and a small trained model for the risk tests."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pytest

from tapshield.risk import synth
from tapshield.risk.model import TrainConfig, TrainResult, train


@dataclass
class Trained:
    requests: pl.DataFrame
    labels: pl.DataFrame
    result: TrainResult


@pytest.fixture(scope="session")
def small_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return synth.generate(n_users=300, days=20, seed=3)


@pytest.fixture(scope="session")
def trained() -> Trained:
    req, lab = synth.generate(n_users=600, days=40, seed=5)
    cfg = TrainConfig(max_rounds=60, early_stopping=20, num_leaves=7, threads=1)
    return Trained(req, lab, train(req, lab, config=cfg))
