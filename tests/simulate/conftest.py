"""Small worlds for fast simulator tests: the packaged traffic model with a
smaller population, and scenarios written as YAML files (so every test also
goes through the loader and its validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tapshield.simulate import Scenario, load_scenario
from tapshield.simulate.model import _default_traffic_text


@pytest.fixture(scope="session")
def small_traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load(_default_traffic_text())
    data["population"]["users"] = 20_000
    data["population"]["merchants"] = 3_000
    path = tmp_path_factory.mktemp("traffic") / "small-traffic.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_scenario(folder: Path, traffic: Path, **fields: Any) -> Scenario:
    """Write a scenario YAML (defaults: 3 h from 08:00 on a Tuesday, scale 2) and load it."""
    data: dict[str, Any] = {
        "name": "test",
        "start": "2026-11-24T08:00:00+08:00",
        "duration": "3h",
        "seed": 5,
        "scale": 2.0,
        "traffic": str(traffic),
        "faults": [],
    }
    data.update(fields)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_scenario(path)
