"""Every assumption of the impact model, in one place, with its reason.

A credit officer reviewing an impact report must be able to see (and change)
each number the model assumed. Defaults are chosen from how payments and
lending work, not fitted to any data set; the regulatory thresholds live in
``regulatory.yaml`` (each with its legal source), loaded by
:mod:`tapshield.impact.regulatory`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tapshield.config import Duration
from tapshield.errors import ContractError
from tapshield.timeutil import DEFAULT_TZ


@dataclass(frozen=True, slots=True)
class ImpactConfig:
    """Knobs of the lost-sales and borrower-stress model."""

    tz: str = DEFAULT_TZ
    """Business time zone: days, hours-of-week and repayment periods are local."""

    recovery_tail: timedelta = timedelta(hours=1)
    """Hours after an incident's end still measured for lost sales. Customers who
    met a failure come back over the next hour or so; the counterfactual-minus-
    actual over the tail measures (not assumes) how many did."""

    recapture_window: timedelta = timedelta(minutes=30)
    """A payment by the same customer at the same merchant within this time after
    a failed tap is a rescue of that sale. At a till the customer switches method
    within a minute or two; 30 minutes also covers online checkouts retried later
    without crediting unrelated later purchases as rescues."""

    history_weeks: int = 4
    """Weeks of hour-of-week history behind the counterfactual: a month balances
    recency (trend, merchant growth) against the noise of few samples."""

    min_weeks: int = 2
    """Fewest clean same-hour-of-week samples for the seasonal counterfactual; with
    one sample its variance cannot be estimated."""

    history_days: int = 7
    """Fallback: days of same-hour-of-day history when weeks are missing."""

    min_days: int = 3
    """Fewest clean same-hour-of-day samples for the daily fallback."""

    confidence: Decimal = Decimal("0.90")
    """Central coverage of the lost-sales bands (normal approximation)."""

    context_hours: int = 3
    """Hours before and after the impact window drawn in the timeline plot."""

    settlement_lag_days: int = 1
    """Card and QR sales reach the merchant's account T+1: lost sales become a cash
    shortfall one day later."""

    horizon_days: int = 92
    """Days of cash and repayments projected for the liquidity test: the current
    and the next monthly period at least."""

    bridge_buffer: Decimal = Decimal("0.10")
    """Bridge lines are sized to the gap at the upper band of lost cash flow, plus
    this share for settlement timing and fees."""

    reage_below_dscr: Decimal = Decimal("1.00")
    """Re-ageing is recommended only if the stressed DSCR of the period after
    recovery stays below this: below 1.0 the borrower cannot pay from cash flow
    even once sales are back, so deferral alone does not cure it."""


    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, source: str = "impact config",
                     node: Any = None) -> ImpactConfig:
        """Build from a YAML/JSON mapping, validated by :class:`ImpactFile` (errors name
        the field, and the line when ``node`` is the mapping's YAML node)."""
        from tapshield.config import validate_mapping

        f = validate_mapping(ImpactFile, data, node, source, docs="docs/impact.md")
        kw: dict[str, Any] = {k: v for k, v in f.model_dump(exclude_none=True).items()
                              if k not in ("recovery_tail_hours", "recapture_minutes")}
        if f.recovery_tail_hours is not None:
            kw.setdefault("recovery_tail", timedelta(hours=f.recovery_tail_hours))
        if f.recapture_minutes is not None:
            kw.setdefault("recapture_window", timedelta(minutes=f.recapture_minutes))
        cfg = replace(cls(), **kw)
        cfg.check()
        return cfg

    @classmethod
    def load(cls, path: Path | str) -> ImpactConfig:
        """An impact config file (the fields at the top level or under ``impact:``)."""
        import yaml

        from tapshield.config import read_yaml

        p = Path(path)
        data, node = read_yaml(p.read_text(encoding="utf-8"), p.name)
        data = data or {}
        if isinstance(data, dict) and "impact" in data and isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == "impact"), node)
            data = data["impact"]
        return cls.from_mapping(data, source=p.name, node=node)

    def check(self) -> None:
        if not Decimal("0.5") <= self.confidence < 1:
            raise ContractError("impact config: confidence must be in [0.5, 1)")
        if self.min_weeks < 2 or self.history_weeks < self.min_weeks:
            raise ContractError("impact config: need history_weeks >= min_weeks >= 2")
        if self.min_days < 2 or self.history_days < self.min_days:
            raise ContractError("impact config: need history_days >= min_days >= 2")
        if self.horizon_days < 31:
            raise ContractError("impact config: horizon_days must cover a period (>= 31)")
        if self.recovery_tail < timedelta(0) or self.recapture_window <= timedelta(0):
            raise ContractError("impact config: negative recovery tail or empty recapture window")

    def as_dict(self) -> dict[str, Any]:
        return {
            "tz": self.tz,
            "recovery_tail_hours": self.recovery_tail.total_seconds() / 3600,
            "recapture_minutes": self.recapture_window.total_seconds() / 60,
            "history_weeks": self.history_weeks,
            "min_weeks": self.min_weeks,
            "history_days": self.history_days,
            "min_days": self.min_days,
            "confidence": str(self.confidence),
            "settlement_lag_days": self.settlement_lag_days,
            "horizon_days": self.horizon_days,
            "bridge_buffer": str(self.bridge_buffer),
            "reage_below_dscr": str(self.reage_below_dscr),
        }


class ImpactFile(BaseModel):
    """What an impact config file may say (every field optional: defaults above).

    Durations use the one grammar (``recovery_tail: 90m``); the older
    ``recovery_tail_hours`` / ``recapture_minutes`` numbers are still read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tz: str | None = None
    recovery_tail: Duration | None = None
    recovery_tail_hours: float | None = None
    recapture_window: Duration | None = None
    recapture_minutes: float | None = None
    history_weeks: int | None = None
    min_weeks: int | None = None
    history_days: int | None = None
    min_days: int | None = None
    confidence: Decimal | None = None
    context_hours: int | None = None
    settlement_lag_days: int | None = None
    horizon_days: int | None = None
    bridge_buffer: Decimal | None = None
    reage_below_dscr: Decimal | None = None
