"""The notification policy: who hears of a wave, and when.

Alertmanager's notify stage decides what reaches a receiver (with
``group_interval`` and ``repeat_interval``); here :class:`NotifyPolicy`
decides, for each state change of an alert, whether it pages:

* levels 1-3 page when the alert fires; level 4 (a notice) is recorded only;
* an escalation pages if the alert was never paged, or if it reaches
  ``notify_escalation_to`` or worse beyond the level last paged, at most once
  per ``renotify_interval`` (a faster escalation waits, ``pending``, and goes
  out when the interval has passed);
* a paged alert gets reminders at the growing ``reminders`` intervals;
* the resolution of a paged alert pages; de-escalations never do.

It writes only an alert's notification record (``paged``, ``last_notify_us``,
``notified_level``, ``pending_escalation``, reminders).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from tapshield.monitor.alerting.waves import Alert
from tapshield.monitor.config import MonitorConfig

PAGING_LEVELS = 3
"""Levels 1..3 page; 4 (blue notice) is recorded only (levels.yaml)."""

ReviewState = Literal["escalated", "deescalated", "reminder"]


def _us(td: timedelta) -> int:
    return int(td.total_seconds() * 1_000_000)


class NotifyPolicy:
    """Decides ``notify`` for each alert state change and keeps the alert's record."""

    def __init__(self, cfg: MonitorConfig) -> None:
        self.renotify_us = _us(cfg.renotify_interval)
        self.escalation_to = cfg.notify_escalation_to
        self.reminders_us = [_us(r) for r in cfg.reminders]

    def on_fire(self, a: Alert, now: int) -> bool:
        """The alert fires (opens, or outlived its suppression): does it page?"""
        notify = a.tracker.level <= PAGING_LEVELS
        if notify:
            self._notified(a, now)
        return notify

    def on_reopen(self, a: Alert, now: int) -> bool:
        """The wave came back after resolving: it pages as if it were escalating from
        the level it last paged (a return no worse than what was paged pages no one;
        the incident reopens and the on-call sees it there)."""
        level = a.tracker.level
        if not a.paged:
            return self.on_fire(a, now)
        if level <= min(PAGING_LEVELS, self.escalation_to) and level < a.notified_level:
            self._notified(a, now)
            return True
        return False

    def on_level(self, a: Alert, now: int, before: int) -> tuple[ReviewState, bool] | None:
        """After a level evaluation (``before``: the level it had): the state change to
        emit and whether it pages, or ``None`` (nothing to say)."""
        level = a.tracker.level
        if level < before:
            notify = False
            if level <= PAGING_LEVELS and (not a.paged or (level <= self.escalation_to
                                                           and level < a.notified_level)):
                if not a.paged or now - (a.last_notify_us or 0) >= self.renotify_us:
                    notify = True
                else:
                    a.pending_escalation = True
            if notify:
                self._notified(a, now)
            return "escalated", notify
        if level > before:
            return "deescalated", False
        if (a.pending_escalation and level < a.notified_level
                and level <= self.escalation_to
                and now - (a.last_notify_us or 0) >= self.renotify_us):
            self._notified(a, now)
            return "escalated", True
        if a.paged and a.next_reminder_us is not None and now >= a.next_reminder_us:
            a.reminders_sent += 1
            i = min(a.reminders_sent, len(self.reminders_us) - 1)
            a.last_notify_us = now
            a.notified_level = level
            a.next_reminder_us = now + self.reminders_us[i]
            return "reminder", True
        return None

    def on_resolve(self, a: Alert) -> bool:
        """A resolution pages exactly when the alert had paged."""
        return a.paged

    def waiting(self, a: Alert, now: int) -> bool:
        """Is an escalation or a reminder due or pending (so a quiet wave is looked at now)?"""
        return a.pending_escalation or (a.next_reminder_us is not None
                                        and now >= a.next_reminder_us)

    def _notified(self, a: Alert, now: int) -> None:
        if not a.paged:
            a.next_reminder_us = now + self.reminders_us[0]
        a.paged = True
        a.last_notify_us = now
        a.notified_level = a.tracker.level
        a.pending_escalation = False


__all__ = ["PAGING_LEVELS", "NotifyPolicy"]
