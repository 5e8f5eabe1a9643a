"""Privileged actions of the service on the transparency log (issue 18, item 4).

Every action that changes what the service does or what people are told is
appended to ``audit_log`` (:class:`tapshield.audit.log.AuditLog`) in the
request that performs it, after the action's own commit, with who did it:
``actor`` is ``apikey:<key id>`` plus the key's name (never the secret), or
``cli:<os user>`` for the command line. Kinds: ``apikey.created``,
``silence.created``, ``silence.deleted``, ``incident.acknowledged`` /
``assigned`` / ``noted`` / ``resolved``, ``risk.restricted``,
``risk.lifted``, and ``config.loaded`` at every start (the decision rule set
and model versions in force, so a rule or model change, which is a deployment,
is on the record with its versions). Payloads carry what changed, never a
customer's raw identifier (restrictions name a token of the account or device).
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from tapshield.audit.log import AuditLog
from tapshield.service.keys import Principal

log = logging.getLogger("tapshield.service.audit")

INCIDENT_KINDS = {"acknowledge": "incident.acknowledged", "assign": "incident.assigned",
                  "note": "incident.noted", "resolve": "incident.resolved"}


def actor_of(p: Principal) -> str:
    return f"apikey:{p.key_id}" + (f" ({p.name})" if p.name else "")


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container: still say it was the command line
        return "cli:unknown"


class ServiceAudit:
    """The service's door to the transparency log."""

    def __init__(self, engine: Engine) -> None:
        from tapshield.audit.witness import load_signer
        from tapshield.storage.audit import SqlAuditStore

        self.log = AuditLog(SqlAuditStore(engine), signer=load_signer())

    def record(self, kind: str, actor: str, subject: str,
               payload: Mapping[str, Any] | None = None) -> int:
        seq = self.log.append(kind, actor[:128], subject[:256], dict(payload or {}))
        log.info("audit", extra={"kind": kind, "seq": seq})
        return seq

    def close(self) -> None:
        """Sign a head over the last entries (when the service has a signing key)."""
        if self.log.signer is None:
            return
        try:
            self.log.sign_head()
        except Exception:
            log.exception("could not sign the audit log's head at shutdown")
