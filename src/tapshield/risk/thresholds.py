"""Decision thresholds chosen from a false-decline budget, not set by hand.

A risk team states what good customers may bear: at most ``decline`` of
genuine payments declined (default 0.1 %) and at most ``step_up`` more asked
for strong verification (default 1 %). On the latest labelled weeks the
decline threshold is the score above which exactly that share of genuine
payments lies; the step-up threshold the score above which ``decline +
step_up`` lies. What the thresholds catch there (frauds, amounts) is stored
with them, with a 95 % interval on the realised false-decline rate: with
40,000 genuine payments a 0.1 % budget rests on 40 of them, and the interval
says how sure that is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tapshield.risk.metrics import threshold_at, wilson


@dataclass(frozen=True, slots=True)
class Budget:
    decline: float = 0.001
    """Largest share of genuine payments declined."""
    step_up: float = 0.01
    """Largest further share of genuine payments asked for strong verification."""

    def __post_init__(self) -> None:
        for name in ("decline", "step_up"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"budget {name} must be in [0, 1), got {v}")

    def to_dict(self) -> dict[str, float]:
        return {"decline": self.decline, "step_up": self.step_up}


@dataclass(frozen=True, slots=True)
class Thresholds:
    decline: float
    step_up: float
    budget: Budget = field(default_factory=Budget)
    measured: dict[str, Any] = field(default_factory=dict)
    """What the thresholds did on the rows they were chosen on."""

    def decide(self, score: float) -> str:
        if score > self.decline:
            return "decline"
        if score > self.step_up:
            return "step_up"
        return "approve"

    def to_dict(self) -> dict[str, Any]:
        return {"decline": self.decline, "step_up": self.step_up,
                "budget": self.budget.to_dict(), "measured": self.measured}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Thresholds:
        b = d.get("budget", {})
        return cls(decline=float(d["decline"]), step_up=float(d["step_up"]),
                   budget=Budget(float(b.get("decline", 0.001)), float(b.get("step_up", 0.01))),
                   measured=dict(d.get("measured", {})))


def choose_thresholds(score: np.ndarray, y: np.ndarray, amount_fen: np.ndarray,
                      budget: Budget) -> Thresholds:
    """Thresholds meeting ``budget`` on labelled rows (scores calibrated)."""
    s = np.asarray(score, np.float64)
    g = s[y == 0]
    t_dec = threshold_at(g, budget.decline)
    t_step = min(threshold_at(g, budget.decline + budget.step_up), t_dec)
    measured: dict[str, Any] = {"rows": int(s.size), "genuine": int(g.size),
                                "fraud": int((y == 1).sum())}
    for name, t in (("decline", t_dec), ("step_up_or_decline", t_step)):
        hit = s > t
        k = int((hit & (y == 0)).sum())
        lo, hi = wilson(k, int(g.size))
        fraud = y == 1
        measured[name] = {
            "genuine_rate": k / max(1, g.size), "genuine_rate_95ci": [lo, hi],
            "fraud_recall": float((hit & fraud).sum() / max(1, fraud.sum())),
            "fraud_amount_caught_fen": int(amount_fen[hit & fraud].sum()),
            "fraud_amount_fen": int(amount_fen[fraud].sum()),
        }
    return Thresholds(decline=t_dec, step_up=t_step, budget=budget, measured=measured)


def as_dict(b: Budget) -> dict[str, Any]:
    return asdict(b)
