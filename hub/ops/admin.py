"""The admin API: events, their deliveries and attempts, dead letters, and replay.

Every route needs a privileged key (see `hub.ingress.principals`): an operator key sees every
tenant, a tenant's admin key sees only that tenant's rows (another tenant's id is a 404, like an
unknown one). Payloads are never returned: events show their metadata, deliveries their status and
attempts. Replays only enqueue jobs; the answer says what will happen to each item.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.core import audit, dead_letters, ids
from hub.core.crypto import Cipher, DecryptionError
from hub.core.dead_letters import DeadLetterFilter
from hub.core.errors import BadRequest, NotFound
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    DeliveryAttempt,
    IntegrationEvent,
    Tenant,
    WebhookDelivery,
)
from hub.ingress.principals import Principal, requires_key
from hub.ingress.route import read_body
from hub.ops import params, replay
from hub.ops.params import (
    BulkReplayBody,
    DeadLetterFilters,
    DeadLettersQuery,
    EventsQuery,
    M,
    ReplayBody,
)

MAX_BODY = 64 * 1024  # bytes: admin bodies are a few filters


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def _time(value: str | None) -> datetime | None:
    return None if not value else replay.parse_time(value)


def _floor(when: datetime) -> str:
    return ids.floor_id(ids.EVENT, int(when.replace(tzinfo=UTC).timestamp() * 1000))


def _tenant_scope(session: Session, principal: Principal, slug: str | None) -> int | None:
    """The tenant filter: an admin key's own tenant, or the operator's `tenant` parameter."""
    if not principal.is_operator:
        return principal.tenant_id
    return replay.tenant_id_of(session, slug) if slug else None


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON object as `model` (an empty body is `{}`); 413 past MAX_BODY."""
    raw = await read_body(request, MAX_BODY, "the admin API's limit")
    if not raw.strip():
        return params.parse(model, {})
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    return params.parse(model, body)


# -- serialisation ---------------------------------------------------------------------------------


def header_names(event: IntegrationEvent, cipher: Cipher | None) -> list[str]:
    """The names of the stored headers (their values stay encrypted and are never shown)."""
    if event.headers:  # stored in clear before revision 0006
        return sorted(event.headers)
    if event.sealed_headers is None or cipher is None:
        return []
    try:
        return sorted(orjson.loads(cipher.decrypt(event.sealed_headers)))
    except (DecryptionError, orjson.JSONDecodeError):
        return []


def event_dict(
    event: IntegrationEvent, slug: str | None, cipher: Cipher | None = None
) -> dict[str, Any]:
    return {
        "id": event.id,
        "tenant": slug,
        "source": event.source,
        "external_id": event.external_id,
        "event_type": event.event_type,
        "status": event.status.value,
        "correlation_id": event.correlation_id,
        "error": event.error,
        "payload_stored": event.payload is not None,
        "header_names": header_names(event, cipher),
        "erased_at": _iso(event.erased_at),
        "created_at": _iso(event.created_at),
        "updated_at": _iso(event.updated_at),
        "processed_at": _iso(event.processed_at),
    }


def delivery_dict(delivery: WebhookDelivery, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "rule": delivery.mapping,
        "route": delivery.route,
        "endpoint": delivery.endpoint,
        "queue": delivery.queue,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "next_attempt_at": _iso(delivery.next_attempt_at),
        "last_error": delivery.last_error,
        "request_stored": delivery.request is not None,
        "created_at": _iso(delivery.created_at),
        "delivered_at": _iso(delivery.delivered_at),
        "attempt_log": [
            {
                "number": a.number,
                "started_at": _iso(a.started_at),
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "outcome": a.outcome,
                "error_class": a.error_class,
                "response_excerpt": a.response_excerpt,
            }
            for a in attempts
        ],
    }


def dead_letter_dict(letter: DeadLetter, slug: str | None = None) -> dict[str, Any]:
    return {
        "id": letter.id,
        "tenant": slug,
        "event_id": letter.event_id,
        "delivery_id": letter.delivery_id,
        "source": letter.source,
        "endpoint": letter.endpoint,
        "stage": letter.stage.value,
        "status": letter.status.value,
        "reason": letter.reason,
        "last_error": letter.last_error,
        "attempts": letter.attempts,
        "created_at": _iso(letter.created_at),
        "resolved_at": _iso(letter.resolved_at),
    }


