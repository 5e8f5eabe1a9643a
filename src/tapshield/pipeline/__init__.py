"""The analysis pipeline: events in, alerts and diagnosed incidents out.

Use :func:`analyze_frames` for a whole stream (a file replay) or
:class:`Analysis` to feed batches yourself (live mode).
"""

from tapshield.pipeline.analyze import (
    Analysis,
    AnalysisResult,
    Extension,
    PipelineConfig,
    Sink,
    analyze_frames,
)
from tapshield.pipeline.ordering import Reorderer
from tapshield.pipeline.window import EventWindow

__all__ = [
    "Analysis",
    "AnalysisResult",
    "EventWindow",
    "Extension",
    "PipelineConfig",
    "Reorderer",
    "Sink",
    "analyze_frames",
]
