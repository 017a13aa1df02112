"""`/admin/tenants`: the operator's tenant verbs over HTTP, on hub.ops.tenants' functions.

    GET    /admin/tenants                      every tenant with its counts
    POST   /admin/tenants                      {"slug", "name"?, "timezone"?, "locale"?}  201
    GET    /admin/tenants/{slug}               settings, counts, keys, limits, unset env
    PATCH  /admin/tenants/{slug}               {"name"?, "timezone"?, "locale"?, "active"?}
    GET    /admin/tenants/{slug}/limits        its rate-limit overrides
    PUT    /admin/tenants/{slug}/limits        {"source"? ("*": every source), "limit"}
    DELETE /admin/tenants/{slug}/limits?source=S

Operator keys only: a tenant's admin key cannot see or change tenants. Erasing a tenant is the
CLI's (`hub tenants delete --erase`): it is long, resumable, and asks for a typed confirmation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.ingress.principals import Principal, requires_key
from hub.ops import params, tenants
from hub.ops.admin import json_body
from hub.ops.params import LimitSet, LimitUnset, TenantCreate, TenantUpdate


def _in_session(engine: Engine, work: Any) -> Any:
    with Session(engine) as session, session.begin():
        return work(session)


async def _run(request: Request, work: Any) -> Any:
    return await run_in_threadpool(_in_session, request.app.state.engine, work)


@requires_key(operator_only=True)
async def tenants_index(request: Request, principal: Principal) -> Response:
    return JSONResponse({"tenants": await _run(request, tenants.list_tenants)})


@requires_key(operator_only=True)
async def tenant_create(request: Request, principal: Principal) -> Response:
    body = await json_body(request, TenantCreate)
    slug, name, timezone, locale = body.slug, body.name, body.timezone, body.locale
    out = await _run(
        request,
        lambda s: tenants.settings_dict(
            tenants.create(s, slug, name=name, timezone=timezone, locale=locale)
        ),
    )
    return JSONResponse(out, status_code=201)


@requires_key(operator_only=True)
async def tenant_show(request: Request, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    return JSONResponse(await _run(request, lambda s: tenants.show(s, slug)))


@requires_key(operator_only=True)
async def tenant_update(request: Request, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    body = await json_body(request, TenantUpdate)
    name, timezone, locale, active = body.name, body.timezone, body.locale, body.active

    def work(session: Session) -> dict[str, Any]:
        tenant = tenants.update(session, slug, name=name, timezone=timezone, locale=locale)
        if active is not None:
            tenant, _ = tenants.set_active(session, slug, active)
        return tenants.settings_dict(tenant)

    return JSONResponse(await _run(request, work))


@requires_key(operator_only=True)
async def limits_index(request: Request, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    return JSONResponse({"limits": await _run(request, lambda s: tenants.list_limits(s, slug))})


@requires_key(operator_only=True)
async def limits_set(request: Request, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    body = await json_body(request, LimitSet)
    source, limit = body.source, body.limit
    return JSONResponse(await _run(request, lambda s: tenants.set_limit(s, slug, source, limit)))


@requires_key(operator_only=True)
async def limits_unset(request: Request, principal: Principal) -> Response:
    slug = request.path_params["slug"]
    source = params.parse(LimitUnset, dict(request.query_params)).source
    removed = await _run(request, lambda s: tenants.unset_limit(s, slug, source))
    return JSONResponse({"source": source or tenants.ALL_SOURCES, "removed": removed})


ROUTES: list[BaseRoute] = [
    Route("/admin/tenants", tenants_index, methods=["GET"]),
    Route("/admin/tenants", tenant_create, methods=["POST"]),
    Route("/admin/tenants/{slug}", tenant_show, methods=["GET"]),
    Route("/admin/tenants/{slug}", tenant_update, methods=["PATCH"]),
    Route("/admin/tenants/{slug}/limits", limits_index, methods=["GET"]),
    Route("/admin/tenants/{slug}/limits", limits_set, methods=["PUT"]),
    Route("/admin/tenants/{slug}/limits", limits_unset, methods=["DELETE"]),
]
