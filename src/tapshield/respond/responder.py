"""The response to a run's incidents: lifecycle, playbook steps, customer notices, partner updates.

Pure: incidents (with their level history, which carries the monitor's
automatic transitions) and the events they were measured from go in; a
:class:`ResponsePlan` comes out: each incident's lifecycle and timeline, each
playbook step with its outcome, and every outbound message (customer notice,
follow-up, partner webhook) with its idempotency key and the event time it
is due. An edge adapter (``tapshield.comms``) puts the messages in the
transactional outbox and delivers them.

**When steps run.** An ``open`` step runs when the incident first reaches
the step's ``min_level`` (at the page, or at a later escalation: a level-4
notice that grows into a level-2 page texts customers then); ``escalate``
steps run at each escalation that reaches their level; ``resolve`` steps at
the wave's end if the incident ever reached their level.

**Who is told.** The affected customers of an incident are those with a tap
that failed in its scope and window with its failure signature and never
succeeded (a tap rescued by a retry or a failover is not lost: its customer
is not bothered). A customer already told about an overlapping incident of
the same cause (one *case*) is not told again. Customers hit before the
notice step runs get it then; later ones at their own failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from tapshield.events.codes import business_decline_expr, risk_decline_expr, technical_expr
from tapshield.incident import Incident, scope_expr
from tapshield.respond.drafts import postmortem_markdown, regulatory_drafts
from tapshield.respond.lifecycle import Lifecycle, TimelineEntry
from tapshield.respond.notices import (
    FailedTap,
    NoticePolicy,
    Recipient,
    Templates,
    load_templates,
    message_key,
    personal_data_in,
    render,
)
from tapshield.respond.partners import Partner, shared_record
from tapshield.respond.playbooks import PHASE_OF_STATE, Playbooks, Step, load_playbooks
from tapshield.timeutil import parse_rfc3339, zone

ACTOR_MONITOR = "tapshield/monitor"
ACTOR_PLAYBOOK = "tapshield/playbook"
CASE_GAP = timedelta(minutes=30)
"""Incidents of one cause with compatible scopes less than this apart are one case to a
customer (a wave the monitor split in two is one disruption to them)."""
MITIGATIONS = ("failover", "rollback_risk_change", "halt_rollout", "rollback_release",
               "tighten_rules", "block_devices")

_SIGNAL_FAILURE: dict[str, Callable[[], pl.Expr]] = {
    "technical": technical_expr, "latency": technical_expr, "traffic_drop": technical_expr,
    "decline": business_decline_expr, "risk_decline": risk_decline_expr,
}

Directory = Callable[[str], Recipient | None]
"""user id -> the customer's notice preferences (``None``: not reachable)."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message for the outbox."""

    key: str
    kind: str
    """``notice``, ``followup`` or ``webhook``."""
    incident_id: str
    case_id: str
    cause: str
    recipient: str
    """The customer's user id, or the partner's name."""
    channel: str
    """``sms``, ``email``, ``push`` or ``webhook``."""
    due_at: datetime
    wanted_at: datetime
    body: str
    contact_token: str | None = None
    language: str | None = None
    tz: str | None = None
    urgent: bool = False
    suppressed: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Told:
    """A customer a case's notice was queued for, as the outbox keeps it (tokens only)."""

    recipient: str
    contact_token: str | None
    channel: str
    language: str | None
    tz: str | None
    due_at: datetime
    urgent: bool = False


_NO_AFFECTED = pl.DataFrame(schema={"user_id": pl.String(), "at": pl.Datetime("us", "UTC"),
                                    "amount_fen": pl.Int64(), "channel": pl.String(),
                                    "region": pl.String()})


@dataclass(slots=True)
class StepRun:
    incident_id: str
    step: Step
    at: datetime
    outcome: str
    done: bool

    def to_dict(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "step": self.step.id, "kind": self.step.kind,
                "name": self.step.name, "says": self.step.says, "at": self.at.isoformat(),
                "outcome": self.outcome, "done": self.done}


