"""Scoring localisation the way the literature does: exact-match combinations.

Per case, a predicted combination is a true positive only when it equals a
true combination exactly (same dimensions, same values); precision, recall
and F1 are computed on the counts summed over all cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: Sequence[dict[str, str]], truth: Sequence[dict[str, str]]) -> bool:
        """Count one case; True if it was answered exactly."""
        pred = {_key(c) for c in predicted}
        true = {_key(c) for c in truth}
        hit = len(pred & true)
        self.tp += hit
        self.fp += len(pred) - hit
        self.fn += len(true) - hit
        return pred == true

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _key(combo: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in combo.items()))


def f1(cases: Iterable[tuple[Sequence[dict[str, str]], Sequence[dict[str, str]]]]) -> float:
    t = Tally()
    for pred, truth in cases:
        t.add(pred, truth)
    return t.f1
