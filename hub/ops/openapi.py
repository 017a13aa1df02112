"""`GET /openapi.json`: the HTTP API described in OpenAPI 3.1, built from pydantic models.

The inputs are the models the routes validate with (`hub.ops.params`); the answers are the
models below, one per JSON shape a route returns. `OPERATIONS` lists every route with its
models and status codes; the spec is assembled from it at start. The test suite runs
schemathesis against a live server with this description: a route that answers a status, a
content type or a body the description does not allow fails the suite, so the two cannot drift
apart unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.core.models import DeadLetterStage, DeadLetterStatus, DeliveryStatus, EventStatus
from hub.ops.params import (
    AuditQuery,
    BulkReplayBody,
    DeadLettersQuery,
    ErasureRequest,
    EventsQuery,
    LimitSet,
    LimitUnset,
    Params,
    ReplayBody,
    TenantCreate,
    TenantUpdate,
)

# -- answers ---------------------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Answer):
    code: str = Field(description="machine-readable, e.g. invalid_signature")
    message: str
    request_id: str


class ErrorBody(Answer):
    """Every error: HTTP 4xx and 5xx."""

    error: ErrorDetail


class WebhookAnswer(Answer):
    """202: stored now; 200: the same external id was stored before (its first event id)."""

    event_id: str
    status: Literal["accepted", "duplicate"]


class Check(Answer):
    status: Literal["ok", "down"]
    latency_ms: float | None = None
    error: str | None = None


class Health(Answer):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Check]


class Event(Answer):
    id: str
    tenant: str | None
    source: str
    external_id: str
    event_type: str
    status: EventStatus
    correlation_id: str | None
    error: str | None
    payload_stored: bool
    header_names: list[str]
    erased_at: str | None = Field(description="when the person's data was erased (LGPD)")
    created_at: str | None
    updated_at: str | None
    processed_at: str | None


class Attempt(Answer):
    number: int
    started_at: str | None
    duration_ms: int | None
    status_code: int | None
    outcome: str
    error_class: str | None
    response_excerpt: str | None


class Delivery(Answer):
    id: str
    rule: str
    route: str
    endpoint: str
    queue: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    request_stored: bool
    created_at: str | None
    delivered_at: str | None
    attempt_log: list[Attempt]


class DeadLetter(Answer):
    id: str
    tenant: str | None
    event_id: str | None
    delivery_id: str | None
    source: str | None
    endpoint: str | None
    stage: DeadLetterStage
    status: DeadLetterStatus
    reason: str
    last_error: str | None
    attempts: int
    created_at: str | None
    resolved_at: str | None


class EventPage(Answer):
    events: list[Event]
    next_before: str | None = Field(description="pass as `before` for the next page")


class EventDetail(Answer):
    event: Event
    deliveries: list[Delivery]
    dead_letters: list[DeadLetter]


class DeadLetterPage(Answer):
    dead_letters: list[DeadLetter]
    total: int


class ReplayItem(Answer):
    kind: Literal["dead_letter", "event"]
    id: str
    action: Literal["replay", "remap", "skip"]
    reason: str | None = None
    event_id: str | None = None
    delivery_id: str | None = None


class ReplayReport(Answer):
    dry_run: bool
    replay: int
    remap: int
    skipped: int
    queue: str | None
    jobs: list[str]
    items: list[ReplayItem]
    summary: str


class HandshakeQuery(BaseModel):
    """Meta's parameters (their names have dots); the key may come as ?api_key= where the
    source sets allow_query_key."""

    model_config = ConfigDict(populate_by_name=True)
    mode: Literal["subscribe"] = Field(alias="hub.mode")
    verify_token: str = Field(alias="hub.verify_token")
    challenge: str = Field(alias="hub.challenge")
    api_key: str | None = None


class SimulateRequest(Params):
    """POST /admin/simulate"""

    source: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    payload: Any


class PlannedDelivery(Answer):
    route: str
    endpoint: str
    queue: str
    delay_seconds: float | None
    request: dict[str, Any]


class MatchedRule(Answer):
    rule: str
    deliveries: list[PlannedDelivery]


class NotMatched(Answer):
    rule: str
    route: str | None
    reason: str


class Simulation(Answer):
    version: int | None
    source: str
    event_type: str
    status: EventStatus
    matched: list[MatchedRule]
    not_matched: list[NotMatched]
    errors: list[str]


class TenantSettings(Answer):
    slug: str
    name: str | None
    active: bool
    timezone: str
    locale: str
    env_prefix: str
    created_at: str | None


class TenantRow(TenantSettings):
    keys: int
    events_24h: int
    open_dead_letters: int


class TenantList(Answer):
    tenants: list[TenantRow]


class KeyRow(Answer):
    id: int
    name: str
    kind: str
    prefix: str
    sources: list[str] | None
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None


class Limit(Answer):
    source: str = Field(description='a source, or "*" for every source')
    limit: str


class LimitList(Answer):
    limits: list[Limit]


class LimitRemoved(Answer):
    source: str
    removed: bool


class TenantDetail(TenantRow):
    key_list: list[KeyRow]
    limits: list[Limit]
    unset_env: Any


class AuditPage(Answer):
    entries: list[dict[str, Any]] = Field(description="actor, tenant, time, action, detail")
    limit: int
    max_limit: int


class ErasureReceipt(BaseModel):
    """What an erasure found and removed (row counts by table; never the identifiers)."""

    model_config = ConfigDict(extra="allow")
    dry_run: bool


class Status(BaseModel):
    """The operator's snapshot (see the README's Operations): queues, workers, events and
    deliveries by status, retry backlog, dead letters, circuits, alerts."""

    model_config = ConfigDict(extra="allow")


# -- operations ------------------------------------------------------------------------------------

KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
ADMIN_ERRORS = {400: "bad parameter", 401: "no or bad key", 403: "key not allowed here"}
UNAVAILABLE = {503: "the database or Redis is unavailable"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    answers: dict[int, tuple[str, type[BaseModel] | str]]  # status -> (description, model)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | Literal["any"] | None = None
    path_params: tuple[str, ...] = ()
    security: list[dict[str, list[str]]] = field(default_factory=lambda: KEY)


def _errors(codes: dict[int, str]) -> dict[int, tuple[str, type[BaseModel] | str]]:
    return {code: (text, ErrorBody) for code, text in codes.items()}


OPERATIONS: list[Operation] = [
    Operation(
        "post",
        "/webhooks/{source}",
        "Send a webhook: stored exactly once, then mapped and delivered",
        "ingress",
        {
            202: ("stored (committed to the database)", WebhookAnswer),
            200: ("a duplicate: the first event's id", WebhookAnswer),
            **_errors(
                {
                    400: "not JSON, or the event id or type is missing",
                    401: "no or bad key, bad signature or stale timestamp",
                    403: "key or address not allowed for this source",
                    404: "no such source",
                    413: "body too large",
                    415: "not application/json",
                    429: "rate limited (Retry-After)",
                    **UNAVAILABLE,
                }
            ),
        },
        body="any",
        path_params=("source",),
    ),
    Operation(
        "get",
        "/webhooks/{source}",
        "Meta's subscription handshake: echoes hub.challenge when hub.verify_token matches",
        "ingress",
        {
            200: ("the challenge, echoed", "text/plain"),
            **_errors(
                {
                    401: "no or bad key",
                    403: "verify token refused, or no verify token for this source",
                    404: "no such source",
                    **UNAVAILABLE,
                }
            ),
        },
        query=HandshakeQuery,
        path_params=("source",),
    ),
    Operation(
        "get",
        "/health",
        "Liveness and readiness of the database and Redis",
        "operations",
        {200: ("ready", Health), 503: ("not ready", Health)},
        security=[],
    ),
    Operation(
        "get",
        "/status",
        "The operator's snapshot (operator key)",
        "operations",
        {200: ("the snapshot", Status), **_errors({**ADMIN_ERRORS, **UNAVAILABLE})},
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics (Bearer scrape token when HUB_METRICS_TOKEN is set)",
        "operations",
        {200: ("Prometheus text format", "text/plain"), **_errors({401: "scrape token"})},
        security=[{}, {"bearer": []}],
    ),
    Operation(
        "get",
        "/admin/events",
        "Events, newest first, with filters; keyset paging with `before`",
        "admin",
        {200: ("a page of events", EventPage), **_errors({**ADMIN_ERRORS, **UNAVAILABLE})},
        query=EventsQuery,
    ),
    Operation(
        "get",
        "/admin/events/{event_id}",
        "One event with its deliveries, attempts and dead letters (never the payload)",
        "admin",
        {
            200: ("the event", EventDetail),
            **_errors({**ADMIN_ERRORS, 404: "no such event (or another tenant's)", **UNAVAILABLE}),
        },
        path_params=("event_id",),
    ),
    Operation(
        "post",
        "/admin/events/{event_id}/replay",
        "Run an event through today's mappings again",
        "admin",
        {
            200: ("dry run: what would happen", ReplayReport),
            202: ("enqueued", ReplayReport),
            **_errors({**ADMIN_ERRORS, 404: "no such event", 413: "body too large", **UNAVAILABLE}),
        },
        body=ReplayBody,
        path_params=("event_id",),
    ),
    Operation(
        "get",
        "/admin/dead-letters",
        "Dead letters with filters",
        "admin",
        {200: ("a page", DeadLetterPage), **_errors({**ADMIN_ERRORS, **UNAVAILABLE})},
        query=DeadLettersQuery,
    ),
    Operation(
        "post",
        "/admin/dead-letters/replay",
        "Replay every open dead letter that matches the filters",
        "admin",
        {
            200: ("dry run, or nothing matched", ReplayReport),
            202: ("enqueued", ReplayReport),
            **_errors({**ADMIN_ERRORS, 413: "body too large", **UNAVAILABLE}),
        },
        body=BulkReplayBody,
    ),
    Operation(
        "get",
        "/admin/dead-letters/{dead_letter_id}",
        "One dead letter",
        "admin",
        {
            200: ("the dead letter", DeadLetter),
            **_errors({**ADMIN_ERRORS, 404: "no such dead letter", **UNAVAILABLE}),
        },
        path_params=("dead_letter_id",),
    ),
    Operation(
        "post",
        "/admin/dead-letters/{dead_letter_id}/replay",
        "One more attempt of a dead delivery (same webhook-id)",
        "admin",
        {
            200: ("dry run", ReplayReport),
            202: ("enqueued", ReplayReport),
            **_errors(
                {
                    **ADMIN_ERRORS,
                    404: "no such dead letter",
                    409: "already replayed or discarded",
                    413: "body too large",
                    **UNAVAILABLE,
                }
            ),
        },
        body=ReplayBody,
        path_params=("dead_letter_id",),
    ),
    Operation(
        "post",
        "/admin/dead-letters/{dead_letter_id}/discard",
        "Close a dead letter without replaying it",
        "admin",
        {
            200: ("discarded", DeadLetter),
            **_errors(
                {
                    **ADMIN_ERRORS,
                    404: "no such dead letter",
                    409: "already replayed or discarded",
                    **UNAVAILABLE,
                }
            ),
        },
        path_params=("dead_letter_id",),
    ),
    Operation(
        "get",
        "/admin/tenants",
        "Every tenant with its counts (operator key)",
        "tenants",
        {200: ("the tenants", TenantList), **_errors({**ADMIN_ERRORS, **UNAVAILABLE})},
    ),
    Operation(
        "post",
        "/admin/tenants",
        "Create a tenant (operator key)",
        "tenants",
        {
            201: ("created", TenantSettings),
            **_errors({**ADMIN_ERRORS, 409: "the slug exists", 413: "too large", **UNAVAILABLE}),
        },
        body=TenantCreate,
    ),
    Operation(
        "get",
        "/admin/tenants/{slug}",
        "One tenant: settings, counts, keys, limits, unset env references (operator key)",
        "tenants",
        {
            200: ("the tenant", TenantDetail),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", **UNAVAILABLE}),
        },
        path_params=("slug",),
    ),
    Operation(
        "patch",
        "/admin/tenants/{slug}",
        "Change a tenant's name, time zone, locale, or (de)activate it (operator key)",
        "tenants",
        {
            200: ("the tenant", TenantSettings),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", 413: "too large", **UNAVAILABLE}),
        },
        body=TenantUpdate,
        path_params=("slug",),
    ),
    Operation(
        "get",
        "/admin/tenants/{slug}/limits",
        "A tenant's rate-limit overrides (operator key)",
        "tenants",
        {
            200: ("the overrides", LimitList),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", **UNAVAILABLE}),
        },
        path_params=("slug",),
    ),
    Operation(
        "put",
        "/admin/tenants/{slug}/limits",
        "Set a rate-limit override (operator key)",
        "tenants",
        {
            200: ("the override", Limit),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", 413: "too large", **UNAVAILABLE}),
        },
        body=LimitSet,
        path_params=("slug",),
    ),
    Operation(
        "delete",
        "/admin/tenants/{slug}/limits",
        "Remove a rate-limit override (operator key)",
        "tenants",
        {
            200: ("what was removed", LimitRemoved),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", **UNAVAILABLE}),
        },
        query=LimitUnset,
        path_params=("slug",),
    ),
    Operation(
        "get",
        "/admin/audit",
        "The audit log of credential and admin operations, newest first",
        "admin",
        {200: ("a page of entries", AuditPage), **_errors({**ADMIN_ERRORS, **UNAVAILABLE})},
        query=AuditQuery,
    ),
    Operation(
        "post",
        "/admin/erasures",
        "Erase a person's data (LGPD art. 18): payloads, requests, headers, excerpts",
        "admin",
        {
            200: ("dry run: what would be erased", ErasureReceipt),
            201: ("erased: the receipt", ErasureReceipt),
            **_errors({**ADMIN_ERRORS, 404: "no such tenant", 413: "too large", **UNAVAILABLE}),
        },
        body=ErasureRequest,
    ),
    Operation(
        "post",
        "/admin/simulate",
        "What an event would send: matched rules and requests; nothing stored or sent",
        "admin",
        {
            200: ("the simulation", Simulation),
            **_errors({**ADMIN_ERRORS, 413: "body too large", **UNAVAILABLE}),
        },
        body=SimulateRequest,
    ),
]


# -- the document ----------------------------------------------------------------------------------

REF = "#/components/schemas/{model}"


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for op in OPERATIONS:
        for model in (op.query, op.body, *(m for _, m in op.answers.values())):
            if isinstance(model, type) and issubclass(model, BaseModel):
                found[model.__name__] = model
    return list(found.values())


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: absent is how it is null, so `null` is not a value."""
    variants = schema.get("anyOf")
    if variants:
        kept = [v for v in variants if v.get("type") != "null"]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **rest}
    return {k: v for k, v in schema.items() if k != "default" or v is not None}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF, by_alias=True)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _without_null(prop),
        }
        for name, prop in schema["properties"].items()
    ]


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "security": op.security}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in op.path_params
    ]
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        out["parameters"] = params
    if op.body == "any":
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": {}}}}
    elif op.body is not None:
        ref = {"$ref": REF.format(model=op.body.__name__)}
        out["requestBody"] = {"required": False, "content": {"application/json": {"schema": ref}}}
    responses: dict[str, Any] = {}
    for status, (text, model) in sorted(op.answers.items()):
        if isinstance(model, str):
            content = {model: {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}
        responses[str(status)] = {"description": text, "content": content}
    out["responses"] = responses
    return out


def build_spec(version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of hub's HTTP API."""
    _, defs = models_json_schema([(model, "validation") for model in _models()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hub",
            "version": version,
            "description": "Webhooks in, durable events, declarative mappings, reliable "
            "deliveries out. Every error is the JSON body ErrorBody.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


async def openapi_route(request: Request) -> Response:
    spec = getattr(request.app.state, "openapi", None)
    if spec is None:
        from importlib.metadata import version

        spec = request.app.state.openapi = build_spec(version("hub"))
    return JSONResponse(spec)


ROUTES: list[BaseRoute] = [Route("/openapi.json", openapi_route, methods=["GET"])]
