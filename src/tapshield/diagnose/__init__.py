"""Diagnose: which slice is failing (scope localisation) and why (cause classification)."""

from tapshield.diagnose.types import Cause, Diagnosis, DiagnosisRequest, Failure

__all__ = ["Cause", "Diagnosis", "DiagnosisRequest", "Failure"]
