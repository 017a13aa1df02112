"""The console's events: search (paged on the primary key, newest first) and an event's journey.

Search takes an id (straight to its page), external id, source, type, status, time range and
correlation id, and pages with `before=<id>` through `hub.ops.admin.list_events`: no COUNT, no
OFFSET. The event page is `hub.ops.admin.show_event` (its deliveries, attempts and dead letters,
404 for another tenant's event) plus what the JSON API leaves out: the headers with secrets
masked, the decrypted payload (HUB_CONSOLE_SHOW_PAYLOADS), and which rules of today's applied
mappings match it and which do not, with the reason (`hub.mapping.simulate.describe`).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.console import templates
from hub.console.session import page
from hub.core import audit
from hub.core.crypto import Cipher, DecryptionError, person_hasher
from hub.core.errors import BadRequest
from hub.core.models import EventStatus, IntegrationEvent
from hub.ingress.persons import KINDS
from hub.ingress.principals import Principal
from hub.mapping.live import LiveMappings
from hub.mapping.simulate import describe
from hub.ops import admin
from hub.ops.erasure import events_of_person
from hub.ops.params import EventsQuery, parse
from hub.ops.replay import request_event

FILTERS = ("external_id", "source", "event_type", "status", "since", "until", "correlation_id")
PAGE = 50


@page()
async def index(request: Request, principal: Principal) -> Response:
    params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    if params.get("id"):
        return RedirectResponse(f"/console/events/{params['id']}", 303)
    params.setdefault("limit", str(PAGE))
    if request.method == "POST":  # a person's identifier: posted, so it stays out of URLs
        fields = request.state.form
        kind = (fields.get("person_kind") or ["cpf"])[0]
        value = (fields.get("person") or [""])[0].strip()
        if kind not in KINDS or not value:
            raise BadRequest("choose cpf, phone or email and type the identifier")
        state = request.app.state
        events = await run_in_threadpool(
            events_of_person,
            state.engine,
            person_hasher(state.settings),
            principal,
            kind,
            value,
            _cipher(request),
        )
        return templates.render(
            request,
            "events.html",
            events=events,
            next_before=None,
            filters={"person_kind": kind},
            statuses=[s.value for s in EventStatus],
            person_search=True,
        )
    known = {k: v for k, v in params.items() if k in EventsQuery.model_fields}
    query = parse(EventsQuery, known)  # BadRequest names a bad filter
    found = await run_in_threadpool(admin.list_events, request.app.state.engine, principal, query)
    return templates.render(
        request,
        "events.html",
        events=found["events"],
        next_before=found["next_before"],
        filters=params,
        statuses=[s.value for s in EventStatus],
    )


def _cipher(request: Request) -> Cipher:
    state = request.app.state
    found = getattr(state, "cipher", None)
    if not isinstance(found, Cipher):
        found = state.cipher = Cipher.from_settings(state.settings)
    return found


def journey(request: Request, principal: Principal, event_id: str) -> dict[str, Any]:
    """Everything the event page shows (blocking)."""
    state = request.app.state
    engine: Engine = state.engine
    shown = admin.show_event(engine, principal, event_id)  # NotFound outside the principal's scope
    with Session(engine) as session:
        event = session.get(IntegrationEvent, event_id)
        assert event is not None
        headers = dict(sorted((event.headers or {}).items()))
        blob = event.payload
    payload: Any = None
    payload_note = None
    if blob is None:
        payload_note = "the payload was purged"
    elif not state.settings.console_show_payloads:
        payload_note = "payloads are hidden on this console (HUB_CONSOLE_SHOW_PAYLOADS=false)"
    else:
        try:
            raw = _cipher(request).decrypt(blob)
            payload = orjson.loads(raw)
        except DecryptionError as exc:
            payload_note = str(exc)
        except orjson.JSONDecodeError:
            payload_note = "the payload is not JSON"
    rules = None
    if payload is not None:
        live = getattr(state, "mappings", None)
        if not isinstance(live, LiveMappings):
            live = state.mappings = LiveMappings()
        applied = live.get(engine, state.redis)
        evaluation = applied.ruleset.evaluate(
            shown["event"]["source"], shown["event"]["event_type"], payload, explain=True
        )
        rules = describe(evaluation) | {"version": applied.version}
    return shown | {
        "headers": headers,
        "payload": payload,
        "payload_note": payload_note,
        "rules": rules,
    }


@page()
async def show(request: Request, principal: Principal) -> Response:
    event_id = request.path_params["event_id"]
    found = await run_in_threadpool(journey, request, principal, event_id)
    return templates.render(request, "event.html", **found)


@page()
async def replay(request: Request, principal: Principal) -> Response:
    """Replay the event's open dead letters (or remap it) through `hub.ops.replay`."""
    state = request.app.state
    remap = request.state.form.get("remap", [""])[0] == "1"
    report = await run_in_threadpool(
        lambda: request_event(
            state.engine,
            state.redis,
            request.path_params["event_id"],
            tenant_id=principal.tenant_scope(),
            remap=remap,
            actor=audit.key_actor(principal.key_id),
        )
    )
    found = await run_in_threadpool(journey, request, principal, request.path_params["event_id"])
    return templates.render(request, "event.html", flash=report.summary(), **found)
