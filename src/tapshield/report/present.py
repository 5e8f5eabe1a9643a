"""Presentation rules shared by the reports and the web console.

People read these figures under pressure: money always in yuan with thousands
separators and exact fen (never a float on the way), incidents ordered by what
needs attention first (the most severe, then the open, then the newest), and the
many low-level notices (level 4: recorded, not paged) folded into one line per
kind so they never push a red outage off the first screen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

PAGING_LEVELS = (1, 2, 3)
"""Levels that page someone; level 4 is a notice kept on record."""

LEVEL_GLYPHS = {1: "▲▲▲", 2: "▲▲", 3: "▲", 4: "●"}
"""Shapes that tell the levels apart without colour (and in print)."""


def yuan(value: Decimal | int | str | None, *, fen: bool = False, sign: bool = False) -> str:
    """``1234567.5`` -> ``"1,234,567.50"``: exact (Decimal, half-even to the fen).

    ``fen=True`` reads an integer number of fen. ``None`` and unreadable values
    show as an en dash rather than a wrong number.
    """
    if value is None:
        return "–"
    try:
        d = Decimal(int(value)) / 100 if fen else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        return "–"
    if not d.is_finite():
        return "–"
    q = d.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    out = f"{q:,.2f}"
    return f"+{out}" if sign and q > 0 else out


def count(value: int | float | str | None) -> str:
    """Thousands separators for counts (``12345`` -> ``"12,345"``)."""
    if value is None:
        return "–"
    try:
        return f"{int(value):,}"
    except (ValueError, TypeError):
        return str(value)


def percent(value: float | None, digits: int = 1) -> str:
    """A share as a percentage (``0.9731`` -> ``"97.3%"``)."""
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 100:.{digits}f}%"


def scope_text(scope: Sequence[Mapping[str, Any]] | None, everything: str = "everything") -> str:
    """``[{"channel": "nfc", "region": "CN-GD"}]`` -> ``"channel=nfc region=CN-GD"``."""
    if not scope:
        return everything
    return "; ".join(" ".join(f"{k}={v}" for k, v in s.items()) or everything for s in scope)


def attention_key(doc: Mapping[str, Any]) -> tuple[int, int, str, str]:
    """Sort key: most severe level first, open before closed, newest first, then id."""
    level = int(doc.get("level") or 4)
    is_open = 0 if doc.get("end") is None else 1
    start = str(doc.get("start") or "")
    # newest first within the same level and status: invert the ISO string order
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in start)
    return (level, is_open, inverted, str(doc.get("id") or ""))


@dataclass(slots=True)
class NoticeGroup:
    """Level-4 notices of one kind (cause), folded into one line."""

    cause: str
    items: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> str:
        return min(str(i.get("start") or "") for i in self.items)

    @property
    def last(self) -> str:
        return max(str(i.get("end") or i.get("start") or "") for i in self.items)

    @property
    def failed_payments(self) -> int:
        return sum(int(i.get("failed_payments") or 0) for i in self.items)

    @property
    def amount(self) -> Decimal:
        return sum((Decimal(str(i.get("lost_amount") or "0")) for i in self.items),
                   Decimal(0))


def fold(docs: Iterable[Mapping[str, Any]]) -> list[NoticeGroup]:
    """Incidents folded into one group per cause, the largest group first."""
    groups: dict[str, NoticeGroup] = {}
    for d in docs:
        cause = str(d.get("cause") or "unknown")
        groups.setdefault(cause, NoticeGroup(cause)).items.append(d)
    for g in groups.values():
        g.items.sort(key=attention_key)
    return sorted(groups.values(), key=lambda g: (-len(g.items), g.cause))


def split_by_attention(docs: Iterable[Mapping[str, Any]]
                       ) -> tuple[list[Mapping[str, Any]], list[NoticeGroup]]:
    """Paging incidents (levels 1-3, in attention order) and the notices folded per cause."""
    items = list(docs)
    paging = sorted((d for d in items if int(d.get("level") or 4) in PAGING_LEVELS),
                    key=attention_key)
    return paging, fold(d for d in items if int(d.get("level") or 4) not in PAGING_LEVELS)


def outage_amount(docs: Iterable[Mapping[str, Any]]) -> Decimal:
    """Money that did not get paid because of outages: a refused fraud attempt is the
    risk engine working, not money lost, so ``fraud_attack`` incidents never count."""
    return sum((Decimal(str(d.get("lost_amount") or "0")) for d in docs
                if d.get("cause") != "fraud_attack"), Decimal(0))
