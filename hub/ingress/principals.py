"""Who is calling: the one API-key extractor every route uses (`presented_key`), and the
privileged principals of the operations surface (`/admin/*`, `/status`, `/rq`).

A request presents its key as `X-API-Key`, `Authorization: Bearer <key>`, or as the password of
HTTP Basic (browsers, for the dashboard; the user name is ignored). Two kinds are privileged:

    operator   every tenant; the only kind admitted to /status and /rq
    admin      its own tenant's data under /admin/*

A missing, malformed, unknown, revoked or expired key is a 401 that says nothing more; a valid
key of a kind that may not use the route is a 403. Keys are looked up through `lookup` alone, so
the lookup can become a cached one without touching the routes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from hub.core.errors import Forbidden, Unauthorized
from hub.core.models import ApiKey, KeyKind, Tenant, utcnow
from hub.ingress import apikeys

UNAUTHORIZED_MESSAGE = "a valid operator or admin API key is required"


@dataclass(frozen=True)
class Principal:
    """Who is asking: an operator (tenant_id None, sees every tenant) or a tenant's admin."""

    key_id: int
    kind: KeyKind
    tenant_id: int | None
    tenant_slug: str | None

    @property
    def is_operator(self) -> bool:
        return self.kind is KeyKind.OPERATOR

    def tenant_scope(self) -> int | None:
        """The tenant whose data this principal may see; None: every tenant."""
        return None if self.is_operator else self.tenant_id


def presented_key(
    headers: Headers, *, query: Mapping[str, str] | None = None, basic: bool = False
) -> str | None:
    """The key a request carries: `X-API-Key`, `Authorization: Bearer`, then, where the route
    takes them, the HTTP Basic password (`basic`, for browsers) or `?api_key=` (`query`, for
    providers that only take a URL). The one place any route reads a key from a request."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if query is not None:
        return query.get("api_key") or None
    if basic and scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def lookup(engine: Engine, secret: str) -> Principal | None:
    """The privileged principal behind `secret`, or None (also for ingest-only keys' absence)."""
    with Session(engine) as session:
        row = apikeys.find_valid(session, secret)
        if row is None:
            return None
        slug = None
        if row.tenant_id is not None:
            tenant = session.scalar(select(Tenant).where(Tenant.id == row.tenant_id))
            if tenant is None or not tenant.active:
                return None
            slug = tenant.slug
        return Principal(key_id=row.id, kind=row.kind, tenant_id=row.tenant_id, tenant_slug=slug)


def lookup_id(engine: Engine, key_id: int) -> Principal | None:
    """The privileged principal of key `key_id` while it stays valid (for a signed-in session)."""
    with Session(engine) as session:
        row = session.get(ApiKey, key_id)
        now = utcnow()
        if row is None or row.revoked_at is not None or row.kind is KeyKind.INGEST:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        slug = None
        if row.tenant_id is not None:
            tenant = session.get(Tenant, row.tenant_id)
            if tenant is None or not tenant.active:
                return None
            slug = tenant.slug
        return Principal(key_id=row.id, kind=row.kind, tenant_id=row.tenant_id, tenant_slug=slug)


async def authenticate(request: Request, *, operator_only: bool = False) -> Principal:
    """The request's privileged principal; Unauthorized (401) or Forbidden (403) otherwise."""
    secret = presented_key(request.headers, basic=True)
    if not secret:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    principal = await run_in_threadpool(lookup, request.app.state.engine, secret)
    if principal is None:
        raise Unauthorized(UNAUTHORIZED_MESSAGE)
    if principal.kind is KeyKind.OPERATOR:
        return principal
    if operator_only:
        raise Forbidden("this route needs an operator key (hub keys create --operator)")
    if principal.kind is not KeyKind.ADMIN:
        raise Forbidden("this key may only send webhooks; the admin API needs an --admin key")
    return principal


Endpoint = Callable[[Request, Principal], Awaitable[Response]]


def requires_key(*, operator_only: bool = False) -> Callable[[Endpoint], Any]:
    """Decorate `endpoint(request, principal)` into a Starlette endpoint behind a privileged key."""

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            principal = await authenticate(request, operator_only=operator_only)
            return await endpoint(request, principal)

        return guarded

    return wrap
