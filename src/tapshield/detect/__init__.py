"""A streaming anomaly detector for any metric series, and NAB scoring to measure it.

* :class:`GenericDetector` (one fixed configuration, :data:`DEFAULT_CONFIG`);
* :func:`detect_frame`: the detector over a Polars frame of ``timestamp, value``;
* :mod:`tapshield.detect.nab`: the Numenta Anomaly Benchmark's scoring rules.
"""

from tapshield.detect.detector import (
    DEFAULT_CONFIG,
    FEATURES,
    DetectorConfig,
    GenericDetector,
    Verdict,
    Verdicts,
)

__all__ = [
    "DEFAULT_CONFIG",
    "FEATURES",
    "DetectorConfig",
    "GenericDetector",
    "Verdict",
    "Verdicts",
]
