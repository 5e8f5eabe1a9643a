"""The response stage of a drill: plan, record in the outbox, deliver to real local receivers,
and grade what the receivers got.

The drill's customers are the simulator's (``u123``); each gets a stable
made-up phone number or e-mail address and a language, sealed in the privacy
vault (the plan and the outbox hold only tokens; the contact is revealed at
send time). Messages go through Apprise to an SMTP server (aiosmtpd) and an
HTTP "SMS gateway", partner webhooks to an HTTP receiver that verifies their
signatures, all on 127.0.0.1 (started here unless the caller configures its
own targets). The figures are measured on what the receivers applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tapshield.comms.dispatch import Dispatcher
from tapshield.comms.outbox import Outbox
from tapshield.comms.receivers import (
    Ledger,
    LocalHTTP,
    LocalSMTP,
    Received,
    email_text,
    form_or_json,
)
from tapshield.comms.senders import DUE_HEADER, AppriseSender, Router, WebhookSender
from tapshield.incident import Incident
from tapshield.respond.notices import NoticePolicy, Recipient, personal_data_in
from tapshield.respond.partners import Partner, ReplayGuard, SignatureError
from tapshield.respond.responder import Responder, ResponsePlan, plan_postmortems
from tapshield.timeutil import parse_rfc3339

PARTNERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("card-network-nfc", {"channel": "nfc"}),
    ("card-network-qr", {"channel": "qr"}),
    ("wallet-provider", {"channel": "wallet"}),
)
"""The drill's partners: who owns which channel."""


