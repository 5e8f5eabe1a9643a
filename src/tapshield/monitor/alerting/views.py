"""Questions every stage asks of the recent events: which rows are in a slice,
which of them fail for a signal, can two slices share an event.

Shared by inhibition, measurement and the change-point estimate so each is
answered one way and cached once per view (views are read-only).
"""

from __future__ import annotations

import numpy as np

from tapshield.monitor import _kernels as kn
from tapshield.monitor.detectors import DetectorBank
from tapshield.monitor.recent import View
from tapshield.monitor.slices import SliceRegistry, intersects


class SliceViews:
    """Slice masks, row positions and failure indicators over a :class:`View`."""

    def __init__(self, registry: SliceRegistry, bank: DetectorBank) -> None:
        self.registry = registry
        self.bank = bank
        self._meet: dict[tuple[int, int], bool] = {}

    def meets(self, a: int, b: int) -> bool:
        """Can an event be in both slices (:func:`intersects`, remembered: slices never change)."""
        key = (a, b)
        got = self._meet.get(key)
        if got is None:
            infos = self.registry.infos
            got = self._meet[key] = intersects(infos[a].mapping, infos[b].mapping)
        return got

    def mask(self, view: View, s: int | None) -> np.ndarray:
        """Rows of ``view`` in slice ``s`` (read-only, cached on the view)."""
        if s is None:
            return np.zeros(view.size, dtype=bool)
        j = self.registry.infos[s].set_index
        return view.cached(("slice", s), lambda v: v.member[:, j] == s)

    def rows(self, view: View, s: int) -> np.ndarray:
        """Positions of slice ``s``'s rows in ``view`` (``np.flatnonzero`` of its mask)."""
        j = self.registry.infos[s].set_index
        return view.where(("slice", s), lambda v: v.member[:, j] == s)

    def indicator(self, view: View, s: int, sig: int) -> np.ndarray:
        """Rows of ``view`` that are failures for ``sig`` (read-only, cached on the view)."""
        if sig == kn.SIG_TECHNICAL:
            return view.cached(("y", sig), lambda v: (v.cls == kn.FAILED) | (v.cls == kn.TIMEOUT))
        if sig == kn.SIG_DECLINE:
            return view.cached(("y", sig), lambda v: (v.cls == kn.DECLINE) & ~v.dup)
        if sig == kn.SIG_RISK:
            return view.cached(("y", sig), lambda v: (v.cls == kn.RISK) & ~v.dup)
        thr = float(self.bank.lat_thr[s])

        def slow(v: View) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                out = v.lat > thr
            return np.asarray(out & (v.cls != kn.FAILED) & (v.cls != kn.TIMEOUT))

        return view.cached(("y", sig, thr), slow)

    def still_anomalous(self, y: np.ndarray, s: int, sig: int) -> tuple[bool, int]:
        """Does the CUSUM of failures ``y`` (in order) cross the test's threshold?
        ``(crossed, index where the winning run started or -1)``."""
        a0, a1 = self.bank.bank(s, sig)
        best, _i, start = kn.cusum_max(y, a0, a1) if y.size else (0.0, -1, -1)
        return best >= self.bank.threshold(sig), start


__all__ = ["SliceViews"]
