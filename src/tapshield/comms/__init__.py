"""Adapter: delivering the response (customer notices, partner webhooks) without loss or repeats.

* :mod:`~tapshield.comms.outbox`: the transactional outbox (``respond_outbox``)
  and the incident timeline (``respond_timeline``), written in one transaction;
* :mod:`~tapshield.comms.dispatch`: the dispatcher: leases due rows, sends,
  marks them sent or retries with backoff; a crashed dispatcher's leases
  expire and another takes the rows over, with the same idempotency key;
* :mod:`~tapshield.comms.senders`: Apprise for customer channels (SMS
  gateways, e-mail, push, WeCom, DingTalk, Feishu ...) with the contact read
  from the privacy vault only at send time, and signed partner webhooks;
* :mod:`~tapshield.comms.receivers`: local receivers (SMTP via aiosmtpd, an
  HTTP receiver) for drills and tests, with failure injection;
* :mod:`~tapshield.comms.drill`: the response stage of ``tapshield drill``.

The domain side (lifecycle, playbooks, templates, the plan) is
:mod:`tapshield.respond`; see docs/respond.md.
"""
