"""`POST /admin/simulate`: what an event would send, with nothing stored and nothing sent.

Body `{"source", "event_type", "payload"}`, with an admin or operator key (`X-API-Key` or
`Authorization: Bearer`). The answer lists the rules that matched and, per route, the request it
would send; the rules and routes that did not match, each with the reason; and the transform
errors that would fail the event. It uses the applied mappings (the version workers run).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from hub.core.db import session_factory
from hub.core.errors import BadRequest, Forbidden, Unauthorized
from hub.core.models import EventStatus, KeyKind, Tenant
from hub.core.tenants import TenantSettings
from hub.ingress import apikeys
from hub.ingress.principals import presented_key
from hub.ingress.route import read_body
from hub.mapping.engine import Evaluation
from hub.mapping.live import LiveMappings

ALLOWED = (KeyKind.ADMIN, KeyKind.OPERATOR)
MAX_BODY = 1024 * 1024  # bytes: an example payload, as large as a source would take


def _authorize(request: Request) -> TenantSettings | None:
    """The key's tenant's settings (an admin key), or None (an operator key: the defaults)."""
    secret = presented_key(request.headers)
    if secret is None:
        raise Unauthorized("an admin or operator API key is required (X-API-Key)")
    with session_factory(request.app.state.engine)() as session:
        key = apikeys.find_valid(session, secret)
        if key is None:
            raise Unauthorized("the API key is unknown, revoked or expired")
        if key.kind not in ALLOWED:
            raise Forbidden("simulate needs an admin or operator key")
        tenant = session.get(Tenant, key.tenant_id) if key.tenant_id is not None else None
        return TenantSettings.of(tenant) if tenant is not None else None


def _parse(body: bytes) -> tuple[str, str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BadRequest('the body is an object: {"source", "event_type", "payload"}')
    unknown = sorted(set(data) - {"source", "event_type", "payload"})
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    source, event_type = data.get("source"), data.get("event_type")
    if not isinstance(source, str) or not source:
        raise BadRequest("'source' is required: the name of a source in sources.yaml")
    if not isinstance(event_type, str) or not event_type:
        raise BadRequest("'event_type' is required, e.g. lead.created")
    if "payload" not in data:
        raise BadRequest("'payload' is required: the JSON body the source would send")
    return source, event_type, data["payload"]


def describe(evaluation: Evaluation) -> dict[str, Any]:
    """The JSON answer for an evaluation made with explain=True."""
    matched: dict[str, list[dict[str, Any]]] = {name: [] for name in evaluation.matched}
    for planned in evaluation.planned:
        matched[planned.rule].append(
            {
                "route": planned.route,
                "endpoint": planned.endpoint,
                "queue": planned.queue,
                "delay_seconds": planned.delay,
                "request": planned.request,
            }
        )
    if evaluation.errors:
        status = EventStatus.FAILED
    elif evaluation.planned:
        status = EventStatus.PROCESSED
    else:
        status = EventStatus.NO_ROUTE
    return {
        "status": status.value,
        "matched": [{"rule": name, "deliveries": routes} for name, routes in matched.items()],
        "not_matched": [
            {"rule": s.rule, "route": s.route, "reason": s.reason} for s in evaluation.skipped
        ],
        "errors": evaluation.errors,
    }


def _run(request: Request, body: bytes, tenant: TenantSettings | None) -> dict[str, Any]:
    source, event_type, payload = _parse(body)
    state = request.app.state
    live = getattr(state, "mappings", None)
    if not isinstance(live, LiveMappings):
        live = state.mappings = LiveMappings()
    applied = live.get(state.engine, getattr(state, "redis", None))
    evaluation = applied.ruleset.evaluate(source, event_type, payload, explain=True, tenant=tenant)
    return {
        "version": applied.version,
        "source": source,
        "event_type": event_type,
        **describe(evaluation),
    }


async def simulate(request: Request) -> JSONResponse:
    tenant = await run_in_threadpool(_authorize, request)  # no body is read without a key
    body = await read_body(request, MAX_BODY, "simulate's limit")
    return JSONResponse(await run_in_threadpool(_run, request, body, tenant))


ROUTES: list[BaseRoute] = [Route("/admin/simulate", simulate, methods=["POST"])]
