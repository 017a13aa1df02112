"""Signing in to the console: an admin or operator key exchanged for a signed session cookie.

The key is posted once (a form body: never a URL, a page or a log line) and looked up; the cookie
then carries only the key's id, a CSRF token and when it was issued, signed with a key derived
from HUB_SECRET_KEY. It is HttpOnly, SameSite=Strict, Secure when the console is served over
HTTPS, scoped to /console, and expires after HUB_CONSOLE_SESSION_TTL seconds. Every request
looks the key up again by id, so revoking it (or its tenant) signs its sessions out at once.

Every form carries the session's CSRF token; a POST without it (or from another origin) is a
403 and changes nothing. The sign-in form has one too, from an anonymous session.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.console import templates
from hub.core import audit
from hub.core.crypto import derived_key
from hub.core.db import session_factory
from hub.core.errors import BadRequest, Forbidden, HubError, PayloadTooLarge
from hub.core.models import KeyKind
from hub.ingress import apikeys
from hub.ingress.principals import Principal, lookup_id

COOKIE = "hub_console"
PATH = "/console"
FORM_LIMIT = 64 * 1024  # bytes of a console form


@dataclass(frozen=True)
class Visit:
    """What the cookie says: the signed-in key's id (None: not signed in) and the CSRF token."""

    key_id: int | None
    csrf: str
    issued: float


def _serializer(request: Request) -> URLSafeTimedSerializer:
    state = request.app.state
    found = getattr(state, "console_signer", None)
    if found is None:
        key = derived_key(state.settings, "hub console session")
        found = state.console_signer = URLSafeTimedSerializer(key, salt="hub.console")
    return found


def read(request: Request) -> Visit | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    ttl = request.app.state.settings.console_session_ttl
    try:
        data = _serializer(request).loads(raw, max_age=ttl)
    except BadSignature:  # forged, or expired (SignatureExpired is a BadSignature)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        return None
    key_id = data.get("k")
    return Visit(key_id if isinstance(key_id, int) else None, data["c"], float(data.get("t", 0)))


def write(request: Request, response: Response, visit: Visit) -> None:
    token = _serializer(request).dumps({"k": visit.key_id, "c": visit.csrf, "t": visit.issued})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(request.app.state.settings.console_session_ttl),
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def new_visit(key_id: int | None = None) -> Visit:
    return Visit(key_id, secrets.token_urlsafe(24), time.time())


async def form(request: Request) -> dict[str, list[str]]:
    """The posted urlencoded form (every value of each field)."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise PayloadTooLarge(f"a console form is at most {FORM_LIMIT} bytes")
    fields: dict[str, list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(name, []).append(value)
    return fields


def check_csrf(request: Request, visit: Visit | None, fields: dict[str, list[str]]) -> None:
    """Forbidden unless the form carries the session's token and comes from a console page."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("the console takes forms only from its own pages", code="csrf_failed")
    sent = (fields.get("csrf") or [""])[0]
    if visit is None or not sent or not hmac.compare_digest(sent, visit.csrf):
        raise Forbidden(
            "this form is missing its CSRF token or it expired: reload the page and try again",
            code="csrf_failed",
        )


def _safe_next(target: str | None) -> str:
    if target and target.startswith(PATH) and not target.startswith("//"):
        return target
    return PATH


Page = Callable[[Request, Principal], Awaitable[Response]]


def page(*, operator_only: bool = False) -> Callable[[Page], Callable[[Request], Awaitable[Any]]]:
    """A console page: signed in (else to the sign-in form), CSRF-checked on POST, errors as a
    page. The handler finds the posted form on `request.state.form`."""

    def wrap(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            visit = read(request)
            principal = None
            if visit is not None and visit.key_id is not None:
                engine = request.app.state.engine
                principal = await run_in_threadpool(lookup_id, engine, visit.key_id)
            try:
                if principal is None or visit is None:
                    if request.method == "GET":
                        here = request.url.path + (
                            f"?{request.url.query}" if request.url.query else ""
                        )
                        return RedirectResponse(f"{PATH}/sign-in?next={quote(here, safe='')}", 303)
                    raise Forbidden("sign in to the console first", code="signed_out")
                request.state.csrf = visit.csrf
                request.state.principal = principal
                if request.method == "POST":
                    request.state.form = await form(request)
                    check_csrf(request, visit, request.state.form)
                if operator_only and not principal.is_operator:
                    raise Forbidden("this needs an operator key")
                return await handler(request, principal)
            except HubError as exc:
                return templates.error(request, exc)

        return endpoint

    return wrap


async def sign_in_form(request: Request) -> Response:
    visit = read(request)
    if visit is None or visit.key_id is not None:
        visit = new_visit()
    request.state.csrf = visit.csrf
    response = templates.render(
        request, "sign_in.html", next=_safe_next(request.query_params.get("next"))
    )
    write(request, response, visit)
    return response


def _find_key(engine: Any, secret: str) -> tuple[int, KeyKind] | None:
    with session_factory(engine)() as session, session.begin():
        row = apikeys.find_valid(session, secret)
        if row is None:
            return None
        if row.kind is not KeyKind.INGEST:  # a sign-in: into the audit log
            audit.record(
                session, audit.key_actor(row.id), "console.sign_in", tenant_id=row.tenant_id
            )
        return (row.id, row.kind)


async def sign_in(request: Request) -> Response:
    visit = read(request)
    try:
        fields = await form(request)
        check_csrf(request, visit, fields)
        secret = (fields.get("key") or [""])[0].strip()
        if not secret:
            raise BadRequest("paste an admin or operator API key to sign in")
        found = await run_in_threadpool(_find_key, request.app.state.engine, secret)
        if found is None or found[1] is KeyKind.INGEST:
            assert visit is not None
            request.state.csrf = visit.csrf
            message = (
                "this key may only send webhooks: the console needs an admin or operator key"
                if found
                else "the key is unknown, revoked or expired"
            )
            return templates.render(
                request,
                "sign_in.html",
                status_code=401,
                problem=message,
                next=_safe_next((fields.get("next") or [""])[0]),
            )
    except HubError as exc:
        return templates.error(request, exc)
    signed = new_visit(found[0])
    response = RedirectResponse(_safe_next((fields.get("next") or [""])[0]), 303)
    write(request, response, signed)
    return response


@page()
async def sign_out(request: Request, principal: Principal) -> Response:
    response = RedirectResponse(f"{PATH}/sign-in", 303)
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
    return response