@dataclass(slots=True)
class ResponsePlan:
    lifecycles: dict[str, Lifecycle]
    steps: list[StepRun]
    messages: list[OutboundMessage]
    cases: dict[str, str]
    """incident id -> case id."""
    affected: dict[str, int]
    """incident id -> affected customers (the notice denominator)."""
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    postmortems: dict[str, str] = field(default_factory=dict)
    status: list[dict[str, Any]] = field(default_factory=list)
    playbook_version: str = ""
    templates_version: str = ""

    def customer_messages(self) -> list[OutboundMessage]:
        return [m for m in self.messages if m.kind in ("notice", "followup")]


def _compatible(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    if not a or not b:
        return True
    return any(all(cb.get(k, v) == v for k, v in ca.items()) for ca in a for cb in b)


def level_history(incident: Incident) -> list[tuple[datetime, str, int]]:
    """The monitor's changes of the incident: ``(ts, state, level)``, in order."""
    raw = incident.extra.get("level_history") or []
    out = []
    for h in raw:
        try:
            out.append((parse_rfc3339(str(h["ts"])), str(h["state"]), int(h["level"])))
        except (KeyError, ValueError, TypeError):
            continue
    if not out:
        out = [(incident.detected_at, "firing", int(incident.level))]
    return out


def first_at_level(incident: Incident, level: int) -> datetime | None:
    """When the incident first reached ``level`` or worse (``None``: never)."""
    for ts, state, lv in level_history(incident):
        if state != "resolved" and lv <= level:
            return ts
    return None


def affected_customers(events: pl.DataFrame, incident: Incident) -> pl.DataFrame:
    """One row per affected customer: their first lost tap in the incident
    (``user_id, at, amount_fen, channel, region``)."""
    failure = _SIGNAL_FAILURE.get(str(incident.extra.get("signal", "technical")), technical_expr)
    window = pl.col("ts") >= incident.start
    if incident.end is not None:
        window = window & (pl.col("ts") <= incident.end)
    hit = events.filter(window & scope_expr(incident.scope) & failure().fill_null(False))
    empty = pl.DataFrame(schema={"user_id": pl.String(), "at": events.schema["ts"],
                                 "amount_fen": pl.Int64(), "channel": pl.String(),
                                 "region": pl.String()})
    if hit.height == 0:
        return empty
    ok = events.filter((pl.col("outcome").cast(pl.String) == "approved")
                       & pl.col("payment_id").is_in(hit["payment_id"].unique().implode()))
    lost = hit.filter(~pl.col("payment_id").is_in(ok["payment_id"].implode()))
    if lost.height == 0:
        return empty
    return (lost.sort("ts").group_by("user_id", maintain_order=True).first()
            .select(pl.col("user_id").cast(pl.String), pl.col("ts").alias("at"),
                    pl.col("amount_fen").cast(pl.Int64),
                    pl.col("channel").cast(pl.String), pl.col("region").cast(pl.String)))


@dataclass(slots=True)
class Responder:
    """Runs the playbooks over a run's incidents (see the module docstring)."""

    directory: Directory
    partners: Sequence[Partner] = ()
    templates: Templates = field(default_factory=load_templates)
    playbooks: Playbooks = field(default_factory=load_playbooks)
    policy: NoticePolicy = field(default_factory=NoticePolicy)
    guard_verdicts: Sequence[Mapping[str, Any]] = ()
    """The risk engine's misfire guard's alerts (``MisfireAlert.to_dict()``)."""
    saved_by_failover: Mapping[str, int] | None = None
    """Payments the router saved, per incident id, if known."""
    classifications: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """incident id -> ``{"dora": ..., "prc": ...}`` from ``tapshield.impact``."""
    tz: str | None = None
    known_identifiers: frozenset[str] = frozenset()
    """Identifiers no message may contain (customer ids and contacts), for the check."""

    def respond(self, incidents: Sequence[Incident], events: pl.DataFrame) -> ResponsePlan:
        ordered = sorted(incidents, key=lambda i: (i.detected_at, i.id))
        cases = self._cases(ordered)
        plan = ResponsePlan({}, [], [], cases, {}, playbook_version=self.playbooks.version,
                            templates_version=self.templates.version)
        told: dict[tuple[str, str], OutboundMessage] = {}
        for inc in ordered:
            self._one(inc, events, plan, told)
        self._followups(ordered, plan, told)
        self._cap(plan)
        plan.messages.sort(key=lambda m: (m.due_at, m.key))
        return plan

    # -- cases ----------------------------------------------------------------

    def _cases(self, ordered: Sequence[Incident]) -> dict[str, str]:
        out: dict[str, str] = {}
        open_cases: list[tuple[str, str, list[dict[str, str]], datetime]] = []
        far = datetime.max.replace(tzinfo=zone("UTC"))
        for inc in ordered:
            end = inc.end or far
            for n, (cid, cause, scope, until) in enumerate(open_cases):
                # (subtract rather than add: ``until`` is datetime.max for a case still open)
                if (cause == inc.cause and _compatible(scope, inc.scope)
                        and inc.start - CASE_GAP <= until):
                    out[inc.id] = cid
                    open_cases[n] = (cid, cause, scope, max(until, end))
                    break
            else:
                out[inc.id] = inc.id
                open_cases.append((inc.id, inc.cause, inc.scope, end))
        return out

    # -- one incident ---------------------------------------------------------

    def _one(self, inc: Incident, events: pl.DataFrame, plan: ResponsePlan,
             told: dict[tuple[str, str], OutboundMessage]) -> None:
        hist = level_history(inc)
        first_ts, _, first_level = hist[0]
        lc = Lifecycle.opened(inc.id, first_ts, ACTOR_MONITOR,
                              f"level {first_level} on {inc.extra.get('signal', 'failures')} "
                              f"(cause {inc.cause}, confidence {inc.confidence:.2f})")
        plan.lifecycles[inc.id] = lc
        case = plan.cases[inc.id]
        affected = affected_customers(events, inc)
        plan.affected[inc.id] = affected.height
        runs: list[tuple[datetime, Step, str]] = []
        for step in self.playbooks.for_phase(inc.cause, "open", 1):  # each at its own level
            at = first_at_level(inc, step.min_level)
            if at is not None:
                runs.append((at, step, "open"))
        for ts, state, lv in hist:
            if state == "escalated":
                runs += [(ts, s, "escalate")
                         for s in self.playbooks.for_phase(inc.cause, "escalate", lv)]
        if inc.end is not None:
            runs += [(inc.end, s, "resolve")
                     for s in self.playbooks.for_phase(inc.cause, "resolve", inc.level)]
        for ts, state, lv in hist[1:]:
            if state in ("escalated", "deescalated"):
                lc.record(ts, ACTOR_MONITOR, "level", f"{state} to level {lv}")
        runs.sort(key=lambda r: (r[0], ("open", "escalate", "resolve").index(r[2])))
        for at, step, phase in runs:
            if phase == "resolve" and lc.state != "resolved" and lc.can("resolved"):
                lc.move("resolved", at, ACTOR_MONITOR, "the failure wave ended")
            outcome, done = self._run(inc, step, at, phase, affected, plan, told, case)
            plan.steps.append(StepRun(inc.id, step, at, outcome, done))
            lc.record(at, ACTOR_PLAYBOOK if step.kind == "action" else "person", "step",
                      step.says, outcome, step=step.id, done=done,
                      playbook=self.playbooks.version)
            if (done and step.kind == "action" and step.name in MITIGATIONS
                    and lc.can("mitigating") and lc.state in ("open", "acknowledged")):
                lc.move("mitigating", at, ACTOR_PLAYBOOK, f"{step.says}: {outcome}")
                self._phase_steps(inc, "mitigate", at, lc, plan, told, case, affected)
        if inc.end is not None and lc.state != "resolved" and lc.can("resolved"):
            lc.move("resolved", inc.end, ACTOR_MONITOR, "the failure wave ended")
        lc.timeline.sort(key=lambda e: e.at)  # stable: same-time entries keep their order

    def _phase_steps(self, inc: Incident, phase: str, at: datetime, lc: Lifecycle,
                     plan: ResponsePlan, told: dict[tuple[str, str], OutboundMessage],
                     case: str, affected: pl.DataFrame, *, trigger: str | None = None,
                     told_before: Sequence[Told] = ()) -> None:
        """Run one phase's steps now (a move into a state: ``acknowledge``, ``mitigate``,
        or a person's ``resolve`` / reopening ``open``), each recorded on the timeline."""
        for step in self.playbooks.for_phase(inc.cause, phase, inc.level):
            if trigger is not None and step.kind == "action" and step.name in (
                    "notify_customers", "followup_customers"):
                outcome, done = self._customers_by_hand(inc, step, at, plan, case,
                                                        told_before)
            else:
                outcome, done = self._run(inc, step, at, phase, affected, plan, told, case)
            plan.steps.append(StepRun(inc.id, step, at, outcome, done))
            data: dict[str, Any] = {"step": step.id, "done": done,
                                    "playbook": self.playbooks.version, "phase": phase}
            if trigger is not None:
                data["after"] = trigger
            lc.record(at, ACTOR_PLAYBOOK if step.kind == "action" else "person", "step",
                      step.says, outcome, **data)

    def _customers_by_hand(self, inc: Incident, step: Step, at: datetime,
                           plan: ResponsePlan, case: str, told: Sequence[Told]
                           ) -> tuple[str, bool]:
        """Customer steps of a phase a person started: follow-ups go to every customer
        the case's notices reached (the outbox knows them); new notices need the
        events, which only the automatic response reads."""
        if step.name == "notify_customers":
            return ("not run on a manual move: the automatic response tells the customers "
                    "it finds in the events"), False
        n = 0
        for t in told:
            rec = Recipient(t.recipient, t.contact_token or "", t.channel,
                            t.language or "zh-CN", t.tz or "Asia/Shanghai")
            body = render(self.templates, inc.cause, "followup", rec, tap=None,
                          scope=inc.scope, ref=case)
            plan.messages.append(self._customer(
                inc, case, "followup", rec, at, body, t.urgent,
                not_before=t.due_at + self.policy.followup_gap))
            n += 1
        return f"{n} follow-ups queued for the customers told", True

    def on_move(self, inc: Incident, lc: Lifecycle, to: str, at: datetime, actor: str,
                why: str, *, case: str | None = None, told: Sequence[Told] = ()
                ) -> tuple[list[TimelineEntry], list[OutboundMessage]]:
        """A person's move (through the service): the move itself, then the playbook
        phase the new state runs, like the monitor's moves do: resolving sends the
        partner update and the follow-ups, acknowledging tells the partner we are on
        it. ``told``: the case's notices already queued (from the outbox). Returns the
        timeline entries and the messages, for one outbox transaction. Raises
        :class:`~tapshield.respond.lifecycle.TransitionError` for a move not allowed."""
        case = case or inc.id
        start = len(lc.timeline)
        lc.move(to, at, actor, why)
        plan = ResponsePlan({inc.id: lc}, [], [], {inc.id: case}, {},
                            playbook_version=self.playbooks.version,
                            templates_version=self.templates.version)
        phase = PHASE_OF_STATE.get(to)
        if phase is not None:
            self._phase_steps(inc, phase, at, lc, plan, {}, case, _NO_AFFECTED, trigger=actor,
                              told_before=told)
        self._cap(plan)
        return lc.timeline[start:], plan.messages

    def _run(self, inc: Incident, step: Step, at: datetime, phase: str,
             affected: pl.DataFrame, plan: ResponsePlan,
             told: dict[tuple[str, str], OutboundMessage], case: str) -> tuple[str, bool]:
        if step.kind == "check":
            return "waiting for a person to tick it", False
        name = step.name
        if name == "notify_customers":
            n = self._notices(inc, at, affected, plan, told, case)
            return f"{n} notices queued ({affected.height} affected customers)", True
        if name == "followup_customers":
            return "follow-ups queued for every customer told", True
        if name == "notify_partners":
            sent = self._webhooks(inc, at, phase, plan)
            return (f"shared record sent to {', '.join(sent)}" if sent
                    else "no partner owns this scope"), True
        if name == "status_page":
            plan.status.append(self._status_entry(inc, at, phase))
            return "status page updated", True
        if name == "rollback_risk_change":
            v = self._verdict(inc)
            if v is None:
                return "the misfire guard named no change: roll back by hand", False
            verb = "rolled back" if v.get("action") == "rollback" else "rollback requested"
            return f"{verb} {v.get('version')}: guard says {v.get('summary', '')}", True
        if name == "lift_restrictions":
            return (f"restrictions lifted for {affected.height} wrongly declined customers",
                    True)
        if name == "failover":
            saved = (self.saved_by_failover or {}).get(inc.id)
            return ("router eliminated the failing channel" + (
                f"; {saved:,} payments saved" if saved is not None else "")), True
        if name == "regulatory_drafts":
            plan.drafts[inc.id] = regulatory_drafts(inc, self.classifications.get(inc.id),
                                                    classified_at=at, tz=self.tz)
            due = [r["report"] for r in plan.drafts[inc.id]["reports"]]
            return ("drafted " + ", ".join(due)) if due else "no report due yet", True
        if name == "postmortem_draft":
            return "post-mortem drafted", True
        # tighten_rules, block_devices, halt_rollout, rollback_release: orders to the
        # engine / release system, recorded as requested (their effect shows in the events)
        return f"{name.replace('_', ' ')} requested", True

    def _verdict(self, inc: Incident) -> Mapping[str, Any] | None:
        far = inc.end or datetime.max.replace(tzinfo=zone("UTC"))
        best = None
        for v in self.guard_verdicts:
            try:
                ts = datetime.fromisoformat(str(v["detected_at"]))
            except (KeyError, ValueError):
                continue
            if inc.start - timedelta(hours=1) <= ts and ts - timedelta(minutes=5) <= far:
                seg = v.get("segment") or {}
                fits = not inc.scope or _compatible([dict(seg)], inc.scope)
                if fits and (best is None
                             or ts < datetime.fromisoformat(str(best["detected_at"]))):
                    best = v
        return best

    # -- messages ---------------------------------------------------------------

    def _notices(self, inc: Incident, at: datetime, affected: pl.DataFrame,
                 plan: ResponsePlan, told: dict[tuple[str, str], OutboundMessage],
                 case: str) -> int:
        n = 0
        urgent = inc.cause in self.policy.urgent_causes
        for row in affected.iter_rows(named=True):
            user = str(row["user_id"])
            if (case, user) in told:
                continue
            rec = self.directory(user)
            if rec is None:
                continue
            tap = FailedTap(row["at"], int(row["amount_fen"]), row["channel"], row["region"])
            wanted = max(at, tap.at)
            body = render(self.templates, inc.cause, "notice", rec, tap=tap,
                          scope=inc.scope, ref=case)
            msg = self._customer(inc, case, "notice", rec, wanted, body, urgent)
            told[(case, user)] = msg
            plan.messages.append(msg)
            n += 1
        return n

    def _customer(self, inc: Incident, case: str, kind: str, rec: Recipient,
                  wanted: datetime, body: str, urgent: bool,
                  not_before: datetime | None = None) -> OutboundMessage:
        findings = personal_data_in(body, known=self.known_identifiers)
        if findings:
            raise ValueError(f"{inc.id}: a {kind} for a customer would carry personal data "
                             f"({', '.join(f.kind for f in findings)}): fix the template")
        due = self.policy.release_at(wanted, rec.tz, inc.cause)
        if not_before is not None:
            due = max(due, not_before)
        return OutboundMessage(
            key=message_key(case, rec.user_id, kind), kind=kind, incident_id=inc.id,
            case_id=case, cause=inc.cause, recipient=rec.user_id, channel=rec.channel,
            due_at=due, wanted_at=wanted, body=body, contact_token=rec.contact_token,
            language=rec.language, tz=rec.tz, urgent=urgent)

    def _followups(self, ordered: Sequence[Incident], plan: ResponsePlan,
                   told: dict[tuple[str, str], OutboundMessage]) -> None:
        by_case: dict[str, list[Incident]] = {}
        for inc in ordered:
            by_case.setdefault(plan.cases[inc.id], []).append(inc)
        for case, incs in by_case.items():
            if any(i.end is None for i in incs):
                continue  # still open: the follow-up waits for the end
            resolving = [s for s in plan.steps
                         if plan.cases[s.incident_id] == case and s.step.kind == "action"
                         and s.step.name == "followup_customers"]
            if not resolving:
                continue
            last = max(incs, key=lambda i: i.end or i.detected_at)
            end = max(s.at for s in resolving)
            for (c, user), notice in list(told.items()):
                if c != case:
                    continue
                rec = self.directory(user)
                if rec is None:
                    continue
                body = render(self.templates, last.cause, "followup", rec, tap=None,
                              scope=last.scope, ref=case)
                plan.messages.append(self._customer(
                    last, case, "followup", rec, end, body, notice.urgent,
                    not_before=notice.due_at + self.policy.followup_gap))

    def _webhooks(self, inc: Incident, at: datetime, phase: str, plan: ResponsePlan
                  ) -> list[str]:
        event = {"open": "incident.opened", "escalate": "incident.escalated",
                 "acknowledge": "incident.acknowledged", "mitigate": "incident.mitigating",
                 "resolve": "incident.resolved"}[phase]
        fired = inc.extra.get("fired_slice")
        sent = []
        for p in self.partners:
            if not p.concerned(inc.scope, fired if isinstance(fired, dict) else None):
                continue
            state = "resolved" if phase == "resolve" else plan.lifecycles[inc.id].state
            asks = ([f"check your service for {', '.join(f'{k}={v}' for k, v in p.owns.items())}"
                     " in the scope and post your status"] if phase != "resolve" else [])
            doc = shared_record(inc, state=state, event=event, case_id=plan.cases[inc.id],
                                tz=self.tz, asks=asks)
            doc["sent_for"] = at.isoformat()
            key = message_key(inc.id, p.name, event, at.isoformat())
            plan.messages.append(OutboundMessage(
                key=key, kind="webhook", incident_id=inc.id, case_id=plan.cases[inc.id],
                cause=inc.cause, recipient=p.name, channel="webhook", due_at=at,
                wanted_at=at, body="", payload=doc))
            sent.append(p.name)
        return sent

    def _status_entry(self, inc: Incident, at: datetime, phase: str) -> dict[str, Any]:
        from tapshield.respond.notices import scope_names

        key = "resolved" if phase == "resolve" else inc.cause
        texts = self.templates.public.get(key) or self.templates.public.get("unknown") or {}
        channels = sorted({c["channel"] for c in inc.scope if "channel" in c})
        regions = sorted({c["region"] for c in inc.scope if "region" in c})
        return {
            "incident_id": inc.id, "at": at, "phase": phase, "cause": inc.cause,
            "channels": channels, "regions": regions,
            "text": {lang: t.format(region=scope_names(inc.scope, "region", lang),
                                    channel=scope_names(inc.scope, "channel", lang))
                     for lang, t in texts.items()},
        }

    # -- the daily cap -----------------------------------------------------------

    def _cap(self, plan: ResponsePlan) -> None:
        count: dict[tuple[str, str], int] = {}
        out: list[OutboundMessage] = []
        for m in sorted(plan.messages, key=lambda m: (m.due_at, m.key)):
            if m.kind == "webhook":
                out.append(m)
                continue
            day = m.due_at.astimezone(zone(m.tz)).date().isoformat()
            n = count.get((m.recipient, day), 0)
            if n >= self.policy.daily_cap and not m.urgent:
                from dataclasses import replace

                out.append(replace(m, suppressed="daily_cap"))
                continue
            count[(m.recipient, day)] = n + 1
            out.append(m)
        plan.messages = out


def plan_postmortems(plan: ResponsePlan, incidents: Sequence[Incident],
                     communication: Mapping[str, Mapping[str, Any]] | None = None,
                     tz: str | None = None) -> None:
    """Fill ``plan.postmortems`` for the incidents whose playbook drafted one."""
    by_id = {i.id: i for i in incidents}
    for s in plan.steps:
        if s.step.name == "postmortem_draft" and s.done and s.incident_id in by_id:
            inc = by_id[s.incident_id]
            plan.postmortems[inc.id] = postmortem_markdown(
                inc, plan.lifecycles[inc.id],
                communication=(communication or {}).get(inc.id),
                steps=[r.to_dict() for r in plan.steps if r.incident_id == inc.id], tz=tz)


__all__ = ["Directory", "OutboundMessage", "Responder", "ResponsePlan",
           "StepRun", "Told", "affected_customers", "first_at_level", "level_history",
           "plan_postmortems"]
