"""The console's endpoints: per endpoint its recent attempts, circuit, pause, and the buttons.

Operators may close a circuit (the breaker's keys cleared: the next delivery goes straight
through) and pause or resume an endpoint (`hub.delivery.pauses`: paused deliveries wait untried;
resume releases them at the endpoint's rate limit). A tenant's admin sees its own attempts only
and no buttons: endpoints are shared by every tenant.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.console import templates
from hub.console.session import page
from hub.core.errors import NotFound
from hub.core.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from hub.delivery import pauses
from hub.delivery.breaker import CircuitBreaker
from hub.delivery.endpoints import EndpointConfig
from hub.ingress.principals import Principal
from hub.ops import status

RECENT = 10  # attempts shown per endpoint


def configs(engine: Engine) -> dict[str, dict[str, Any]]:
    """Each applied endpoint's definition (its highest active version)."""
    with Session(engine) as session:
        rows = session.execute(
            select(WebhookEndpoint.name, WebhookEndpoint.kind, WebhookEndpoint.definition)
            .where(WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.name, WebhookEndpoint.version)
        ).all()
    return {name: {"kind": kind.value, **definition} for name, kind, definition in rows}


def recent_attempts(engine: Engine, endpoint: str, tenant_id: int | None) -> list[dict[str, Any]]:
    query = (
        select(DeliveryAttempt, WebhookDelivery.event_id)
        .join(WebhookDelivery, WebhookDelivery.id == DeliveryAttempt.delivery_id)
        .where(WebhookDelivery.endpoint == endpoint)
    )
    if tenant_id is not None:
        query = query.where(WebhookDelivery.tenant_id == tenant_id)
    with Session(engine) as session:
        rows = session.execute(query.order_by(DeliveryAttempt.id.desc()).limit(RECENT)).all()
        return [
            {
                "delivery_id": a.delivery_id,
                "event_id": event_id,
                "number": a.number,
                "started_at": a.started_at,
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "error_class": a.error_class,
                "excerpt": a.response_excerpt,
            }
            for a, event_id in rows
        ]


def listing(request: Request, principal: Principal) -> list[dict[str, Any]]:
    state = request.app.state
    defined = configs(state.engine)
    paused = pauses.paused(state.engine)
    waiting = pauses.waiting(state.engine, list(defined))
    circuits = status.circuit_states(state.redis, list(defined))
    return [
        {
            "name": name,
            "kind": config["kind"],
            "url": config.get("url"),
            "rate_limit": config.get("rate_limit"),
            "circuit": circuits.get(name, "closed"),
            "pause": paused.get(name),
            "waiting": waiting.get(name, 0),
            "attempts": recent_attempts(state.engine, name, principal.tenant_scope()),
        }
        for name, config in sorted(defined.items())
    ]


@page()
async def index(request: Request, principal: Principal) -> Response:
    found = await run_in_threadpool(listing, request, principal)
    flash = request.query_params.get("done")
    return templates.render(request, "endpoints.html", endpoints=found, flash=flash)


def _config(engine: Engine, name: str) -> EndpointConfig:
    definition = configs(engine).get(name)
    if definition is None:
        raise NotFound(f"no endpoint {name!r} is applied", code="endpoint_not_found")
    return EndpointConfig.model_validate(definition)


def _act(request: Request, principal: Principal, name: str, action: str) -> str:
    state = request.app.state
    config = _config(state.engine, name)
    if action == "close-circuit":
        CircuitBreaker(state.redis, name).record_success()
        return f"circuit of {name} closed"
    if action == "pause":
        by = f"key {principal.key_id}"
        changed = pauses.pause(state.engine, name, by=by)
        return f"{name} paused" if changed else f"{name} was paused already"
    released = pauses.resume(state.engine, name, rate_limit=config.rate_limit)
    return f"{name} resumed: {released} waiting deliveries released" + (
        f" at {config.rate_limit}" if config.rate_limit else ""
    )


def _action(action: str) -> Any:
    @page(operator_only=True)
    async def endpoint(request: Request, principal: Principal) -> Response:
        name = request.path_params["name"]
        done = await run_in_threadpool(_act, request, principal, name, action)
        return RedirectResponse(f"/console/endpoints?done={quote(done)}#{quote(name)}", 303)

    return endpoint


close_circuit = _action("close-circuit")
pause = _action("pause")
resume = _action("resume")
