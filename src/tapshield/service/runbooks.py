"""One runbook per diagnosed cause, served at ``/runbooks/{cause}`` and linked from
every alert (``runbook_url``), so the page on-call opens says what to do first."""

from __future__ import annotations

_COMMON = """
Everything about the incident: `GET /v1/incidents/{id}` (scope, cause, confidence,
evidence, failed payments, lost amount); acknowledge it (`POST
/v1/incidents/{id}/acknowledge`) so the next person sees someone is on it.
Channel health: `GET /v1/channels/health`. A silence for a known, handled
cause: `POST /v1/silences` (it is on the audit log with your key).
"""

RUNBOOKS: dict[str, str] = {
    "interface": """# Cause: interface (a partner's or the card network's interface fails)

1. Check the scope: one channel (`channel=nfc`), possibly in some regions.
2. The failover router already sends taps elsewhere: confirm in
   `GET /v1/channels/health` that the channel is `eliminated` and taps succeed
   on the others (`tapshield_authorize_decisions_total` by channel).
3. Call the partner's operations desk with the response codes in the evidence
   (91 issuer or switch inoperative, 96 system malfunction, timeouts).
4. When it recovers, probes readmit the channel; the incident closes itself.
""" + _COMMON,
    "network": """# Cause: network (customers' mobile networks degrade)

1. The scope names a carrier or a region on every channel: timeouts, slow answers.
2. Failover cannot help much (every channel rides the same network): tell
   customer service; consider the QR fallback for the region.
3. Check the carrier's status page; a fibre cut shows as one province.
""" + _COMMON,
    "risk_control": """# Cause: risk_control (our own risk rule or model declines good customers)

1. The evidence names the segment (device model, app version, region) and the
   risk decline codes (59, 05 with risk_decision=decline).
2. Find the rule or model version in the decisions (`decision_version`) and
   its change in the changes file or the audit log (`rule.changed`, `model.changed`).
3. Roll it back with the risk team (`tapshield risk backtest` shows what it
   declined); the misfire guard names the change.
""" + _COMMON,
    "fraud_attack": """# Cause: fraud_attack (an attack, rightly declined)

1. Not an outage: declines are the risk engine doing its job. Do not roll back.
2. Tell the fraud team: the scope names the merchant or the devices.
3. Consider restrictions (`POST /v1/risk/restrictions`) on the devices or accounts.
""" + _COMMON,
    "release": """# Cause: release (a deploy of ours or a partner's broke something)

1. The evidence names the version (app_version or server_version) and the deploy.
2. Roll back or stop the rollout; the failure rate follows the rollout share.
""" + _COMMON,
    "unknown": """# Cause: unknown

1. Read the evidence and the scope; compare with the channels' health.
2. Escalate to the payments on-call lead; note what you find on the incident
   (`POST /v1/incidents/{id}/note`) so the diagnosis can be improved.
""" + _COMMON,
}
