"""Diagnose: which slice is failing (scope localisation) and why (cause classification).

* :func:`localize` / :func:`localize_cube`: the root-cause combinations of a
  failure wave in a count table (any dimensions, any export);
* :func:`diagnose`: scope, cause, confidence and evidence for one incident,
  from canonical events and the changes file (called by the pipeline).
"""

from tapshield.diagnose.cube import Cube, cube_from_leaves, cube_from_table, read_table
from tapshield.diagnose.diagnosis import diagnose
from tapshield.diagnose.localizer import (
    Localization,
    LocalizeConfig,
    RootCause,
    localize,
    localize_cube,
)
from tapshield.diagnose.types import Cause, Diagnosis, DiagnosisRequest, Failure

__all__ = [
    "Cause",
    "Cube",
    "Diagnosis",
    "DiagnosisRequest",
    "Failure",
    "Localization",
    "LocalizeConfig",
    "RootCause",
    "cube_from_leaves",
    "cube_from_table",
    "diagnose",
    "localize",
    "localize_cube",
    "read_table",
]
