"""Loading the NAB v1.1 corpus (series and combined windows) for the NAB benchmarks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tapshield.detect import nab

NAB_ROOT = Path(os.environ.get("TAPSHIELD_SHARED", Path(__file__).resolve().parents[2] / "shared")
                ) / "data" / "nab"

#: categories kept out of every design decision while the detector was developed
HELD_OUT = ("realTweets", "realTraffic")


@dataclass(frozen=True)
class NabFile:
    """One NAB series: rows in file order, exactly as NAB feeds them to a detector."""

    name: str  # category/file.csv
    timestamps: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]
    windows: list[tuple[int, int]]  # row indices (first, last) of each window

    @property
    def category(self) -> str:
        return self.name.split("/")[0]

    def stream_us(self) -> npt.NDArray[np.int64]:
        """Epoch microseconds of every row, in file order, as ``tapshield detect`` feeds them.

        Eight NAB files repeat or step back a timestamp (clock changes in the
        source data); NAB scores every row in file order, and so does the
        detector: a row that does not advance in time is scored as arriving just
        after the previous one (:class:`tapshield.detect.GenericDetector`).
        """
        return self.timestamps.astype("datetime64[us]").astype(np.int64)


def load(root: Path = NAB_ROOT) -> list[NabFile]:
    windows = json.loads((root / "combined_windows.json").read_text())
    out = []
    for name in sorted(windows):
        df = pl.read_csv(root / "data" / name)
        ts = df["timestamp"].str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us").to_numpy()
        bounds = [(np.datetime64(a[:19].replace(" ", "T"), "us"),
                   np.datetime64(b[:19].replace(" ", "T"), "us")) for a, b in windows[name]]
        out.append(NabFile(name=name, timestamps=ts,
                           values=df["value"].cast(pl.Float64).to_numpy(),
                           windows=nab.window_rows(ts, bounds)))
    return out
