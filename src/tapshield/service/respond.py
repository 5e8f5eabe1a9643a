"""The response desk of the service: timelines, manual lifecycle moves, partner statuses,
and the public status page (HTML, JSON, Atom).

* ``GET /v1/respond/incidents/{id}/timeline``: who did what, when and why;
* ``POST /v1/respond/incidents/{id}/transition`` (operator): acknowledge, start
  mitigating, resolve, open the post-mortem; refused with both states named if
  the lifecycle does not allow it;
* ``POST /v1/respond/partners/{partner}/status``: a partner's own status, signed
  with its shared secret (docs/respond.md, partner protocol); attached to the
  timeline, ``resolved`` resolves the incident, a scope is recorded as a re-scope.
  Partners come from the YAML file named by ``$TAPSHIELD_PARTNERS_FILE``
  (``partners: [{name, owns: {channel: nfc}, url, secret}]``);
* ``GET /status``, ``/status.json``, ``/status.atom``: public, per channel and
  region, open incidents and those closed in the last day, in the templates'
  public wording (no key; nothing about any customer).
"""


import html
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from tapshield.comms.outbox import Outbox
from tapshield.incident import Incident
from tapshield.respond.lifecycle import STATES, Lifecycle, TimelineEntry, TransitionError
from tapshield.respond.notices import load_templates, scope_names
from tapshield.respond.partners import (
    KEY_HEADER,
    TIMESTAMP_HEADER,
    Partner,
    PartnerStatus,
    ReplayGuard,
    SignatureError,
)
from tapshield.respond.responder import OutboundMessage, Responder, Told
from tapshield.service.problems import AUTH, VALIDATION, err
from tapshield.timeutil import parse_rfc3339


class TransitionIn(BaseModel):
    to: str = Field(description=f"One of {', '.join(STATES)}")
    why: str = Field(min_length=1, max_length=2000)


