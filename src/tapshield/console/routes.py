"""The console's HTTP routes (mounted under ``/console`` by the service app).

Pages are rendered on the server (Jinja2, inline SVG charts, one small vanilla
script, no CDN: the console must work on an isolated operations network). Live
pages hold one server-sent-events stream that says *when* the page changed; the
browser then fetches the page's live fragment again, so what is drawn always
comes from the same server-side code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from tapshield.console import auth, data
from tapshield.console.i18n import negotiate, t
from tapshield.console.ports import Runtime as ServiceRuntime
from tapshield.report.present import count, yuan

log = logging.getLogger("tapshield.console")
STATIC = {"console.css": "text/css; charset=utf-8",
          "console.js": "text/javascript; charset=utf-8"}
LANG_COOKIE = "tapshield_console_lang"
STREAM_EVERY_S = 2.0


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tapshield.console", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined)
    env.filters["yuan"] = yuan
    env.filters["count"] = count
    return env


@cache
def _static(name: str) -> bytes:
    return resources.files("tapshield.console").joinpath("static", name).read_bytes()


class Console:
    """State of the console in one worker: the runtime, the signer, the impact file."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.cfg = rt.settings.console
        self.signer = auth.Signer(auth.load_secret(rt.settings.keys_file))
        self.passkeys = auth.PasskeyStore(rt.settings.keys_file)
        self.impact = data.ImpactFile(self.cfg.impact_file)

    # -- request helpers -----------------------------------------------------------

    def lang(self, request: Request) -> str:
        return negotiate(request.headers.get("accept-language"),
                         request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))

    def session(self, request: Request) -> auth.Session | None:
        return auth.read_session(self.signer, request.cookies.get(auth.SESSION_COOKIE),
                                 self.rt.keys.principal)

    def render(self, request: Request, template: str, *, status: int = 200,
               session: auth.Session | None = None, page: str = "", **ctx: Any) -> HTMLResponse:
        lang = self.lang(request)
        html = _env().get_template(template).render(
            t=lambda k: t(k, lang), lang=lang, session=session, page=page,
            pages=[p for p in ("now", "incidents", "impact", "risk")
                   if session is not None and session.sees(p)],
            may_act=session is not None and session.may_act(self.cfg.passkey_for_actions),
            passkey_needed=self.cfg.passkey_for_actions, **ctx)
        resp = HTMLResponse(html, status_code=status, headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})
        if request.query_params.get("lang") in ("en", "zh"):
            resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict",
                            path="/console")
        return resp

    def guard(self, request: Request, page: str) -> auth.Session | Response:
        s = self.session(request)
        if s is None:
            nxt = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return RedirectResponse(f"/console/login?next={nxt}", status_code=303)
        if not s.sees(page):
            return self.render(request, "message.html.j2", status=403, session=s,
                               message=t("forbidden", self.lang(request)))
        return s

    def actor(self, request: Request) -> auth.Session:
        """A session allowed to act, with a matching CSRF header, or an HTTP error."""
        s = self.session(request)
        if s is None:
            raise StarletteHTTPException(401, "sign in first")
        if request.headers.get("x-csrf-token") != s.csrf:
            raise StarletteHTTPException(403, "missing or wrong CSRF token")
        if not s.may_act(self.cfg.passkey_for_actions):
            raise StarletteHTTPException(
                403, "operators act after a passkey sign-in" if s.principal.role == "operator"
                else f"role {s.principal.role} may not act on incidents")
        return s

    def rp(self, request: Request) -> tuple[str, list[str]]:
        """WebAuthn relying party id and the origins accepted."""
        host = request.url.hostname or "localhost"
        rp_id = self.cfg.rp_id or host
        origins = list(self.cfg.origins)
        if not origins:
            pub = urlsplit(self.rt.settings.public_url)
            origins = [f"{pub.scheme}://{pub.netloc}",
                       f"{request.url.scheme}://{request.url.netloc}"]
        return rp_id, origins

    def login(self, key_id: str, method: str, target: str) -> Response:
        token = auth.new_session_token(self.signer, key_id, method, self.cfg.session_hours)
        resp: Response
        if target.startswith("json"):
            resp = JSONResponse({"ok": True, "next": target[4:] or "/console/now"})
        else:
            resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(auth.SESSION_COOKIE, token, max_age=int(self.cfg.session_hours * 3600),
                        httponly=True, samesite="strict", path="/console",
                        secure=self.rt.settings.public_url.startswith("https://"))
        resp.delete_cookie(auth.CHALLENGE_COOKIE, path="/console")
        return resp


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/console/") and "//" not in value \
        else "/console/now"