def _h(user: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{salt}:{user}".encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Contact:
    user_id: str
    channel: str
    address: str
    language: str
    last4: str


def simulated_contact(user_id: str) -> Contact:
    """A stable made-up contact for a simulated customer (70 % SMS, 30 % e-mail;
    12 % prefer English)."""
    h = _h(user_id, "contact")
    phone = f"+8613{h % 10**9:09d}"
    lang = "en" if _h(user_id, "lang") % 100 < 12 else "zh-CN"
    if h % 10 < 7:
        return Contact(user_id, "sms", phone, lang, phone[-4:])
    return Contact(user_id, "email", f"c{h % 10**8:08d}@customers.example", lang, phone[-4:])


@dataclass(slots=True)
class SimulatedDirectory:
    """user id -> :class:`Recipient`, the contact sealed in the vault on first use."""

    vault: Any
    contacts: dict[str, Contact] = field(default_factory=dict)
    by_address: dict[str, str] = field(default_factory=dict)
    _recipients: dict[str, Recipient] = field(default_factory=dict)

    def __call__(self, user_id: str) -> Recipient | None:
        r = self._recipients.get(user_id)
        if r is None:
            c = simulated_contact(user_id)
            token = self.vault.put("phone" if c.channel == "sms" else "email", c.address)
            self.contacts[user_id] = c
            self.by_address[c.address.lower()] = user_id
            # the outbox and the plan know the customer by token only
            r = self._recipients[user_id] = Recipient(
                self.vault.tokens.token("user", user_id), token, c.channel, c.language,
                account_last4=c.last4)
        return r

    def token_of(self, user_id: str) -> str | None:
        r = self._recipients.get(user_id)
        return r.user_id if r is not None else None

    def known(self, user_ids: Sequence[str]) -> frozenset[str]:
        """Everything no message may contain: ids and contacts of these customers."""
        out: set[str] = set(user_ids)
        for u in user_ids:
            c = simulated_contact(u)
            out.add(c.address)
            out.add(c.address.removeprefix("+86"))
        return frozenset(out)


def _secrets() -> dict[str, str]:
    return {name: hashlib.sha256(f"drill-secret:{name}".encode()).hexdigest()
            for name, _ in PARTNERS}


def _verifier(secrets: Mapping[str, str]
              ) -> Callable[[str, Mapping[str, str], bytes], str | None]:
    """The partners' side of the protocol: signature, timestamp window, replay."""
    guard = ReplayGuard()

    def verify(path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        name = path.strip("/").split("/")[-1]
        secret = secrets.get(name)
        if secret is None:
            return "unknown partner"
        try:
            guard.verify(secret, headers, body, int(datetime.now(UTC).timestamp()))
        except SignatureError as exc:
            return str(exc)
        return None

    return verify


@dataclass(slots=True)
class ReceiverView:
    """What the parent knows of a receiver running in the receivers' process: its port,
    and after :meth:`LocalTargets.collect` what it applied."""

    port: int
    ledger: Ledger = field(default_factory=Ledger)
    rejected: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _snapshot(rx: LocalHTTP | LocalSMTP) -> dict[str, Any]:
    with rx.ledger.lock:
        return {"applied": list(rx.ledger.applied), "arrivals": rx.ledger.arrivals,
                "repeats": rx.ledger.repeats, "rejected": getattr(rx, "rejected", 0)}


def serve_receivers(conn: Any) -> None:
    """The receivers' process: start them, report their ports, answer ``collect``
    with what they applied, end on ``stop`` (or when the parent goes away)."""
    rx: dict[str, LocalHTTP | LocalSMTP] = {
          "smtp": LocalSMTP().start(), "gateway": LocalHTTP().start(),
          "partners": LocalHTTP(verify=_verifier(_secrets())).start()}
    try:
        conn.send({k: v.port for k, v in rx.items()})
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                return
            if cmd == "collect":
                conn.send({k: _snapshot(v) for k, v in rx.items()})
            else:
                return
    finally:
        for v in rx.values():
            v.stop()


def _spawn_receivers() -> tuple[Any, Any]:
    """A fresh interpreter running :func:`serve_receivers`, talked to over a socket pair
    (not ``multiprocessing``'s spawn, which re-imports the caller's main module)."""
    import os
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    code = ("import sys; from multiprocessing.connection import Connection; "
            "from tapshield.comms.drill import serve_receivers; "
            "serve_receivers(Connection(int(sys.argv[1])))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                            pass_fds=(theirs.fileno(),), env=env)
    theirs.close()
    return proc, Connection(ours.detach())


@dataclass(slots=True)
class LocalTargets:
    """Receivers started on 127.0.0.1 for one drill.

    They run in the drill's process (``smtp``, ``gateway``, ``partners`` are the
    live receivers), or with ``separate_process=True`` in an interpreter of
    their own, like a real SMS gateway, mail server and partner, and
    :meth:`collect` brings back what they applied before grading. Measured
    (benchmarks/respond_dispatch.py) the separate process was not faster on
    this 2-core machine once e-mail stopped costing a TLS context per message,
    so the drill keeps them in-process.
    """

    smtp: LocalSMTP | ReceiverView
    gateway: LocalHTTP | ReceiverView
    partners: LocalHTTP | ReceiverView
    partner_list: list[Partner]
    _proc: Any = None
    _conn: Any = None

    @classmethod
    def start(cls, *, separate_process: bool = False) -> LocalTargets:
        secrets = _secrets()
        smtp: LocalSMTP | ReceiverView
        gateway: LocalHTTP | ReceiverView
        partners: LocalHTTP | ReceiverView
        proc = conn = None
        if separate_process:
            proc, conn = _spawn_receivers()
            if not conn.poll(60):
                proc.kill()
                raise RuntimeError("the drill's receivers did not start within 60 s")
            ports = conn.recv()
            smtp, gateway, partners = (ReceiverView(ports["smtp"]),
                                       ReceiverView(ports["gateway"]),
                                       ReceiverView(ports["partners"]))
        else:
            smtp = LocalSMTP().start()
            gateway = LocalHTTP().start()
            partners = LocalHTTP(verify=_verifier(secrets)).start()
        plist = [Partner(name, owns, f"{partners.url}/partners/{name}", secrets[name])
                 for name, owns in PARTNERS]
        return cls(smtp, gateway, partners, plist, proc, conn)

    def apprise_targets(self) -> dict[str, str]:
        return {
            "sms": f"json://127.0.0.1:{self.gateway.port}/sms?:to={{to}}",
            "email": (f"mailto://127.0.0.1:{self.smtp.port}?from=notices@flashpay.example"
                      "&to={to}&mode=insecure"),
        }

    def collect(self) -> None:
        """Bring back what the receivers applied (no-op when they run in this process)."""
        if self._conn is None:
            return
        self._conn.send("collect")
        snap = self._conn.recv()
        for name in ("smtp", "gateway", "partners"):
            view = getattr(self, name)
            d = snap[name]
            view.ledger = Ledger(applied=d["applied"], arrivals=d["arrivals"],
                                 repeats=d["repeats"],
                                 keys={r.key for r in d["applied"] if r.key is not None})
            view.rejected = d["rejected"]

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            try:
                self._proc.wait(10)
            except Exception:
                self._proc.kill()
                self._proc.wait()
            self._conn.close()
            self._conn = None
            return
        for rx in (self.smtp, self.gateway, self.partners):
            if not isinstance(rx, ReceiverView):
                rx.stop()


def _vault(db_engine: Any, key_dir: Path) -> Any:
    from tapshield.privacy.keys import FileKeyProvider
    from tapshield.privacy.seal import Sealer
    from tapshield.privacy.tokens import Tokenizer
    from tapshield.privacy.vault import Vault
    from tapshield.storage.vault import SqlVaultStore

    keys = FileKeyProvider(key_dir)
    for purpose in ("token", "seal"):
        if not keys.versions(purpose):
            keys.add(purpose)
    return Vault(SqlVaultStore(db_engine), Tokenizer(keys), Sealer(keys))


def _received_customer(targets: LocalTargets, directory: SimulatedDirectory
                       ) -> list[tuple[str | None, str, Received]]:
    """(user id, text, raw) for every customer message the receivers applied."""
    out: list[tuple[str | None, str, Received]] = []
    for r in targets.gateway.ledger.applied:
        d = form_or_json(r)
        to = str(d.get("to", ""))
        out.append((directory.by_address.get(to.lower()), str(d.get("message", "")), r))
    for r in targets.smtp.ledger.applied:
        to = r.headers.get("to", "")
        m = re.search(r"[\w.+-]+@[\w.-]+", to)
        out.append((directory.by_address.get(m.group().lower()) if m else None,
                    email_text(r), r))
    return out


def open_outbox_db(url: str) -> tuple[Any, Any]:
    """The drill's database (migrated: the vault and the outbox tables) and its engine.

    On SQLite the connections commit with ``synchronous=NORMAL`` (WAL): a commit
    no longer waits for an fsync, which was half of each message's cost (the
    dispatcher writes every answer as it arrives). It is safe for the outbox: a
    process killed at any point loses nothing (the WAL is in the OS's cache); a
    power cut may undo the last commits, i.e. re-send a few messages marked
    sent, which carry the same idempotency key and are applied once; a message
    and the change that caused it still come back together or not at all."""
    from sqlalchemy import create_engine, event

    from tapshield.storage import Store

    store = Store(url)
    if not url.startswith("sqlite"):
        return store, create_engine(url)
    engine = store.engine

    def _normal(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(engine, "connect", _normal)
    engine.dispose()  # connections opened before the listener reconnect with it
    return store, engine


def respond_in_drill(incidents: Sequence[Incident], events: pl.DataFrame, out_dir: Path, *,
                     guard_verdicts: Sequence[Mapping[str, Any]] = (),
                     saved_by_failover: Mapping[str, int] | None = None,
                     db_url: str | None = None, audit: Any = None,
                     policy: NoticePolicy | None = None, workers: int = 8) -> dict[str, Any]:
    """Run the response for a drill's incidents; returns the communication figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store, engine = open_outbox_db(db_url or f"sqlite:///{out_dir / 'respond.sqlite'}")
    policy = policy or NoticePolicy()
    targets = LocalTargets.start()
    try:
        vault = _vault(engine, out_dir / "keys")
        directory = SimulatedDirectory(vault)
        users = events.filter(pl.col("outcome").cast(pl.String) != "approved")[
            "user_id"].unique().to_list()
        responder = Responder(directory=directory, partners=targets.partner_list, policy=policy,
                              guard_verdicts=list(guard_verdicts),
                              saved_by_failover=saved_by_failover,
                              known_identifiers=directory.known(users))
        plan = responder.respond(incidents, events)
        outbox = Outbox(engine)
        for iid, lc in plan.lifecycles.items():
            msgs = [m for m in plan.messages if m.incident_id == iid]
            outbox.record([(iid, e) for e in lc.timeline], msgs)
        customers = AppriseSender(targets.apprise_targets(), vault.reveal)
        sender = Router(customers, WebhookSender({p.name: p for p in targets.partner_list}))
        dispatcher = Dispatcher(outbox, sender, workers=workers, backoff=0.05,
                                max_backoff=1.0, audit=audit)
        try:
            drained = dispatcher.drain(timeout=300)
        finally:
            customers.close()
        targets.collect()
        figures = grade(plan, incidents, targets, directory, policy, outbox.counts())
        figures.pop("_notified", None)
        figures["drained"] = drained
        figures["dispatch"] = dispatcher.stats.as_dict()
        plan_postmortems(plan, incidents, {i: figures.get("per_incident", {}).get(i, {})
                                           for i in plan.lifecycles})
        _write(out_dir, plan, figures)
        return figures
    finally:
        targets.stop()
        store.close()


def grade(plan: ResponsePlan, incidents: Sequence[Incident], targets: LocalTargets,
          directory: SimulatedDirectory, policy: NoticePolicy, counts: Mapping[str, int]
          ) -> dict[str, Any]:
    """The scorecard's communication figures, from what the receivers applied."""
    by_key = {m.key: m for m in plan.messages}
    received = _received_customer(targets, directory)
    known = directory.known(list(directory.contacts))
    per_user: dict[tuple[str, str], dict[str, int]] = {}
    pii = 0
    quiet = 0
    unmatched = 0
    for user, text, raw in received:
        m = by_key.get(raw.key or "")
        if user is None or m is None or directory.token_of(user) != m.recipient:
            unmatched += 1  # unknown, or delivered to someone it was not meant for
            continue
        slot = per_user.setdefault((m.case_id, m.recipient), {"notice": 0, "followup": 0})
        slot[m.kind] += 1
        own = directory.contacts[user]
        others = known - {own.address, own.address.removeprefix("+86"), user}
        if personal_data_in(text, known=others) or personal_data_in(text):
            pii += 1
        due = raw.headers.get(DUE_HEADER.lower())
        if due and not m.urgent and policy.in_quiet_hours(parse_rfc3339(due), m.tz or
                                                          "Asia/Shanghai"):
            quiet += 1
    paging = {i.id: i for i in incidents if i.id in plan.lifecycles and 1 <= i.level <= 3}
    affected_keys = set()
    for iid, n in plan.affected.items():
        if iid in paging and n:
            affected_keys.add(plan.cases[iid])
    expected = {(m.case_id, m.recipient) for m in plan.messages
                if m.kind == "notice" and m.incident_id in paging}
    case_ended = {plan.cases[i.id] for i in incidents
                  if i.id in paging and i.end is not None}
    exactly = sum(1 for k in expected
                  if per_user.get(k, {}).get("notice") == 1
                  and (per_user.get(k, {}).get("followup") == 1 or k[0] not in case_ended))
    dup = sum(max(0, v["notice"] - 1) + max(0, v["followup"] - 1) for v in per_user.values())
    webhooks = targets.partners.ledger.applied
    firsts_notice: list[float] = []
    firsts_hook: list[float] = []
    for iid, inc in paging.items():
        notices = [m.due_at for m in plan.messages
                   if m.incident_id == iid and m.kind == "notice"]
        hooks = [m.due_at for m in plan.messages if m.incident_id == iid and m.kind == "webhook"]
        if notices:
            firsts_notice.append((min(notices) - inc.detected_at).total_seconds())
        if hooks:
            firsts_hook.append((min(hooks) - inc.detected_at).total_seconds())
    actions = [s for s in plan.steps if s.step.kind == "action"]
    checks = [s for s in plan.steps if s.step.kind == "check"]
    affected_total = len(expected)
    per_incident: dict[str, dict[str, int]] = {}
    for (case, _user), v in per_user.items():
        slot2 = per_incident.setdefault(case, {"notices_sent": 0, "followups_sent": 0,
                                               "webhooks_sent": 0})
        slot2["notices_sent"] += v["notice"]
        slot2["followups_sent"] += v["followup"]
    for r in webhooks:
        try:
            iid = str(json.loads(r.body)["incident_id"])
        except (ValueError, KeyError):
            continue
        per_incident.setdefault(iid, {"notices_sent": 0, "followups_sent": 0,
                                      "webhooks_sent": 0})["webhooks_sent"] += 1
    guard = [s.outcome for s in plan.steps if s.step.name == "rollback_risk_change"]
    return {
        "paging_incidents": len(paging),
        "affected_customers": sum(plan.affected[i] for i in paging),
        "customers_to_notify": len(expected),
        "notices_sent": sum(v["notice"] for v in per_user.values()),
        "followups_sent": sum(v["followup"] for v in per_user.values()),
        "customers_exactly_one_notice_and_followup": exactly,
        "notified_per_affected": round(len({k for k, v in per_user.items() if v["notice"]})
                                       / max(affected_total, 1), 4),
        "duplicates": dup,
        "receiver_repeats": targets.gateway.ledger.repeats + targets.smtp.ledger.repeats
        + targets.partners.ledger.repeats,
        "messages_with_personal_data": pii,
        "quiet_hour_messages": quiet,
        "unmatched_messages": unmatched,
        "webhooks_sent": len(webhooks),
        "webhooks_rejected": targets.partners.rejected,
        "first_notice_after_detection_s": round(min(firsts_notice), 1) + 0.0
        if firsts_notice else None,
        "first_webhook_after_detection_s": round(min(firsts_hook), 1) + 0.0
        if firsts_hook else None,
        "playbook_actions_done": sum(1 for s in actions if s.done),
        "playbook_actions": len(actions),
        "checklist_items_open": sum(1 for s in checks if not s.done),
        "misfire_guard": guard,
        "outbox": dict(counts),
        "playbook_version": plan.playbook_version,
        "templates_version": plan.templates_version,
        "per_incident": per_incident,
        "_notified": sorted(k for k, v in per_user.items() if v["notice"]),
    }


def _write(out_dir: Path, plan: ResponsePlan, figures: Mapping[str, Any]) -> None:
    doc = {
        "figures": {k: v for k, v in figures.items() if k != "per_incident"},
        "lifecycles": {i: lc.to_dict() for i, lc in plan.lifecycles.items()},
        "steps": [s.to_dict() for s in plan.steps],
        "regulatory_drafts": plan.drafts,
        "status": [{**s, "at": s["at"].isoformat()} for s in plan.status],
    }
    (out_dir / "response.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False,
                                                      default=str) + "\n", encoding="utf-8")
    pm = out_dir / "postmortems"
    for iid, text in plan.postmortems.items():
        pm.mkdir(exist_ok=True)
        (pm / f"{iid}.md").write_text(text, encoding="utf-8")
