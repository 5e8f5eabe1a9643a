"""Respond / integrations: push alert state changes to the tools on-call teams use.

* :class:`AlertmanagerNotifier` - a real Prometheus Alertmanager, v2 API;
* :class:`WebhookNotifier` - any HTTP endpoint, Alertmanager's webhook payload;
* :class:`Notifier` - the protocol both follow (and a custom one can).

Every notifier sends from a background thread with a bounded queue, retries
with exponential backoff, and counts what it could not deliver in
:class:`NotifyStats` instead of raising: a slow or dead receiver never holds up
the analysis pipeline.
"""

from tapshield.notify.alertmanager import AlertmanagerNotifier
from tapshield.notify.base import BackgroundNotifier, Notifier, NotifyStats
from tapshield.notify.webhook import WebhookNotifier

__all__ = ["AlertmanagerNotifier", "BackgroundNotifier", "Notifier", "NotifyStats",
           "WebhookNotifier"]
