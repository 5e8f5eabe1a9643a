"""Rehearse: a traffic and fault simulator with exact ground truth.

* :func:`load_scenario` reads a scenario from the packaged library (by name)
  or a YAML file (by path), validated against its traffic model;
* :func:`generate` yields canonical event batches in event-time order;
* :func:`simulate` writes the events, ``changes.csv`` and ``truth.json``;
* :class:`World` is the ground-truth environment routers are replayed against;
* :mod:`tapshield.simulate.live` paces the stream at real or accelerated time.

See docs/simulator.md for the traffic model and the scenario library.
"""

from tapshield.simulate.model import (
    Scenario,
    ScenarioError,
    TrafficModel,
    load_scenario,
    load_traffic,
    scenario_names,
)
from tapshield.simulate.run import (
    SimulationResult,
    changes_of,
    expected_events,
    generate,
    simulate,
)
from tapshield.simulate.truth import FaultTruth, Truth, read_truth
from tapshield.simulate.world import World

__all__ = [
    "FaultTruth",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "TrafficModel",
    "Truth",
    "World",
    "changes_of",
    "expected_events",
    "generate",
    "load_scenario",
    "load_traffic",
    "read_truth",
    "scenario_names",
    "simulate",
]
