"""Suppression: announced maintenance windows and silences, behind one interface.

Alertmanager keeps silences apart from routing and grouping: a silence only
answers "is this alert muted, by what, until when". :class:`Suppressor` does
the same for tapshield's two kinds of suppression:

* a **maintenance window** (a ``kind=maintenance`` row of the changes file)
  mutes new alerts whose slice lies inside its scope, until the window ends
  plus ``maintenance_grace``; its scope's detectors are also frozen (their
  expectations do not learn the planned outage), and it explains (inhibits)
  crossings in its scope (see :mod:`tapshield.monitor.alerting.inhibit`);
* a **silence** (``silences:`` in the monitor config) mutes new alerts that
  match its labels and time range.

A muted alert is still recorded (``suppressed``); if it outlives its window
or silence it fires for real (:mod:`tapshield.monitor.lifecycle`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from tapshield.events.changes import scope_of
from tapshield.monitor.alerting.waves import Window
from tapshield.monitor.config import Silence
from tapshield.monitor.slices import intersects, refines
from tapshield.timeutil import epoch_us, from_epoch_us


class RuntimeSilence(Protocol):
    """A silence set while running (the service's ``POST /v1/silences``): Alertmanager
    label matchers over ``alertname``, ``signal`` and the slice's dimensions."""

    @property
    def id(self) -> str: ...

    @property
    def comment(self) -> str: ...

    @property
    def ends_at(self) -> datetime: ...

    def mutes(self, labels: dict[str, str], at: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why a new alert is muted, until when, and the window behind it (if one)."""

    by: str
    until_us: int
    window: Window | None = None


class Suppressor:
    """Answers whether an alert is muted, and which slices a window freezes."""

    def __init__(self, windows: Sequence[Window], silences: Sequence[Silence],
                 grace_us: int) -> None:
        self.windows = list(windows)
        self.silences = list(silences)
        self.grace_us = grace_us
        self.runtime: tuple[RuntimeSilence, ...] = ()
        """Silences set while running, replaced as they change (see :class:`RuntimeSilence`)."""

    def active(self, now: int) -> list[Window]:
        """Windows in force at ``now`` (grace included), in file order."""
        return [w for w in self.windows if w.start_us <= now <= w.end_us + self.grace_us]

    def touching(self, slice_: dict[str, str], now: int) -> list[Window]:
        """Windows in force whose scope shares events with ``slice_``."""
        return [w for w in self.active(now) if intersects(slice_, w.scope)]

    def window(self, key: str) -> Window:
        """The window with this key (keys come from :meth:`touching`)."""
        return next(w for w in self.windows if w.key == key)

    def for_window(self, w: Window) -> Suppression:
        """The suppression of an alert opened by window ``w`` itself."""
        return Suppression(f"maintenance {w.component} " + (w.note or ""),
                           w.end_us + self.grace_us, w)

    def check(self, slice_: dict[str, str], signal: str, now: int) -> Suppression | None:
        """Is a new alert on ``slice_``/``signal`` at ``now`` muted? A window whose
        scope contains the slice first, then a matching silence."""
        for w in self.windows:
            if w.start_us <= now <= w.end_us + self.grace_us and refines(slice_, w.scope):
                return self.for_window(w)
        when = from_epoch_us(now)
        for s in self.silences:
            if s.matches(slice_, signal, when):
                return Suppression(f"silence {s.comment}".strip(), epoch_us(s.ends_at))
        if self.runtime:
            labels = {"alertname": "TapshieldFailureWave", "signal": signal, **slice_}
            for rs in self.runtime:
                if rs.mutes(labels, when):
                    return Suppression(f"silence {rs.id} {rs.comment}".strip(),
                                       epoch_us(rs.ends_at))
        return None

    def frozen(self, slices: Sequence[dict[str, str]], now: int) -> list[bool] | None:
        """Per slice, whether a window in force covers it (``None``: no window at all,
        so nothing is ever frozen and the caller can skip the work)."""
        if not self.windows:
            return None
        active = self.active(now)
        if not active:
            return [False] * len(slices)
        return [any(refines(s, w.scope) for w in active) for s in slices]


def maintenance_windows(changes: pl.DataFrame | None) -> list[Window]:
    """The ``kind=maintenance`` rows of a changes frame, with their scope and a stable key."""
    if changes is None or changes.height == 0 or "kind" not in changes.columns:
        return []
    rows = changes.filter(pl.col("kind").cast(pl.String) == "maintenance")
    out: list[Window] = []
    for r in rows.iter_rows(named=True):
        start: datetime | None = r.get("ts")
        end: datetime | None = r.get("end_ts")
        if start is None or end is None:
            continue
        comp = str(r.get("component") or "")
        key = hashlib.sha1(f"{comp}|{start.isoformat()}".encode()).hexdigest()[:10]
        out.append(Window(key, scope_of(comp), epoch_us(start), epoch_us(end), comp,
                          str(r.get("note") or "")))
    return out


__all__ = ["RuntimeSilence", "Suppression", "Suppressor", "maintenance_windows"]