def load_partners(path: str | None = None) -> dict[str, Partner]:
    p = path or os.environ.get("TAPSHIELD_PARTNERS_FILE")
    if not p:
        return {}
    doc = yaml.safe_load(Path(p).read_text(encoding="utf-8")) or {}
    out = {}
    for n, d in enumerate(doc.get("partners") or [], start=1):
        try:
            out[str(d["name"])] = Partner(str(d["name"]), {str(k): str(v) for k, v in
                                                           dict(d["owns"]).items()},
                                          str(d.get("url", "")), str(d["secret"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{p}: partner {n}: needs name, owns and secret ({exc})") from None
    return out


def _lifecycle(outbox: Outbox, incident_id: str) -> Lifecycle:
    lc = Lifecycle(incident_id)
    for r in outbox.timeline(incident_id):
        if r["kind"] == "transition":
            lc.state = str((r["data"] or {}).get("to") or r["what"])
    return lc


def manual_move(ob: Outbox, doc: dict[str, Any], to: str, at: datetime, actor: str,
                why: str) -> tuple[list[TimelineEntry], list[OutboundMessage]]:
    """A person's move and the playbook phase it runs, like the monitor's moves
    (``tapshield.respond.responder.Responder.on_move``): resolving queues the
    follow-ups to every customer the case's notices reached and the partner
    update, acknowledging tells the partner we are on it. Raises ``ApiError``
    409 for a move the lifecycle does not allow."""
    from tapshield.service.app import ApiError

    incident_id = str(doc["id"])
    lc = _lifecycle(ob, incident_id)
    try:
        if "schema_version" not in doc:  # not a full incident record: the move alone
            return [lc.move(to, at, actor, why)], []
        inc = Incident.from_dict(doc)
        case = ob.case_of(incident_id)
        told = [Told(r["recipient"], r["contact_token"], r["channel"], r["language"],
                     r["tz"], r["due_at"], bool(r["urgent"])) for r in ob.notices(case)]
        responder = Responder(directory=lambda _user: None,
                              partners=list(load_partners().values()))
        return responder.on_move(inc, lc, to, at, actor, why, case=case, told=told)
    except TransitionError as exc:
        raise ApiError(409, "bad_transition", str(exc)) from None


def follow_desk_action(rt: Any, doc: dict[str, Any], action: str, actor: str,
                       note: str | None) -> bool:
    """The incident desk's ``acknowledge`` / ``resolve`` (``/v1/incidents/{id}/...``) move
    the response lifecycle too, and run the phase, when the lifecycle allows the move
    (an incident already resolved by its partner is not resolved twice). Returns
    whether it moved."""
    from tapshield.service.app import ApiError

    ob = getattr(rt, "respond_outbox", None)
    if ob is None:
        ob = rt.respond_outbox = Outbox(rt.engine)
    to = {"acknowledge": "acknowledged", "resolve": "resolved"}[action]
    if not _lifecycle(ob, str(doc["id"])).can(to):
        return False
    try:
        entries, messages = manual_move(ob, doc, to, datetime.now(UTC), actor,
                                        note or f"{action} on the incident desk")
    except ApiError:
        return False
    ob.record([(str(doc["id"]), e) for e in entries], messages)
    return True


def router() -> APIRouter:
    from tapshield.service.app import READERS, ApiError, _actor, require

    api = APIRouter()
    guard = ReplayGuard()
    operator = Annotated[Any, Depends(require("operator"))]
    reader = Annotated[Any, Depends(require("operator", "partner", *READERS))]

    def outbox_of(request: Request) -> Outbox:
        rt = request.app.state.runtime
        ob = getattr(rt, "respond_outbox", None)
        if ob is None:
            ob = rt.respond_outbox = Outbox(rt.engine)
        return ob

    def incident_or_404(request: Request, incident_id: str) -> dict[str, Any]:
        got = request.app.state.runtime.desk.get(incident_id)
        if got is None:
            raise ApiError(404, "unknown_incident", f"no incident {incident_id}")
        return got  # type: ignore[no-any-return]

    def timeline_doc(ob: Outbox, incident_id: str) -> dict[str, Any]:
        rows = ob.timeline(incident_id)
        return {"incident_id": incident_id, "state": _lifecycle(ob, incident_id).state,
                "timeline": [{"at": r["at"].isoformat(), "actor": r["actor"],
                              "kind": r["kind"], "what": r["what"], "why": r["why"],
                              "data": r["data"]} for r in rows]}

    @api.get("/v1/respond/incidents/{incident_id}/timeline", tags=["respond"],
             responses=err(*AUTH, 404),
             summary="The incident's lifecycle and timeline")
    def get_timeline(incident_id: str, request: Request, _p: reader) -> dict[str, Any]:
        incident_or_404(request, incident_id)
        return timeline_doc(outbox_of(request), incident_id)

    @api.post("/v1/respond/incidents/{incident_id}/transition", tags=["respond"],
              responses={**err(*AUTH, 404, 409), 422: VALIDATION},
              summary="Move the incident through its lifecycle (with a reason)")
    def transition(incident_id: str, body: TransitionIn, request: Request,
                   principal: operator) -> dict[str, Any]:
        got = incident_or_404(request, incident_id)
        ob = outbox_of(request)
        entries, messages = manual_move(ob, got["incident"], body.to, datetime.now(UTC),
                                        _actor(principal), body.why)
        # the move, the playbook steps it ran and the messages they queued: one transaction
        ob.record([(incident_id, e) for e in entries], messages)
        return timeline_doc(ob, incident_id)

    @api.post("/v1/respond/partners/{partner}/status", tags=["respond"],
              responses=err(401, 404, 409, 413, 422, 429, 503),
              summary="A partner's own status on an incident (HMAC-signed)")
    async def partner_status(partner: str, request: Request) -> dict[str, Any]:
        partners = load_partners()
        p = partners.get(partner)
        if p is None:
            raise ApiError(404, "unknown_partner", f"no partner {partner}")
        body = await request.body()
        now = int(datetime.now(UTC).timestamp())
        try:
            key = guard.verify(p.secret, dict(request.headers), body, now)
        except SignatureError as exc:
            raise ApiError(401, "bad_signature", str(exc)) from None
        try:
            doc = json.loads(body)
            at = datetime.fromtimestamp(int(request.headers[TIMESTAMP_HEADER]), UTC)
            status = PartnerStatus.parse(partner, doc if isinstance(doc, dict) else {}, at)
        except (ValueError, KeyError) as exc:
            raise ApiError(422, "bad_status", str(exc)) from None
        got = incident_or_404(request, status.incident_id)
        ob = outbox_of(request)
        actor = f"partner:{partner}"
        entries = [(status.incident_id, TimelineEntry(
            at, actor, "partner", status.status, status.message,
            {"eta_minutes": status.eta_minutes, "key": request.headers.get(KEY_HEADER)}))]
        if status.scope is not None:
            entries.append((status.incident_id, TimelineEntry(
                at, actor, "rescope", "scope proposed by the partner", status.message,
                {"scope": status.scope})))
        lc = _lifecycle(ob, status.incident_id)
        messages: list[OutboundMessage] = []
        if status.status == "resolved" and lc.can("resolved"):
            # the partner's word resolves it, and runs the resolve phase like a person's
            moved, messages = manual_move(ob, got["incident"], "resolved", at, actor,
                                          status.message or "partner resolved")
            entries += [(status.incident_id, e) for e in moved]
        guard.is_new(key, now)
        ob.record(entries, messages)  # a repeat has the same entry keys: recorded once
        return timeline_doc(ob, status.incident_id)

    def status_items(request: Request) -> list[dict[str, Any]]:
        desk = request.app.state.runtime.desk
        since = datetime.now(UTC) - timedelta(days=1)
        items, _ = desk.find(limit=200)
        t = load_templates()
        out = []
        ob = outbox_of(request)
        for it in items:
            d = it["incident"]
            if int(d.get("level", 4)) > 3:
                continue
            end = d.get("end")
            if end is None:  # a person (or a partner) may have resolved it before the monitor
                moves = [r for r in ob.timeline(str(d["id"])) if r["kind"] == "transition"]
                if moves and moves[-1]["what"] in ("resolved", "postmortem"):
                    end = moves[-1]["at"].isoformat()
            if end is not None and parse_rfc3339(end) < since:
                continue
            inc = Incident.from_dict(d) if "schema_version" in d else None
            scope = inc.scope if inc is not None else []
            key = "resolved" if end is not None else str(d.get("cause", "unknown"))
            texts = t.public.get(key) or t.public.get("unknown") or {}
            out.append({
                "id": d["id"], "status": "resolved" if end is not None else "disrupted",
                "start": d["start"], "end": end, "updated": end or d["detected_at"],
                "channels": sorted({c["channel"] for c in scope if "channel" in c}),
                "regions": sorted({c["region"] for c in scope if "region" in c}),
                "text": {lang: s.format(region=scope_names(scope, "region", lang),
                                        channel=scope_names(scope, "channel", lang))
                         for lang, s in texts.items()}})
        return out

    @api.get("/status.json", tags=["status"], responses=err(503),
             summary="Public status per channel and region")
    def status_json(request: Request) -> dict[str, Any]:
        items = status_items(request)
        return {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "status": "disrupted" if any(i["status"] == "disrupted" for i in items)
                else "operational", "incidents": items}

    @api.get("/status", tags=["status"], response_class=HTMLResponse, responses=err(503),
             summary="Public status page (HTML)")
    def status_html(request: Request) -> Response:
        items = status_items(request)
        rows = "".join(
            f"<tr><td>{html.escape(i['status'])}</td><td>{html.escape(', '.join(i['channels']))}"
            f"</td><td>{html.escape(', '.join(i['regions']))}</td><td>"
            f"{html.escape(i['text'].get('zh-CN', ''))}<br>{html.escape(i['text'].get('en', ''))}"
            f"</td><td>{html.escape(i['updated'])}</td></tr>" for i in items)
        page = ("<!doctype html><meta charset=utf-8><title>闪付服务状态 / FlashPay status</title>"
                "<h1>闪付服务状态 / FlashPay status</h1>"
                + (f"<table><tr><th>status</th><th>channels</th><th>regions</th><th>notice"
                   f"</th><th>updated</th></tr>{rows}</table>" if items
                   else "<p>一切正常 / All systems operational</p>"))
        return HTMLResponse(page)

    @api.get("/status.atom", tags=["status"], response_class=Response, responses={
        **err(503), 200: {"description": "Atom feed", "content": {
            "application/atom+xml": {"schema": {"type": "string"}}}}},
             summary="Public status as an Atom feed")
    def status_atom(request: Request) -> Response:
        items = status_items(request)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        entries = "".join(
            f"<entry><id>urn:tapshield:incident:{html.escape(i['id'])}:{html.escape(i['status'])}"
            f"</id><title>{html.escape(i['status'])}: "
            f"{html.escape(', '.join(i['channels'] + i['regions']) or 'all')}</title>"
            f"<updated>{html.escape(i['updated'])}</updated><summary>"
            f"{html.escape(i['text'].get('zh-CN', ''))} {html.escape(i['text'].get('en', ''))}"
            f"</summary></entry>" for i in items)
        feed = ('<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
                f"<id>urn:tapshield:status</id><title>FlashPay status</title><updated>{now}"
                f"</updated>{entries}</feed>")
        return Response(feed, media_type="application/atom+xml")

    return api