def _slugs(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(ids)))
    return {tenant_id: slug for tenant_id, slug in rows}


# -- queries (blocking; the routes run them in a thread) -------------------------------------------


def list_events(
    engine: Engine, principal: Principal, q: EventsQuery, cipher: Cipher | None = None
) -> dict[str, Any]:
    limit = q.limit
    since, until = _time(q.since), _time(q.until)
    with Session(engine) as session:
        query = select(IntegrationEvent)
        tenant_id = _tenant_scope(session, principal, q.tenant)
        if tenant_id is not None:
            query = query.where(IntegrationEvent.tenant_id == tenant_id)
        if q.status is not None:
            query = query.where(IntegrationEvent.status == q.status)
        for value, column in (
            (q.source, IntegrationEvent.source),
            (q.event_type, IntegrationEvent.event_type),
            (q.external_id, IntegrationEvent.external_id),
            (q.correlation_id, IntegrationEvent.correlation_id),
        ):
            if value:
                query = query.where(column == value)
        if since is not None:  # ids sort by creation time: the primary key bounds the scan
            query = query.where(
                IntegrationEvent.created_at >= since, IntegrationEvent.id >= _floor(since)
            )
        if until is not None:
            query = query.where(IntegrationEvent.created_at < until)
        if q.before:  # keyset paging: ids are time-ordered
            query = query.where(IntegrationEvent.id < q.before)
        rows = list(session.scalars(query.order_by(IntegrationEvent.id.desc()).limit(limit + 1)))
        page, more = rows[:limit], len(rows) > limit
        slugs = _slugs(session, {e.tenant_id for e in page})
        return {
            "events": [event_dict(e, slugs.get(e.tenant_id), cipher) for e in page],
            "next_before": page[-1].id if more else None,
        }


def show_event(
    engine: Engine, principal: Principal, event_id: str, cipher: Cipher | None = None
) -> dict[str, Any]:
    with Session(engine) as session:
        event = session.get(IntegrationEvent, event_id)
        scope = principal.tenant_scope()
        if event is None or (scope is not None and event.tenant_id != scope):
            raise NotFound(f"event {event_id} not found", code="event_not_found")
        deliveries = list(
            session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.event_id == event.id)
                .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            )
        )
        attempts: dict[str, list[DeliveryAttempt]] = {d.id: [] for d in deliveries}
        if deliveries:
            for attempt in session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
                .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number)
            ):
                attempts[attempt.delivery_id].append(attempt)
        letters = session.scalars(
            select(DeadLetter).where(DeadLetter.event_id == event.id).order_by(DeadLetter.id)
        )
        slug = _slugs(session, {event.tenant_id}).get(event.tenant_id)
        return {
            "event": event_dict(event, slug, cipher),
            "deliveries": [delivery_dict(d, attempts[d.id]) for d in deliveries],
            "dead_letters": [dead_letter_dict(dl, slug) for dl in letters],
        }


