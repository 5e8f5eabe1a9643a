"""A LightGBM model as flat arrays, walked by Numba: score and contributions per row.

Why not ``Booster.predict`` for a live decision: one call costs tens of
microseconds of Python and C API overhead before any tree is walked, and
``pred_contrib`` (TreeSHAP) costs milliseconds per row for a few hundred
trees. A decision engine answers in well under a millisecond, with reasons.
Walking the same trees here gives the same raw score (a test checks it against
LightGBM to 1e-9) and, on the way, each feature's contribution along the
path the row took (the change in the node's expected value at each split on
that feature: the Saabas decomposition; contributions plus the trees' root
values add up to the raw score exactly). Reason codes rank those.

Missing values follow LightGBM's rules exactly: a NaN goes the split's default
way when the split learnt a NaN direction (``missing_type`` NaN), is read as
0.0 otherwise; with ``missing_type`` Zero, zero and NaN both go the default way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}
K_ZERO = 1e-35


@dataclass(frozen=True, slots=True)
class Forest:
    """Every tree's nodes in one set of arrays (node ids global)."""

    feature: np.ndarray  # int32, -1 at a leaf
    threshold: np.ndarray  # float64
    left: np.ndarray  # int32
    right: np.ndarray  # int32
    default_left: np.ndarray  # bool
    missing: np.ndarray  # int8
    value: np.ndarray  # float64: leaf value, or the node's expected value
    roots: np.ndarray  # int32
    n_features: int

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> Forest:
        """Build from ``Booster.dump_model()`` (numerical splits only)."""
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        default_left: list[bool] = []
        missing: list[int] = []
        value: list[float] = []
        roots: list[int] = []

        def add(node: dict[str, Any]) -> int:
            me = len(feature)
            feature.append(-1)
            threshold.append(0.0)
            left.append(-1)
            right.append(-1)
            default_left.append(False)
            missing.append(MISSING_NONE)
            if "leaf_value" in node:
                value.append(float(node["leaf_value"]))
                return me
            if node.get("decision_type", "<=") != "<=":
                raise ValueError("categorical splits are not supported")
            value.append(float(node.get("internal_value", 0.0)))
            feature[me] = int(node["split_feature"])
            threshold[me] = float(node["threshold"])
            default_left[me] = bool(node.get("default_left", True))
            missing[me] = _MISSING.get(str(node.get("missing_type", "None")), MISSING_NONE)
            lo = add(node["left_child"])
            hi = add(node["right_child"])
            left[me] = lo
            right[me] = hi
            return me

        for tree in dump["tree_info"]:
            roots.append(add(tree["tree_structure"]))
        return cls(
            feature=np.asarray(feature, np.int32),
            threshold=np.asarray(threshold, np.float64),
            left=np.asarray(left, np.int32),
            right=np.asarray(right, np.int32),
            default_left=np.asarray(default_left, np.bool_),
            missing=np.asarray(missing, np.int8),
            value=np.asarray(value, np.float64),
            roots=np.asarray(roots, np.int32),
            n_features=int(dump.get("max_feature_idx", 0)) + 1,
        )

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) of rows ``x`` (2-D)."""
        return _raw_many(np.ascontiguousarray(x, np.float64), *self._arrays())

    def contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(raw score, contributions [rows, features])``."""
        x = np.ascontiguousarray(x, np.float64)
        out = np.zeros((x.shape[0], self.n_features), np.float64)
        raw = _contrib_many(x, out, *self._arrays())
        return raw, out

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.feature, self.threshold, self.left, self.right, self.default_left,
                self.missing, self.value, self.roots)


@nb.njit(cache=True, inline="always")
def _go_left(fval: float, node: int, threshold: np.ndarray, default_left: np.ndarray,
             missing: np.ndarray) -> bool:
    m = missing[node]
    if np.isnan(fval) and m != MISSING_NAN:
        fval = 0.0
    if (m == MISSING_ZERO and abs(fval) <= K_ZERO) or (m == MISSING_NAN and np.isnan(fval)):
        return bool(default_left[node])
    return bool(fval <= threshold[node])


@nb.njit(cache=True, nogil=True)
def _raw_many(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
              right: np.ndarray, default_left: np.ndarray, missing: np.ndarray,
              value: np.ndarray, roots: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape[0], np.float64)
    for r in range(x.shape[0]):
        total = 0.0
        for t in range(roots.size):
            node = roots[t]
            while feature[node] >= 0:
                if _go_left(x[r, feature[node]], node, threshold, default_left, missing):
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        out[r] = total
    return out


@nb.njit(cache=True, nogil=True)
def _contrib_many(x: np.ndarray, out: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                  left: np.ndarray, right: np.ndarray, default_left: np.ndarray,
                  missing: np.ndarray, value: np.ndarray, roots: np.ndarray) -> np.ndarray:
    raw = np.zeros(x.shape[0], np.float64)
    for r in range(x.shape[0]):
        total = 0.0
        for t in range(roots.size):
            node = roots[t]
            while feature[node] >= 0:
                f = feature[node]
                nxt = left[node] if _go_left(x[r, f], node, threshold, default_left,
                                             missing) else right[node]
                out[r, f] += value[nxt] - value[node]
                node = nxt
            total += value[node]
        raw[r] = total
    return raw