def build_router(rt: ServiceRuntime) -> APIRouter:
    """The console's routes over the service's runtime (``app.include_router(...)``)."""
    router = APIRouter(prefix="/console", include_in_schema=False)
    if not rt.settings.console.enabled:
        return router
    try:
        c = Console(rt)
    except OSError as exc:
        # e.g. a read-only directory of the keys file: the API keeps serving
        log.warning("console disabled: cannot keep its files beside the keys file",
                    extra={"error": str(exc)})
        return router

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return Response(_static(name), media_type=STATIC[name],
                        headers={"Cache-Control": "max-age=300"})

    @router.get("")
    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/console/now", status_code=303)

    # -- sign-in -------------------------------------------------------------------

    @router.get("/login")
    def login_page(request: Request, error: str = "") -> Response:
        return c.render(request, "login.html.j2", error=error,
                        next=_safe_next(request.query_params.get("next")))

    @router.post("/login")
    async def login_key(request: Request) -> Response:
        # A urlencoded form of two fields: parsed here rather than pulling in a
        # multipart parser for it.
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        nxt = _safe_next((form.get("next") or [""])[0])
        lang = c.lang(request)
        p = rt.keys.authenticate(key) if key else None
        if p is None:
            return c.render(request, "login.html.j2", status=401, error=t("bad_key", lang),
                            next=nxt)
        if p.role not in auth.CONSOLE_ROLES:
            return c.render(request, "login.html.j2", status=403,
                            error=t("no_console_role", lang), next=nxt)
        return c.login(p.key_id, "key", nxt)

    @router.post("/logout")
    def logout() -> Response:
        resp = RedirectResponse("/console/login", status_code=303)
        resp.delete_cookie(auth.SESSION_COOKIE, path="/console")
        return resp

    @router.post("/passkeys/login/options")
    def passkey_login_options(request: Request) -> Response:
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        rp_id, _ = c.rp(request)
        opts = generate_authentication_options(
            rp_id=rp_id, user_verification=UserVerificationRequirement.REQUIRED)
        resp = Response(options_to_json(opts), media_type="application/json")
        resp.set_cookie(auth.CHALLENGE_COOKIE, c.signer.sign("login", {
            "c": auth.b64(opts.challenge), "exp": time.time() + auth.CHALLENGE_TTL_S}),
            httponly=True, samesite="strict", path="/console",
            max_age=int(auth.CHALLENGE_TTL_S))
        return resp

    @router.post("/passkeys/login/verify")
    async def passkey_login_verify(request: Request) -> Response:
        from webauthn import verify_authentication_response

        lang = c.lang(request)
        chal = c.signer.verify("login", request.cookies.get(auth.CHALLENGE_COOKIE))
        body = await request.json()
        cred = body.get("credential") if isinstance(body, dict) else None
        entry = c.passkeys.get(str((cred or {}).get("id") or ""))
        if chal is None or cred is None or entry is None:
            return JSONResponse({"ok": False, "error": t("passkey_failed", lang)}, 401)
        rp_id, origins = c.rp(request)
        try:
            ok = verify_authentication_response(
                credential=cred, expected_challenge=auth.unb64(chal["c"]),
                expected_rp_id=rp_id, expected_origin=origins,
                credential_public_key=auth.public_key_of(entry),
                credential_current_sign_count=int(entry["sign_count"]),
                require_user_verification=True)
        except Exception:  # the library raises several types for one meaning: refused
            return JSONResponse({"ok": False, "error": t("passkey_failed", lang)}, 401)
        p = rt.keys.principal(str(entry["key_id"]))
        if p is None or p.role not in auth.CONSOLE_ROLES:
            return JSONResponse({"ok": False, "error": t("bad_key", lang)}, 401)
        c.passkeys.used(str(cred["id"]), ok.new_sign_count)
        return c.login(p.key_id, "passkey", "json" + _safe_next(str(body.get("next") or "")))

    @router.get("/passkeys")
    def passkeys_page(request: Request) -> Response:
        s = c.session(request)
        if s is None:
            return RedirectResponse("/console/login?next=/console/passkeys", status_code=303)
        return c.render(request, "passkeys.html.j2", session=s, page="passkeys",
                        passkeys=c.passkeys.of_key(s.principal.key_id))

    @router.post("/passkeys/register/options")
    def passkey_register_options(request: Request) -> Response:
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.structs import (
            AuthenticatorSelectionCriteria,
            PublicKeyCredentialDescriptor,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        s = c.session(request)
        if s is None or request.headers.get("x-csrf-token") != s.csrf:
            return JSONResponse({"ok": False, "error": "sign in first"}, 401)
        rp_id, _ = c.rp(request)
        p = s.principal
        opts = generate_registration_options(
            rp_id=rp_id, rp_name="tapshield", user_id=p.key_id.encode(),
            user_name=p.name or p.key_id, user_display_name=f"{p.name or p.key_id} ({p.role})",
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=auth.unb64(e["id"]))
                                 for e in c.passkeys.of_key(p.key_id)])
        resp = Response(options_to_json(opts), media_type="application/json")
        resp.set_cookie(auth.CHALLENGE_COOKIE, c.signer.sign("register", {
            "c": auth.b64(opts.challenge), "k": p.key_id,
            "exp": time.time() + auth.CHALLENGE_TTL_S}), httponly=True, samesite="strict",
            path="/console", max_age=int(auth.CHALLENGE_TTL_S))
        return resp

    @router.post("/passkeys/register/verify")
    async def passkey_register_verify(request: Request) -> Response:
        from webauthn import verify_registration_response

        s = c.session(request)
        chal = c.signer.verify("register", request.cookies.get(auth.CHALLENGE_COOKIE))
        if s is None or request.headers.get("x-csrf-token") != s.csrf or chal is None \
                or chal.get("k") != s.principal.key_id:
            return JSONResponse({"ok": False, "error": "sign in first"}, 401)
        body = await request.json()
        rp_id, origins = c.rp(request)
        try:
            reg = verify_registration_response(
                credential=body.get("credential"), expected_challenge=auth.unb64(chal["c"]),
                expected_rp_id=rp_id, expected_origin=origins, require_user_verification=True)
        except Exception:  # the library raises several types for one meaning: refused
            return JSONResponse({"ok": False, "error": "the passkey was not accepted"}, 400)
        c.passkeys.add(reg.credential_id, s.principal.key_id, reg.credential_public_key,
                       reg.sign_count, str(body.get("name") or "")[:64])
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(auth.CHALLENGE_COOKIE, path="/console")
        return resp

    # -- pages -------------------------------------------------------------------------

    @router.get("/now")
    async def now(request: Request, partial: int = 0) -> Response:
        s = c.guard(request, "now")
        if not isinstance(s, auth.Session):
            return s
        view = await asyncio.to_thread(data.now_view, rt, c.lang(request))
        return c.render(request, "now_live.html.j2" if partial else "now.html.j2", session=s,
                        page="now", v=view)

    @router.get("/incidents")
    async def incidents(request: Request, status: str = "", cause: str = "",
                        level: int = 0) -> Response:
        s = c.guard(request, "incidents")
        if not isinstance(s, auth.Session):
            return s
        lang = c.lang(request)
        rows, folded = await asyncio.to_thread(
            data.incident_lists, rt, lang, status=status if status in ("open", "closed")
            else None, cause=cause or None, level=level if 1 <= level <= 4 else None)
        return c.render(request, "incidents.html.j2", session=s, page="incidents", rows=rows,
                        folded=folded, f={"status": status, "cause": cause, "level": level})

    @router.get("/incidents/{incident_id}")
    async def incident(request: Request, incident_id: str, partial: int = 0) -> Response:
        s = c.guard(request, "incidents")
        if not isinstance(s, auth.Session):
            return s
        lang = c.lang(request)
        view = await asyncio.to_thread(data.incident_view, rt, incident_id[:64], lang,
                                       c.impact)
        if view is None:
            return c.render(request, "message.html.j2", status=404, session=s,
                            message=t("not_found", lang))
        return c.render(request, "incident_live.html.j2" if partial else "incident.html.j2",
                        session=s, page="incidents", v=view, csrf=s.csrf)

    @router.post("/incidents/{incident_id}/{action}")
    async def act(request: Request, incident_id: str, action: str) -> Response:
        s = c.actor(request)
        if action not in ("acknowledge", "assign", "note", "resolve", "silence"):
            return JSONResponse({"ok": False, "error": f"unknown action {action}"}, 404)
        body = await request.json()
        body = body if isinstance(body, dict) else {}
        note = str(body.get("note") or "")[:2000] or None
        got = await asyncio.to_thread(rt.desk.get, incident_id[:64])
        if got is None:
            return JSONResponse({"ok": False, "error": "no such incident"}, 404)
        if action == "silence":
            return await asyncio.to_thread(_silence, rt, s, got["incident"], body)
        assignee = str(body.get("assignee") or "")[:128] or None
        if action == "assign" and not assignee:
            return JSONResponse({"ok": False, "error": "name an assignee"}, 422)
        if action == "note" and not note:
            return JSONResponse({"ok": False, "error": "write the note"}, 422)
        await asyncio.to_thread(rt.desk.act, incident_id, action, s.actor, assignee=assignee,
                                note=note)
        return JSONResponse({"ok": True})

    @router.get("/impact")
    async def impact(request: Request) -> Response:
        s = c.guard(request, "impact")
        if not isinstance(s, auth.Session):
            return s
        f = _filter(request)
        view = await asyncio.to_thread(data.impact_view, c.impact, f, c.lang(request))
        return c.render(request, "impact.html.j2", session=s, page="impact", v=view, f=f,
                        query=request.url.query)

    @router.get("/impact.csv")
    async def impact_csv(request: Request) -> Response:
        s = c.guard(request, "impact")
        if not isinstance(s, auth.Session):
            return s
        text = await asyncio.to_thread(data.impact_csv, c.impact, _filter(request))
        if text is None:
            return Response("no impact file configured\n", status_code=404)
        return Response(text, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="impact-borrowers.csv"'})

    @router.get("/risk")
    async def risk(request: Request) -> Response:
        s = c.guard(request, "risk")
        if not isinstance(s, auth.Session):
            return s
        view = await asyncio.to_thread(data.risk_view, rt, c.cfg.risk_dir, c.lang(request))
        return c.render(request, "risk.html.j2", session=s, page="risk", v=view)

    # -- live --------------------------------------------------------------------------

    @router.get("/stream")
    async def stream(request: Request, incident: str = "") -> Response:
        s = c.session(request)
        if s is None:
            return Response(status_code=401)

        def version() -> str:
            return (data.incident_version(rt, incident[:64]) if incident
                    else data.now_version(rt))

        async def events() -> AsyncIterator[bytes]:
            last = ""
            beat = time.monotonic()
            yield b"retry: 3000\n\n"
            while not rt.draining and not await request.is_disconnected():
                v = await asyncio.to_thread(version)
                if v != last:
                    last = v
                    yield f"event: change\ndata: {json.dumps({'version': v})}\n\n".encode()
                elif time.monotonic() - beat > 15:
                    beat = time.monotonic()
                    yield b": keep-alive\n\n"
                await asyncio.sleep(STREAM_EVERY_S)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    return router


def _filter(request: Request) -> data.ImpactFilter:
    q = request.query_params
    return data.ImpactFilter(incident=q.get("incident", "")[:64], region=q.get("region", "")[:16],
                             label=q.get("label", "")[:32], q=q.get("q", "")[:64],
                             stressed=q.get("stressed") == "1")


def _silence(rt: ServiceRuntime, s: auth.Session, doc: dict[str, Any],
             body: dict[str, Any]) -> Response:
    """Silence the incident's alert slice for a while (Alertmanager-style matchers)."""
    from datetime import UTC, datetime, timedelta

    try:
        minutes = int(body.get("minutes") or 60)
    except (TypeError, ValueError):
        minutes = 60
    minutes = max(5, min(minutes, 7 * 24 * 60))
    fired = doc.get("fired_slice") or {}
    if not fired and doc.get("scope"):
        fired = doc["scope"][0]
    labels = {str(k): str(v) for k, v in dict(fired).items()}
    if not labels:
        return JSONResponse({"ok": False, "error": "the incident has no slice to silence"},
                            422)
    now = datetime.now(UTC)
    comment = str(body.get("note") or f"silenced from the console for {doc.get('id')}")[:500]
    sil = rt.silences.silence_labels(labels, now, now + timedelta(minutes=minutes), s.actor,
                                     comment)
    rt.desk.act(str(doc["id"]), "note", s.actor,
                note=f"silence {sil.id} for {minutes} min: {comment}")
    return JSONResponse({"ok": True, "silence_id": sil.id})
