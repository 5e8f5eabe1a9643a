"""Rehearse: drills that run a simulated fault through the whole pipeline and
grade the response against the ground truth (see docs/drills.md).

:func:`score` is pure (incidents, alerts, truth -> :class:`Scorecard`).
Running a drill (simulate, analyse, replay failover, score) is a use case:
:func:`tapshield.app.drill.run_drill`.
"""

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
    "FaultScore",
    "Scorecard",
    "assign",
    "compatible",
    "scope_f1",
    "score",
]
