"""The HTTP layer: FastAPI routes over :class:`~tapshield.service.runtime.ServiceRuntime`.

Every route is versioned under ``/v1`` and documented in ``/openapi.json``
with each answer it can give (401, 403, 404, 409, 413, 422, 429, 503), so a
client generated from the schema, and Schemathesis in the test suite, see the
real contract. ``/metrics``, ``/healthz`` and ``/readyz`` are unversioned and
need no key (bind the service to a private interface; docs/service.md).

The hot path, ``POST /v1/authorize``, validates the body, checks the key and
its rate, and hands the request to the tap book's thread; it answers with the
stored JSON as is, so a replay returns the same bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tapshield import __version__
from tapshield.errors import ContractError
from tapshield.privacy.mask import mask_id
from tapshield.route.router import Probe
from tapshield.service import inbox
from tapshield.service import schemas as s
from tapshield.service.audit import INCIDENT_KINDS, actor_of
from tapshield.service.config import ServiceSettings
from tapshield.service.decision import EngineDecider, TapRequest
from tapshield.service.incidents import visible_to_partner
from tapshield.service.keys import Principal
from tapshield.service.metrics import render
from tapshield.service.problems import AUTH, VALIDATION, err
from tapshield.service.runtime import ServiceRuntime
from tapshield.service.silences import Matcher
from tapshield.service.taps import AttemptResult, BusyError, TapConflictError, UnknownAttemptError

log = logging.getLogger("tapshield.service.http")

READERS = ("risk", "credit", "read-only")
_RID_PREFIX = secrets.token_hex(6)
"""Request ids: a random prefix per process and a counter (unique, and cheaper than
a UUID per request)."""
_rid_counter = itertools.count(1)
_RID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def _problem(status: int, code: str, detail: str, request_id: str | None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "code": code, "detail": detail,
                         "request_id": request_id}, status_code=status, headers=headers)


_err = err
_VALIDATION = VALIDATION
_ANSWER_KEYS = tuple(s.AuthorizeAnswer.model_fields)


# -- the edge middleware -----------------------------------------------------------


class Edge:
    """Request id, body-size limit, request metrics and one JSON log line per request.

    Plain ASGI (no per-request task or body copy), because it wraps the hot path.
    """

    def __init__(self, app: ASGIApp, runtime: ServiceRuntime) -> None:
        self.app = app
        self.rt = runtime
        self.limit = runtime.settings.limits.max_body_bytes
        self.events_limit = runtime.settings.max_events_body_bytes
        self.log_requests = runtime.settings.log_requests
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = ""
        length: int | None = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                cand = v.decode("latin-1")
                if 0 < len(cand) <= 64 and all(c in _RID_OK for c in cand):
                    rid = cand
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
        rid = rid or f"{_RID_PREFIX}{next(_rid_counter):x}"
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = 500
        rid_header = (b"x-request-id", rid.encode())
        m = self.rt.metrics
        m.in_flight.inc()

        async def send_wrapped(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
                msg["headers"] = [*msg.get("headers", []), rid_header]
            await send(msg)

        try:
            limit = self.events_limit if scope["path"] == "/v1/events" else self.limit
            if length is not None and length > limit:
                m.rejected_bodies.inc()
                await _problem(413, "body_too_large",
                               f"request body over {limit} bytes", rid)(
                    scope, receive, send_wrapped)
                return
            seen = 0

            async def receive_limited() -> Message:
                # A chunked body has no length up front: count it as it arrives.
                nonlocal seen
                msg = await receive()
                if msg["type"] == "http.request":
                    seen += len(msg.get("body", b""))
                    if seen > limit:
                        m.rejected_bodies.inc()
                        raise StarletteHTTPException(413, f"request body over {limit} bytes")
                return msg

            await self.app(scope, receive_limited if length is None else receive, send_wrapped)
        finally:
            m.in_flight.dec()
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            method = scope["method"]
            counter = self._counters.get((method, path, status))
            if counter is None:
                counter = self._counters[(method, path, status)] = m.requests.labels(
                    method, path, str(status))
            counter.inc()
            timer = self._timers.get((method, path))
            if timer is None:
                timer = self._timers[(method, path)] = m.duration.labels(method, path)
            timer.observe(elapsed)
            if self.log_requests:
                log.info("request", extra={
                    "request_id": rid, "method": method, "route": path, "status": status,
                    "duration_ms": round(elapsed * 1000.0, 3),
                    "key_id": state.get("key_id"), "role": state.get("role")})


# -- access ------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API key: `tapshield keys create`")


def _admit(rt: ServiceRuntime, request: Request, key: str | None,
           allowed: frozenset[str]) -> Principal:
    """Key, role, rate limit and readiness: the checks every /v1 call passes."""
    if key is None:
        raise ApiError(401, "missing_key", "send an API key: Authorization: Bearer <key>",
                       {"WWW-Authenticate": "Bearer"})
    p = rt.keys.authenticate(key)
    if p is None:
        raise ApiError(401, "invalid_key", "unknown or disabled API key",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    state = request.scope["state"]
    state["key_id"] = p.key_id
    state["role"] = p.role
    if p.role not in allowed:
        raise ApiError(403, "forbidden_role",
                       f"role {p.role} may not do this (needs {' or '.join(sorted(allowed))})")
    wait = rt.limiter.take(p)
    if wait is not None:
        rt.metrics.rate_limited.labels(p.role).inc()
        raise ApiError(429, "rate_limited", f"rate limit of key {p.key_id} exceeded",
                       {"Retry-After": rt.limiter.retry_after(wait)})
    if rt.draining or not rt.ready:
        raise ApiError(503, "not_ready", "the service is starting or shutting down",
                       {"Retry-After": "1"})
    return p


def _bearer_key(request: Request) -> str | None:
    value = request.headers.get("authorization")
    if not value:
        return None
    scheme, _, key = value.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    allowed = frozenset(roles)

    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return _admit(request.app.state.runtime, request,
                      creds.credentials if creds is not None else None, allowed)

    return dependency


Gateway = Annotated[Principal, Depends(require("gateway"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Reader = Annotated[Principal, Depends(require("operator", *READERS))]
HealthReader = Annotated[Principal, Depends(require("gateway", "operator", *READERS))]
CreditRole = Annotated[Principal, Depends(require("credit"))]
RiskRole = Annotated[Principal, Depends(require("risk", "operator"))]
IncidentReader = Annotated[Principal, Depends(require("operator", "partner", *READERS))]
AttemptId = Annotated[str, Path(min_length=1, max_length=128)]
IncidentId = Annotated[str, Path(min_length=1, max_length=64)]
SilenceId = Annotated[str, Path(min_length=1, max_length=36)]


def _actor(p: Principal) -> str:
    return f"{p.key_id}" + (f" ({p.name})" if p.name else "")


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")), status_code=status,
                     media_type="application/json", headers=headers)


async def _await(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except TapConflictError as exc:
        raise ApiError(409, exc.code, exc.detail) from None
    except UnknownAttemptError as exc:
        raise ApiError(404, "unknown_attempt", f"no answer was given for attempt {exc}") \
            from None
    except BusyError as exc:
        raise ApiError(503, "busy", str(exc), {"Retry-After": "1"}) from None
    except (OperationalError, DBAPIError) as exc:
        log.error("database error", extra={"error": type(exc).__name__})
        raise ApiError(503, "database_unavailable", "the database is unavailable; retry",
                       {"Retry-After": "1"}) from None


# -- the application ---------------------------------------------------------------


def create_app(settings: ServiceSettings | None = None, *,
               runtime: ServiceRuntime | None = None, migrate_schema: bool = True) -> FastAPI:
    """The service. Builds its runtime from ``settings`` (or ``$TAPSHIELD_CONFIG``)."""
    if runtime is None:
        if settings is None:
            from tapshield.service.config import load_settings

            settings = load_settings()
        runtime = ServiceRuntime(settings, migrate_schema=migrate_schema)
    rt = runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(rt.start)
        try:
            yield
        finally:
            await asyncio.to_thread(rt.stop)

    app = FastAPI(
        title="tapshield",
        version=__version__,
        summary="Keeps consumer-credit tap-to-pay working and safe.",
        description="Decision and failover routing for each tap, outcomes, channel health, "
        "incidents, alerts and silences. Authenticate with `Authorization: Bearer <key>` "
        "(`tapshield keys create --role R`). See docs/service.md.",
        lifespan=lifespan,
        openapi_tags=[
            {"name": "taps", "description": "The gateway's calls, once per attempt"},
            {"name": "channels", "description": "Router health and probes"},
            {"name": "incidents", "description": "Incidents, alerts and what people did"},
            {"name": "silences", "description": "Runtime silences (Alertmanager-style)"},
            {"name": "risk", "description": "The risk engine: restrictions and labels"},
            {"name": "operations", "description": "Health, readiness, metrics"},
        ],
    )
    app.state.runtime = rt

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status == 409:
            rt.metrics.conflicts.labels(exc.code).inc()
        return _problem(exc.status, exc.code, exc.detail,
                        request.scope.get("state", {}).get("request_id"), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape (loc, msg, type), without echoing the input back: it may
        # hold personal data, or a NaN that JSON cannot even carry.
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", "value_error"))} for e in exc.errors()]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI could not even decode (not UTF-8)
            return JSONResponse(status_code=422, content={"detail": [
                {"loc": ["body"], "msg": "the body is not JSON in UTF-8",
                 "type": "json_invalid"}]})
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error")
        return _problem(exc.status_code, code, str(exc.detail),
                        request.scope.get("state", {}).get("request_id"),
                        dict(exc.headers or {}))

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("database error", extra={"error": type(exc).__name__})
        return _problem(503, "database_unavailable", "the database is unavailable; retry",
                        request.scope.get("state", {}).get("request_id"), {"Retry-After": "1"})

    # -- taps --------------------------------------------------------------------

    gateway_only = frozenset({"gateway"})

    # The hot path is written out by hand: the body is parsed and validated in
    # one step by pydantic-core, and the key checks are a plain call, instead of
    # FastAPI's per-request dependency resolution. The schema is the same as any
    # other route's (see _openapi below).
    @app.post("/v1/authorize", tags=["taps"], response_model=s.AuthorizeAnswer,
              responses={**_err(*AUTH, 409), 422: _VALIDATION, 200: {
                  "description": "The answer (a replay returns the stored one, with "
                  "Idempotent-Replayed: true)"}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {
                      "$ref": "#/components/schemas/AuthorizeRequest"}}}},
                  "security": [{"HTTPBearer": []}]},
              summary="Decide and route one attempt of a tap")
    async def authorize(request: Request) -> Response:
        _admit(rt, request, _bearer_key(request), gateway_only)
        try:
            body = s.AuthorizeRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        req = TapRequest(
            payment_id=body.payment_id, attempt_id=body.attempt_id, user_id=body.user_id,
            device_id=body.device_id, merchant_id=body.merchant_id,
            amount_fen=body.amount_fen, region=body.region,
            channels=tuple(body.channels) if body.channels is not None else None,
            carrier=body.carrier, os=body.os, app_version=body.app_version,
            device_model=body.device_model, merchant_category=body.merchant_category,
            ts=time.time())
        stored, replayed = await _await(rt.ledger.authorize_async(req))
        # One key order whatever the database did to it (JSONB sorts keys): a
        # replay is byte for byte the first answer.
        answer = {k: stored[k] for k in _ANSWER_KEYS}
        if replayed:
            rt.metrics.replays.inc()
            return _json(answer, headers={"Idempotent-Replayed": "true"})
        rt.metrics.decisions.labels(answer["decision"], answer["channel"] or "none").inc()
        return _json(answer)

    @app.post("/v1/attempts/{attempt_id}/result", tags=["taps"], response_model=s.ResultAnswer,
              responses=_err(*AUTH, 404, 409), summary="Report how an attempt ended")
    async def report_result(attempt_id: AttemptId, body: s.ResultRequest,
                            principal: Gateway) -> Response:
        answer = await _await(rt.ledger.report_async(
            attempt_id, AttemptResult(body.outcome, body.response_code, body.latency_ms,
                                      body.step_up_passed)))
        rt.metrics.results.labels(answer["channel"], body.outcome).inc()
        return _json(answer)

    @app.post("/v1/attempts/{attempt_id}/inquiry", tags=["taps"],
              response_model=s.ResultAnswer, responses=_err(*AUTH, 404, 409),
              summary="Report the status inquiry's answer for a timed-out attempt")
    async def report_inquiry(attempt_id: AttemptId, body: s.InquiryRequest,
                             principal: Gateway) -> Response:
        return _json(await _await(rt.ledger.resolve_async(attempt_id, body.authorised)))

    @app.post("/v1/events", tags=["taps"], response_model=s.EventsAnswer,
              responses={**_err(*AUTH), 422: _VALIDATION},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "array", "items": {
                      "$ref": "#/components/schemas/EventIn"}}},
                  "application/x-ndjson": {"schema": {"type": "string"}}}}},
              summary="Batch ingest of payment events for the live monitor")
    async def ingest_events(request: Request, principal: Gateway) -> Response:
        """A JSON array or NDJSON (``application/x-ndjson``) of events in the event
        contract (docs/contracts.md), validated with the same rules as files; the
        accepted ones are stored before the answer, the rejects come back row by row."""
        raw = await request.body()
        try:
            records = inbox.parse_body(raw, request.headers.get("content-type", ""))
        except (ValueError, UnicodeDecodeError):
            raise RequestValidationError([{"loc": ("body",), "msg": "the body must be a "
                                           "JSON array of events or NDJSON in UTF-8",
                                           "type": "json_invalid"}]) from None
        if len(records) > 100_000:
            raise RequestValidationError([{"loc": ("body",), "msg": "at most 100,000 events "
                                           "per request", "type": "too_long"}])
        accepted, rejects = await asyncio.to_thread(rt.inbox.accept, records)
        return _json({"accepted": accepted, "rejected": len(rejects), "rejects": [
            {"row": e.row, "column": e.column, "rule": e.rule} for e in rejects]})

    # -- channels ----------------------------------------------------------------

    @app.get("/v1/channels/health", tags=["channels"], response_model=s.ChannelHealth,
             responses=_err(*AUTH), summary="Per channel and region: state, success "
             "probability, eliminated since")
    def channel_health(principal: HealthReader) -> dict[str, Any]:
        now = time.time()
        state = {(k["channel"], k["region"] or None): k
                 for k in rt.router.export_state()["keys"]}
        keys = []
        for row in rt.router.snapshot(now):
            st = state.get((row["channel"], row["region"]), {})
            since = st.get("eliminated_at")
            keys.append({
                "channel": row["channel"], "region": row["region"],
                "state": "eliminated" if row["eliminated"] else
                "trial" if row["trial"] else "healthy",
                "success_probability": row["score"],
                "eliminated_since": (datetime.fromtimestamp(since, UTC)
                                     if row["eliminated"] and since is not None
                                     and math.isfinite(since) else None),
                "cusum": row["cusum"], "cusum_threshold": row["threshold"]})
        share = rt.share
        return {"at": datetime.fromtimestamp(now, UTC), "keys": keys, "share": {
            "configured": share is not None,
            "up": share.stats.healthy if share is not None else None,
            "pending": share.pending if share is not None else None,
            "errors": share.stats.errors if share is not None else None}}

    @app.get("/v1/probes/due", tags=["channels"], response_model=s.ProbesDue,
             responses=_err(*AUTH), summary="Probes the gateway should send now "
             "(poll once a second)")
    def probes_due(principal: Gateway) -> dict[str, Any]:
        now = time.time()
        due = rt.router.due_probes(now)
        if rt.share is not None:
            every = rt.router_config.probe_interval_s
            due = [p for p in due if rt.share.claim(p, now, every)]
        return {"probes": [{"channel": p.channel, "region": p.region} for p in due]}

    @app.post("/v1/probes/results", tags=["channels"], response_model=s.Accepted,
              responses=_err(*AUTH), summary="Report probe results")
    def probe_results(body: s.ProbeResults, principal: Gateway) -> dict[str, Any]:
        now = time.time()
        n = 0
        for r in body.results:
            if r.channel in rt.router_config.order:
                rt.router.observe_probe(Probe(r.channel, r.region), r.ok, now)
                n += 1
        return {"accepted": n}

    # -- incidents & alerts --------------------------------------------------------

    @app.get("/v1/incidents", tags=["incidents"], response_model=s.IncidentList,
             responses=_err(*AUTH), summary="Incidents, newest first")
    def list_incidents(
        principal: IncidentReader,
        status: Literal["open", "closed"] | None = None,
        level: Annotated[int | None, Query(ge=1, le=4, description=(
            "Only incidents at this level or more severe (1 red ... 4 blue)"))] = None,
        cause: Literal["interface", "network", "risk_control", "fraud_attack", "release",
                       "unknown"] | None = None,
        since: Annotated[s.Instant | None, Query(description="Started at or after (RFC 3339)")
                         ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        items, total = rt.desk.find(
            status=status, level_at_most=level, cause=cause, since=_utc(since), limit=limit,
            offset=offset, partner=principal.partner if principal.role == "partner" else None)
        return {"total": total, "items": items}

    def _incident_or_404(incident_id: str, p: Principal) -> dict[str, Any]:
        got = rt.desk.get(incident_id)
        if got is None or (p.role == "partner"
                           and not visible_to_partner(got["incident"], p.partner)):
            raise ApiError(404, "unknown_incident", f"no incident {incident_id}")
        return got

    @app.get("/v1/incidents/{incident_id}", tags=["incidents"],
             response_model=s.IncidentDetail, responses=_err(*AUTH, 404),
             summary="One incident with its handling history")
    def get_incident(incident_id: IncidentId, principal: IncidentReader) -> dict[str, Any]:
        return _incident_or_404(incident_id, principal)

    def _act(incident_id: str, p: Principal, action: str, *, assignee: str | None = None,
             note: str | None = None) -> dict[str, Any]:
        got = _incident_or_404(incident_id, p)
        rt.desk.act(incident_id, action, _actor(p), assignee=assignee, note=note)
        if action in ("acknowledge", "resolve"):  # the response lifecycle and its playbook
            from tapshield.service.respond import follow_desk_action

            follow_desk_action(rt, got["incident"], action, _actor(p), note)
        rt.audit.record(INCIDENT_KINDS[action], actor_of(p), incident_id,
                        {"assignee": assignee, "note": note})
        log.info("incident action", extra={"incident_id": incident_id, "action": action,
                                           "key_id": p.key_id})
        return _incident_or_404(incident_id, p)

    @app.post("/v1/incidents/{incident_id}/acknowledge", tags=["incidents"],
              response_model=s.IncidentDetail, responses=_err(*AUTH, 404),
              summary="Acknowledge: someone is on it")
    def acknowledge(incident_id: IncidentId, body: s.AcknowledgeIn,
                    principal: Operator) -> dict[str, Any]:
        return _act(incident_id, principal, "acknowledge", note=body.note)

    @app.post("/v1/incidents/{incident_id}/assign", tags=["incidents"],
              response_model=s.IncidentDetail, responses=_err(*AUTH, 404),
              summary="Assign the incident to a person or team")
    def assign(incident_id: IncidentId, body: s.AssignIn, principal: Operator) -> dict[str, Any]:
        return _act(incident_id, principal, "assign", assignee=body.assignee, note=body.note)

    @app.post("/v1/incidents/{incident_id}/note", tags=["incidents"],
              response_model=s.IncidentDetail, responses=_err(*AUTH, 404),
              summary="Add a note to the incident's record")
    def note(incident_id: IncidentId, body: s.NoteIn, principal: Operator) -> dict[str, Any]:
        return _act(incident_id, principal, "note", note=body.note)

    @app.post("/v1/incidents/{incident_id}/resolve", tags=["incidents"],
              response_model=s.IncidentDetail, responses=_err(*AUTH, 404),
              summary="Mark the incident handled (the wave's own end stays as measured)")
    def resolve(incident_id: IncidentId, body: s.ResolveIn,
                principal: Operator) -> dict[str, Any]:
        return _act(incident_id, principal, "resolve", note=body.note)

    @app.get("/v1/alerts", tags=["incidents"], response_model=s.AlertList,
             responses=_err(*AUTH), summary="Alert state changes, newest first")
    def list_alerts(
        principal: Reader,
        incident_id: Annotated[str | None, Query(max_length=64)] = None,
        alert_id: Annotated[str | None, Query(max_length=128)] = None,
        state: Literal["firing", "escalated", "deescalated", "reminder", "resolved",
                       "suppressed"] | None = None,
        since: Annotated[s.Instant | None, Query(description="At or after (RFC 3339)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:
        items, total = rt.desk.alerts(incident_id=incident_id, alert_id=alert_id, state=state,
                                      since=_utc(since), limit=limit, offset=offset)
        return {"total": total, "items": items}

    # -- silences ----------------------------------------------------------------

    @app.post("/v1/silences", tags=["silences"], response_model=s.SilenceOut, status_code=201,
              responses=_err(*AUTH), summary="Create a silence")
    def create_silence(body: s.SilenceIn, principal: Operator) -> dict[str, Any]:
        now = datetime.now(UTC)
        sil = rt.silences.create(
            [Matcher(m.name, m.value, m.is_regex, m.is_equal) for m in body.matchers],
            body.starts_at or now, body.ends_at, _actor(principal), body.comment)
        log.info("silence created", extra={"silence_id": sil.id, "key_id": principal.key_id})
        rt.audit.record("silence.created", actor_of(principal), f"silence:{sil.id}", {
            "matchers": [m.to_dict() for m in sil.matchers], "starts_at": sil.starts_at,
            "ends_at": sil.ends_at, "comment": sil.comment})
        return sil.to_dict(now)

    @app.get("/v1/silences", tags=["silences"], response_model=s.SilenceList,
             responses=_err(*AUTH), summary="Silences, newest first")
    def list_silences(
        principal: Reader,
        include_expired: bool = True,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {"items": [x.to_dict(now) for x in
                          rt.silences.find(include_expired=include_expired, limit=limit)]}

    @app.get("/v1/silences/{silence_id}", tags=["silences"], response_model=s.SilenceOut,
             responses=_err(*AUTH, 404), summary="One silence")
    def get_silence(silence_id: SilenceId, principal: Reader) -> dict[str, Any]:
        sil = rt.silences.get(silence_id)
        if sil is None:
            raise ApiError(404, "unknown_silence", f"no silence {silence_id}")
        return sil.to_dict(datetime.now(UTC))

    @app.delete("/v1/silences/{silence_id}", tags=["silences"], response_model=s.SilenceOut,
                responses=_err(*AUTH, 404), summary="Expire a silence now (kept for the record)")
    def expire_silence(silence_id: SilenceId, principal: Operator) -> dict[str, Any]:
        sil = rt.silences.expire(silence_id)
        if sil is None:
            raise ApiError(404, "unknown_silence", f"no silence {silence_id}")
        log.info("silence expired", extra={"silence_id": silence_id,
                                           "key_id": principal.key_id})
        rt.audit.record("silence.deleted", actor_of(principal), f"silence:{silence_id}",
                        {"ends_at": sil.ends_at})
        return sil.to_dict(datetime.now(UTC))

    # -- impact ------------------------------------------------------------------

    @app.post("/v1/impact", tags=["incidents"], responses={**_err(*AUTH, 404), 422: _VALIDATION,
              200: {"description": "impact.json (docs/impact.md)", "content": {
                  "application/json": {"schema": {"type": "object"}}}}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "text/csv": {"schema": {"type": "string"}},
                  "application/x-ndjson": {"schema": {"type": "string"}}}}},
              summary="Value a loan book (portfolio CSV or JSONL) against stored incidents")
    async def impact(
        request: Request, principal: CreditRole,
        incident_id: Annotated[list[str] | None, Query(max_length=50)] = None,
    ) -> Response:
        """The portfolio contract of docs/impact.md; the lost sales come from the events
        the service holds (the live monitor's inbox). Without ``incident_id``: the 50
        newest stored incidents."""
        raw = await request.body()
        kind = request.headers.get("content-type", "")
        ids = [i for i in (incident_id or []) if 0 < len(i) <= 64]
        try:
            doc = await asyncio.to_thread(_value_portfolio, raw, kind, ids)
        except LookupError as exc:
            raise ApiError(404, "unknown_incident", str(exc)) from None
        except (ContractError, ValueError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
            raise RequestValidationError([{"loc": ("body",), "msg": " ".join(str(exc).split())[
                :300], "type": "value_error"}]) from None
        return Response(json.dumps(doc, ensure_ascii=False, default=str),
                        media_type="application/json")

    def _value_portfolio(raw: bytes, kind: str, ids: list[str]) -> dict[str, Any]:
        import tempfile

        from tapshield.impact.assess import assess
        from tapshield.impact.portfolio import read_portfolio
        from tapshield.impact.report import to_dict
        from tapshield.incident import Incident

        if ids:
            got = [rt.desk.get(i) for i in ids]
            missing = [i for i, g in zip(ids, got, strict=True) if g is None]
            if missing:
                raise LookupError(f"no incident {missing[0]}")
            incs = [Incident.from_dict(g["incident"]) for g in got if g is not None]
        else:
            items, _ = rt.desk.find(limit=50)
            incs = [Incident.from_dict(x["incident"]) for x in items]
        suffix = ".jsonl" if "json" in kind else ".csv"
        raw.decode("utf-8")
        with tempfile.TemporaryDirectory() as d:
            path = FilePath(d) / f"portfolio{suffix}"
            path.write_bytes(raw)
            pf = read_portfolio(path)
        batches = _inbox_batches()
        result = assess(batches, incs, pf)
        out = to_dict(result)
        out["portfolio_rejects"] = [str(e) for e in pf.errors]
        out["events_source"] = "the live monitor's inbox (service_events)"
        return out

    def _inbox_batches() -> Any:
        pos = 0
        while True:
            pos2, frame = rt.inbox.read(pos, 200_000)
            if frame.height == 0:
                return
            yield frame
            pos = pos2

    # -- risk --------------------------------------------------------------------

    def _engine() -> Any:
        if not isinstance(rt.decider, EngineDecider):
            raise ApiError(409, "risk_engine_off", "the risk engine is not configured "
                           "(config `risk:`); decisions come from the `decision` rule set")
        return rt.decider.engine

    @app.get("/v1/risk/restrictions", tags=["risk"], response_model=s.RestrictionList,
             responses=_err(*AUTH, 409), summary="Restrictions in force")
    def list_restrictions(principal: RiskRole) -> dict[str, Any]:
        eng = _engine()
        return {"items": [r.to_dict() for r in list(eng.restrictions.values())]}

    @app.post("/v1/risk/restrictions", tags=["risk"], response_model=s.RestrictionOut,
              status_code=201, responses=_err(*AUTH, 409),
              summary="Restrict an account or a device until a time (step_up or decline)")
    def restrict(body: s.RestrictionIn, principal: RiskRole) -> dict[str, Any]:
        eng = _engine()
        now = datetime.now(UTC)
        if body.until <= now:
            raise RequestValidationError([{"loc": ("body", "until"), "msg": "must be in the "
                                           "future", "type": "value_error"}])
        r = eng.restrict(body.kind, body.id, action=body.action, until=body.until,
                         since=now, reason=body.reason, by=_actor(principal))
        rt.restrict(r)
        rt.audit.record("risk.restricted", actor_of(principal), f"{body.kind}:{mask_id(body.id)}",
                        {"action": body.action, "until": body.until, "reason": body.reason})
        return dict(r.to_dict())

    @app.delete("/v1/risk/restrictions/{kind}/{entity_id}", tags=["risk"],
                response_model=s.RestrictionOut, responses=_err(*AUTH, 404, 409),
                summary="Lift a restriction now")
    def lift(kind: Literal["user", "device"], entity_id: AttemptId,
             principal: RiskRole) -> dict[str, Any]:
        _engine()
        r = rt.lift(kind, entity_id, _actor(principal))
        if r is None:
            raise ApiError(404, "unknown_restriction", f"no restriction on that {kind}")
        rt.audit.record("risk.lifted", actor_of(principal), f"{kind}:{mask_id(entity_id)}",
                        {"action": r.action, "reason": r.reason})
        return dict(r.to_dict())

    @app.post("/v1/risk/labels", tags=["risk"], response_model=s.Accepted,
              responses=_err(*AUTH, 409),
              summary="Fraud labels (chargebacks, reports), used from their reported_at on")
    def labels(body: s.LabelsIn, principal: RiskRole) -> dict[str, Any]:
        eng = _engine()
        n = sum(1 for x in body.labels if eng.label(x.event_id, x.label, x.reported_at))
        return {"accepted": n}

    # -- operations ----------------------------------------------------------------

    @app.get("/v1/monitor", tags=["incidents"], response_model=s.MonitorStatus,
             responses=_err(*AUTH), summary="The live monitor on this worker")
    def monitor_status(principal: Reader) -> dict[str, Any]:
        w = rt.watch
        if w is None:
            return {"enabled": False, "leader": False, "restored": False, "position": 0,
                    "events": 0, "open_alerts": 0, "pages": 0, "alert_changes": 0}
        return {"enabled": True, **w.status()}

    @app.get("/runbooks/{cause}", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}},
                              "description": "The runbook of a cause"},
                        404: {"model": s.Problem, "description": "Unknown cause"}},
             summary="What on-call does for an incident of this cause (linked from alerts)")
    def runbook(cause: Annotated[str, Path(max_length=32)]) -> Response:
        from tapshield.service.runbooks import RUNBOOKS

        body = RUNBOOKS.get(cause)
        if body is None:
            raise ApiError(404, "unknown_cause", f"no runbook for cause {cause}")
        return Response(body, media_type="text/markdown; charset=utf-8")

    @app.get("/healthz", tags=["operations"], response_model=s.Health,
             summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=s.Readiness,
             responses={503: {"model": s.Readiness, "description": "Not ready"}},
             summary="Readiness: started, not draining, database reachable")
    def readyz() -> JSONResponse:
        checks = {"started": rt.ready, "not_draining": not rt.draining,
                  "database": rt.database_ok()}
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    def metrics() -> Response:
        return Response(render(rt.registry),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema["components"]["schemas"]["AuthorizeRequest"] = (
                s.AuthorizeRequest.model_json_schema(
                    ref_template="#/components/schemas/{model}"))
            schema["components"]["schemas"]["EventIn"] = inbox.EVENT_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = _openapi  # type: ignore[method-assign]
    from tapshield.console import build_router as console_router  # an edge: deferred
    app.include_router(console_router(rt))
    app.add_middleware(Edge, runtime=rt)
    from tapshield.service.respond import router as respond_router

    app.include_router(respond_router())  # docs/respond.md
    return app


def _utc(v: datetime | None) -> datetime | None:
    return v.astimezone(UTC) if v is not None else None


def create_app_from_env() -> FastAPI:
    """Factory for worker processes (``uvicorn --factory``): config from
    ``$TAPSHIELD_CONFIG``; the parent has migrated the schema already."""
    from tapshield.service import logs
    from tapshield.service.config import load_settings

    settings = load_settings()
    logs.setup(settings.log_level)
    return create_app(settings, migrate_schema=False)
