"""Four-level warnings: how bad a failure wave is, from figures a person can check.

The criteria (``levels.yaml``, documented field by field there) compare the
*excess* impact of a wave with thresholds per level. :class:`Impact` holds
the figures, :meth:`LevelCriteria.instant` gives the level they justify right
now, and :class:`LevelTracker` adds what time does: escalation after a
sustained wave, and de-escalation only after a hold, so a wave does not
bounce between levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tapshield.errors import ContractError
from tapshield.levels import NOTICE
from tapshield.money import decimal_to_fen, to_decimal


@dataclass(frozen=True, slots=True)
class LevelRule:
    """The criteria of one paging level (any of them is enough)."""

    level: int
    share_affected: float
    failed_payments_per_min: float
    lost_fen_per_min: int
    primary_share_affected: float
    sustained: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Impact:
    """Excess impact of one wave over the last minute (see ``levels.yaml``)."""

    share_affected: float = 0.0
    failed_payments_per_min: float = 0.0
    lost_fen_per_min: int = 0
    primary_involved: bool = False
    duration: timedelta = timedelta(0)
    excess_for: timedelta = timedelta(0)
    """How long the wave has shown excess without interruption (``page_after``)."""
    top_device_share: float = 0.0
    """The largest share of a slice's failing attempts made by one device (over
    the wave's slices; slices that are one device's doing add no excess)."""

    def as_figures(self) -> dict[str, Any]:
        from tapshield.money import format_fen

        return {
            "share_affected": round(self.share_affected, 6),
            "failed_payments_per_min": round(self.failed_payments_per_min, 2),
            "lost_amount_per_min": format_fen(self.lost_fen_per_min),
            "primary_channel_involved": self.primary_involved,
            "duration_s": round(self.duration.total_seconds(), 1),
            "top_device_share": round(self.top_device_share, 4),
        }


@dataclass(frozen=True, slots=True)
class LevelCriteria:
    primary_channel: str = "nfc"
    rules: tuple[LevelRule, ...] = ()
    deescalate_hold: timedelta = timedelta(minutes=5)
    max_top_device_share: float = 0.75
    page_after: dict[str, timedelta] = field(default_factory=dict)
    """Per signal family, how long a wave must have lasted before it may page."""

    @classmethod
    def default(cls) -> LevelCriteria:
        text = resources.files("tapshield.monitor").joinpath("levels.yaml").read_text("utf-8")
        return cls.from_mapping(yaml.safe_load(text), source="levels.yaml (built in)")

    @classmethod
    def load(cls, path: Path | str | None) -> LevelCriteria:
        if path is None:
            return cls.default()
        p = Path(path)
        if not p.exists():
            raise ContractError(f"{p}: no such levels file")
        try:
            data = yaml.safe_load(p.read_text("utf-8"))
        except yaml.YAMLError as exc:
            raise ContractError(f"{p}: not valid YAML: {exc}") from None
        return cls.from_mapping(data, source=str(p))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "levels") -> LevelCriteria:
        if not isinstance(data, dict):
            raise ContractError(f"{source}: expected a mapping with `levels:`")
        known = {"version", "primary_channel", "levels", "deescalate_hold_min",
                 "max_top_device_share", "page_after_min"}
        extra = set(data) - known
        if extra:
            raise ContractError(f"{source}: unknown key(s) {', '.join(sorted(extra))}")
        raw = data.get("levels")
        if not isinstance(raw, dict) or not raw:
            raise ContractError(f"{source}: `levels` must map 1, 2, 3 to their criteria")
        rules: list[LevelRule] = []
        for key, spec in raw.items():
            where = f"{source}: levels.{key}"
            try:
                level = int(key)
            except (TypeError, ValueError):
                raise ContractError(f"{where}: the level must be 1, 2 or 3") from None
            if level not in (1, 2, 3):
                raise ContractError(f"{where}: the level must be 1, 2 or 3 (4 is the notice)")
            if not isinstance(spec, dict):
                raise ContractError(f"{where}: expected a mapping of criteria")
            fields = {"share_affected", "failed_payments_per_min", "lost_amount_per_min",
                      "primary_share_affected", "sustained_min"}
            extra = set(spec) - fields
            if extra:
                raise ContractError(f"{where}: unknown criteria {', '.join(sorted(extra))}")
            sustained = spec.get("sustained_min")
            if sustained is not None and level == 3:
                raise ContractError(f"{where}.sustained_min: not allowed for level 3 "
                                    "(a long but negligible wave must not page)")
            rules.append(LevelRule(
                level=level,
                share_affected=_share(spec.get("share_affected", 1.01), f"{where}.share_affected"),
                failed_payments_per_min=_nonneg(spec.get("failed_payments_per_min", float("inf")),
                                                f"{where}.failed_payments_per_min"),
                lost_fen_per_min=_money(spec.get("lost_amount_per_min"),
                                        f"{where}.lost_amount_per_min"),
                primary_share_affected=_share(spec.get("primary_share_affected", 1.01),
                                              f"{where}.primary_share_affected"),
                sustained=(timedelta(minutes=_nonneg(sustained, f"{where}.sustained_min"))
                           if sustained is not None else None),
            ))
        rules.sort(key=lambda r: r.level)
        hold = _nonneg(data.get("deescalate_hold_min", 5), f"{source}: deescalate_hold_min")
        primary = data.get("primary_channel", "nfc")
        if not isinstance(primary, str) or not primary:
            raise ContractError(f"{source}: primary_channel must be a channel name")
        top = _share(data.get("max_top_device_share", 0.75), f"{source}: max_top_device_share")
        raw_after = data.get("page_after_min") or {}
        if not isinstance(raw_after, dict) or not set(raw_after) <= {"technical", "business"}:
            raise ContractError(f"{source}: page_after_min maps technical and/or business "
                                "to minutes")
        after = {k: timedelta(minutes=_nonneg(v, f"{source}: page_after_min.{k}"))
                 for k, v in raw_after.items()}
        return cls(primary_channel=primary, rules=tuple(rules),
                   deescalate_hold=timedelta(minutes=hold), max_top_device_share=top,
                   page_after=after)

    def instant(self, impact: Impact) -> tuple[int, list[str]]:
        """The level the figures justify right now, with the criteria that held."""
        for rule in self.rules:
            why: list[str] = []
            if impact.share_affected >= rule.share_affected:
                why.append(f"share_affected >= {rule.share_affected:g}")
            if impact.failed_payments_per_min >= rule.failed_payments_per_min:
                why.append(f"failed_payments_per_min >= {rule.failed_payments_per_min:g}")
            if rule.lost_fen_per_min > 0 and impact.lost_fen_per_min >= rule.lost_fen_per_min:
                why.append(f"lost_amount_per_min >= {rule.lost_fen_per_min / 100:.2f}")
            if impact.primary_involved and impact.share_affected >= rule.primary_share_affected:
                why.append(f"primary channel involved and share_affected >= "
                           f"{rule.primary_share_affected:g}")
            if why:
                return rule.level, why
        return NOTICE, []

    def sustained(self, level: int) -> timedelta | None:
        for rule in self.rules:
            if rule.level == level:
                return rule.sustained
        return None


@dataclass(slots=True)
class LevelTracker:
    """The level of one alert over time: escalate at once, de-escalate after a hold."""

    criteria: LevelCriteria
    family: str = "technical"
    level: int = NOTICE
    reasons: list[str] = field(default_factory=list)
    at_or_above_since: dict[int, datetime] = field(default_factory=dict)
    """For each level L, since when the instant level has been L or more severe."""
    below_since: datetime | None = None

    def update(self, impact: Impact, now: datetime) -> int:
        inst, why = self.criteria.instant(impact)
        wait = self.criteria.page_after.get(self.family)
        if wait is not None and impact.excess_for < wait and inst < NOTICE:
            inst, why = NOTICE, [f"{self.family} waves page after lasting "
                                 f"{int(wait.total_seconds() // 60)} min"]
        for lvl in (1, 2, 3):
            if inst <= lvl:
                self.at_or_above_since.setdefault(lvl, now)
            else:
                self.at_or_above_since.pop(lvl, None)
        target, target_why = inst, why
        for lvl in (1, 2):
            need = self.criteria.sustained(lvl)
            since = self.at_or_above_since.get(lvl + 1)
            if need is not None and since is not None and now - since >= need and lvl < target:
                target = lvl
                target_why = [f"level {lvl + 1} sustained for {int(need.total_seconds() // 60)}"
                              " min"]
        if target <= self.level:
            self.level, self.reasons, self.below_since = target, target_why, None
        else:
            if self.below_since is None:
                self.below_since = now
            if now - self.below_since >= self.criteria.deescalate_hold:
                self.level, self.reasons, self.below_since = target, target_why, None
        return self.level


def _share(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: expected a share between 0 and 1") from None
    if not 0.0 <= v <= 1.01:
        raise ContractError(f"{where}: expected a share between 0 and 1 (got {value})")
    return v


def _nonneg(value: Any, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ContractError(f"{where}: expected a number >= 0") from None
    if v < 0:
        raise ContractError(f"{where}: expected a number >= 0 (got {value})")
    return v


def _money(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, float):
        raise ContractError(f"{where}: write money as a quoted decimal string, e.g. \"1000.00\"")
    try:
        d: Decimal = to_decimal(str(value))
    except Exception:
        raise ContractError(f"{where}: not a decimal yuan amount: {value!r}") from None
    if d < 0:
        raise ContractError(f"{where}: must be >= 0")
    return decimal_to_fen(d)
