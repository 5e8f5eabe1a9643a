"""Run the generic detector over a whole :class:`Series` and lay out NAB-style results."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import polars as pl

from tapshield.detect.detector import (
    DEFAULT_CONFIG,
    FEATURES,
    DetectorConfig,
    GenericDetector,
    Verdicts,
)
from tapshield.detect.series import Series

#: points handed to the detector per call (results do not depend on it)
CHUNK = 20_000


def detect_series(series: Series, config: DetectorConfig = DEFAULT_CONFIG,
                  progress: Callable[[int], None] | None = None) -> Verdicts:
    """Score every point of ``series`` in time order, as a live stream would."""
    det = GenericDetector(config)
    parts = []
    for a in range(0, len(series), CHUNK):
        parts.append(det.update_many(series.ts_us[a : a + CHUNK], series.values[a : a + CHUNK]))
        if progress is not None:
            progress(min(CHUNK, len(series) - a))
    if not parts:
        return Verdicts(np.ones(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int8))
    return Verdicts(
        p_value=np.concatenate([v.p_value for v in parts]),
        alert=np.concatenate([v.alert for v in parts]),
        driver=np.concatenate([v.driver for v in parts]),
    )


def results_frame(series: Series, verdicts: Verdicts) -> pl.DataFrame:
    """``timestamp, value, anomaly_score, alert, repeat, gap``: one row per input row.

    The first four columns are the NAB results layout. Rows are the input's, in
    its order (nothing merged, dropped or added); the value is written as it was
    read (no float round trip). Missing points keep an empty value and an empty
    score. ``anomaly_score`` is ``1 - p``; ``alert`` is 1 where
    the detector raised an alert; ``repeat`` is 1 where the timestamp does not
    advance (repeated or earlier), ``gap`` where the row follows a gap in time.
    """
    value: pl.Series | npt.NDArray[np.float64] = (
        pl.Series(series.value_text, dtype=pl.String) if series.value_text is not None
        else series.values)
    return pl.DataFrame({
        "timestamp": series.labels,
        "value": value,
        "anomaly_score": 1.0 - verdicts.p_value,
        "alert": verdicts.alert.astype(np.int8),
        "repeat": series.repeat.astype(np.int8),
        "gap": series.gap.astype(np.int8),
    }).with_columns(pl.col("anomaly_score").fill_nan(None)).with_columns(
        pl.col("value").fill_nan(None) if series.value_text is None else pl.col("value"))


def driver_names(verdicts: Verdicts) -> list[str | None]:
    return [FEATURES[d] if d >= 0 else None for d in verdicts.driver.tolist()]
