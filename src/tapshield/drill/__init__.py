"""Rehearse: drills that run a simulated fault through the whole pipeline and
grade the response against the ground truth (see docs/drills.md).

:func:`score` is pure (incidents, alerts, truth -> :class:`Scorecard`);
:func:`run_drill` simulates, analyses, replays failover and scores.
"""

from tapshield.drill.run import DrillResult, PipelineMissingError, run_drill, saved_by_failover
from tapshield.drill.score import (
    PAGING_LEVEL,
    FaultScore,
    Scorecard,
    assign,
    compatible,
    scope_f1,
    score,
)

__all__ = [
    "PAGING_LEVEL",
    "DrillResult",
    "FaultScore",
    "PipelineMissingError",
    "Scorecard",
    "assign",
    "compatible",
    "run_drill",
    "saved_by_failover",
    "scope_f1",
    "score",
]