def dead_letter_filter(
    session: Session,
    principal: Principal,
    filters: DeadLetterFilters,
    *,
    status: DeadLetterStatus | None = DeadLetterStatus.OPEN,
    stage: DeadLetterStage | None = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(
        status=status,
        stage=stage,
        source=filters.source,
        endpoint=filters.endpoint,
        tenant_id=_tenant_scope(session, principal, filters.tenant),
        since=_time(filters.since),
        until=_time(filters.until),
    )


def list_letters(engine: Engine, principal: Principal, q: DeadLettersQuery) -> dict[str, Any]:
    limit, offset = q.limit, q.offset
    status = None if q.status == "all" else DeadLetterStatus(q.status)
    with Session(engine) as session:
        where = dead_letter_filter(session, principal, q, status=status, stage=q.stage)
        letters = dead_letters.list_dead_letters(session, where, limit=limit, offset=offset)
        slugs = _slugs(session, {dl.tenant_id for dl in letters})
        return {
            "dead_letters": [dead_letter_dict(dl, slugs.get(dl.tenant_id)) for dl in letters],
            "total": dead_letters.count(session, where),
        }


# -- routes ----------------------------------------------------------------------------------------


@requires_key()
async def events_index(request: Request, principal: Principal) -> Response:
    query = params.parse(EventsQuery, dict(request.query_params))
    state = request.app.state
    body = await run_in_threadpool(list_events, state.engine, principal, query, state.cipher)
    return JSONResponse(body)


@requires_key()
async def event_show(request: Request, principal: Principal) -> Response:
    event_id = request.path_params["event_id"]
    state = request.app.state
    body = await run_in_threadpool(show_event, state.engine, principal, event_id, state.cipher)
    return JSONResponse(body)


async def _replay_one(request: Request, principal: Principal, ask: Any, param: str) -> Response:
    """POST …/{id}/replay: `ask` is replay.request_event or replay.request_dead_letter."""
    body = await json_body(request, ReplayBody)
    state = request.app.state
    report = await run_in_threadpool(
        lambda: ask(
            state.engine,
            state.redis,
            request.path_params[param],
            tenant_id=principal.tenant_scope(),
            remap=body.remap,
            dry_run=body.dry_run,
            actor=audit.key_actor(principal.key_id),
        )
    )
    return JSONResponse(report.as_dict(), status_code=200 if report.dry_run else 202)


@requires_key()
async def event_replay(request: Request, principal: Principal) -> Response:
    return await _replay_one(request, principal, replay.request_event, "event_id")


@requires_key()
async def dead_letters_index(request: Request, principal: Principal) -> Response:
    query = params.parse(DeadLettersQuery, dict(request.query_params))
    body = await run_in_threadpool(list_letters, request.app.state.engine, principal, query)
    return JSONResponse(body)


def _show_letter(engine: Engine, principal: Principal, letter_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        letter = dead_letters.get(session, letter_id, tenant_id=principal.tenant_scope())
        slug = _slugs(session, {letter.tenant_id}).get(letter.tenant_id)
        return dead_letter_dict(letter, slug)


@requires_key()
async def dead_letter_show(request: Request, principal: Principal) -> Response:
    letter_id = request.path_params["dead_letter_id"]
    body = await run_in_threadpool(_show_letter, request.app.state.engine, principal, letter_id)
    return JSONResponse(body)


def _discard(engine: Engine, principal: Principal, letter_id: str) -> dict[str, Any]:
    with Session(engine) as session, session.begin():
        letter = dead_letters.discard(
            session,
            letter_id,
            tenant_id=principal.tenant_scope(),
            actor=audit.key_actor(principal.key_id),
        )
        return dead_letter_dict(letter)


@requires_key()
async def dead_letter_discard(request: Request, principal: Principal) -> Response:
    letter_id = request.path_params["dead_letter_id"]
    body = await run_in_threadpool(_discard, request.app.state.engine, principal, letter_id)
    return JSONResponse(body)


@requires_key()
async def dead_letter_replay(request: Request, principal: Principal) -> Response:
    return await _replay_one(request, principal, replay.request_dead_letter, "dead_letter_id")


def _bulk(engine: Engine, redis: Any, principal: Principal, body: BulkReplayBody) -> Any:
    limit = body.limit
    with Session(engine) as session:
        where = dead_letter_filter(session, principal, body)
    return replay.request_bulk(
        engine,
        redis,
        where,
        limit=limit,
        remap=body.remap,
        dry_run=body.dry_run,
        actor=audit.key_actor(principal.key_id),
    )


@requires_key()
async def dead_letters_replay(request: Request, principal: Principal) -> Response:
    body = await json_body(request, BulkReplayBody)
    state = request.app.state
    report = await run_in_threadpool(_bulk, state.engine, state.redis, principal, body)
    out = report.as_dict()
    if not report.items:
        out["summary"] = "no open dead letter matches these filters"
    return JSONResponse(out, status_code=200 if report.dry_run or not report.items else 202)


ROUTES: list[BaseRoute] = [
    Route("/admin/events", events_index, methods=["GET"]),
    Route("/admin/events/{event_id}", event_show, methods=["GET"]),
    Route("/admin/events/{event_id}/replay", event_replay, methods=["POST"]),
    Route("/admin/dead-letters", dead_letters_index, methods=["GET"]),
    Route("/admin/dead-letters/replay", dead_letters_replay, methods=["POST"]),
    Route("/admin/dead-letters/{dead_letter_id}", dead_letter_show, methods=["GET"]),
    Route("/admin/dead-letters/{dead_letter_id}/replay", dead_letter_replay, methods=["POST"]),
    Route("/admin/dead-letters/{dead_letter_id}/discard", dead_letter_discard, methods=["POST"]),
]
