"""What an operator on call looks at first: `GET /status` (operator key) and `hub status`.

One snapshot, read from Redis and the database: per queue the depth and the age of the oldest
job; the RQ workers alive; events and deliveries by status over the last hour and day; per
endpoint the attempts of the last hour, the success rate and the circuit; the retry backlog; the
open dead letters; each sync's last run (hub.sync.status); and `alerts`, raised from thresholds
in settings (`HUB_ALERT_*`), in the spirit of Horizon's "long wait" notifications, and by syncs
failed or late. `GET /metrics` exports the state part of it as gauges.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.utils import utcparse
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.core import dead_letters, metrics
from hub.core.errors import (
    DatabaseUnavailable,
    RedisUnavailable,
    ServiceUnavailable,
    Unauthorized,
)
from hub.core.models import (
    DeadLetter,
    DeadLetterStatus,
    DeliveryAttempt,
    DeliveryStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from hub.core.queues import PRIORITY, get_queue
from hub.core.responses import error_response
from hub.core.settings import Settings
from hub.ingress.principals import Principal, requires_key
from hub.sync.status import sync_alerts, sync_stats

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SUCCESS = "delivered"


@dataclass(frozen=True)
class QueueStat:
    depth: int
    oldest_age_s: float | None


# -- Redis side ------------------------------------------------------------------------------------


def queue_stats(redis: Redis, now: datetime | None = None) -> dict[str, QueueStat]:
    """Depth and oldest waiting job's age of each hub queue."""
    now = now or utcnow()
    out: dict[str, QueueStat] = {}
    try:
        for name in PRIORITY:
            queue = get_queue(redis, name)
            depth = queue.count
            oldest: float | None = None
            first = queue.get_job_ids(0, 1)
            if first:
                raw = redis.hget(f"rq:job:{first[0]}", "enqueued_at")
                if raw:
                    enqueued = utcparse(raw.decode() if isinstance(raw, bytes) else raw)
                    oldest = max((now - enqueued.replace(tzinfo=None)).total_seconds(), 0.0)
            out[name.value] = QueueStat(depth, oldest)
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot read the queues: {exc}") from exc
    return out


def worker_stats(redis: Redis) -> list[dict[str, Any]]:
    """RQ's worker registry: the workers alive (their keys expire when they stop beating)."""
    try:
        workers = Worker.all(connection=redis)
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot read the workers: {exc}") from exc
    return sorted(
        (
            {
                "name": w.name,
                "queues": [q.name for q in w.queues],
                "state": str(w.get_state()),
                "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
            }
            for w in workers
        ),
        key=lambda w: str(w["name"]),
    )


def circuit_states(redis: Redis, endpoints: list[str]) -> dict[str, str]:
    """Closed, half-open or open for each endpoint (and any other endpoint with a tripped key)."""
    from hub.delivery.breaker import CircuitBreaker, open_circuits

    try:
        names = sorted(set(endpoints) | set(open_circuits(redis)))
        return {name: CircuitBreaker(redis, name).state().value for name in names}
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot read the circuits: {exc}") from exc


# -- database side ---------------------------------------------------------------------------------


def _by_status(session: Session, column: Any, created: Any, since: datetime) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(created >= since).group_by(column))
    return {str(getattr(status, "value", status)): int(count) for status, count in rows}


def endpoint_names(session: Session) -> list[str]:
    rows = session.scalars(
        select(WebhookEndpoint.name).where(WebhookEndpoint.active.is_(True)).distinct()
    )
    return sorted(rows)


def endpoint_stats(session: Session, since: datetime) -> dict[str, dict[str, Any]]:
    """Attempts since `since` per endpoint: count, delivered, failed and the success rate."""
    rows = session.execute(
        select(WebhookDelivery.endpoint, DeliveryAttempt.outcome, func.count())
        .join(WebhookDelivery, WebhookDelivery.id == DeliveryAttempt.delivery_id)
        .where(DeliveryAttempt.started_at >= since)
        .group_by(WebhookDelivery.endpoint, DeliveryAttempt.outcome)
    )
    out: dict[str, dict[str, Any]] = {}
    for endpoint, outcome, count in rows:
        stat = out.setdefault(endpoint, {"attempts": 0, "delivered": 0, "failed": 0})
        if outcome == "deferred":  # held back by the circuit or a rate limit: not a try
            continue
        stat["attempts"] += int(count)
        stat["delivered" if outcome == SUCCESS else "failed"] += int(count)
    for stat in out.values():
        stat["success_rate"] = (
            round(stat["delivered"] / stat["attempts"], 4) if stat["attempts"] else None
        )
    return out


def retry_stats(session: Session, now: datetime) -> dict[str, Any]:
    backlog = session.scalar(select(func.count()).select_from(RetryQueue)) or 0
    due, oldest = session.execute(
        select(func.count(), func.min(RetryQueue.next_retry_at)).where(
            RetryQueue.next_retry_at <= now
        )
    ).one()
    return {
        "backlog": int(backlog),
        "due": int(due or 0),
        "oldest_due_age_s": round((now - oldest).total_seconds(), 3) if oldest else None,
    }


def dead_letter_stats(session: Session, now: datetime) -> dict[str, Any]:
    by_stage = {
        str(getattr(stage, "value", stage)): int(count)
        for stage, count in session.execute(
            select(DeadLetter.stage, func.count())
            .where(DeadLetter.status == DeadLetterStatus.OPEN)
            .group_by(DeadLetter.stage)
        )
    }
    last_hour = session.scalar(
        select(func.count()).where(
            DeadLetter.status == DeadLetterStatus.OPEN, DeadLetter.created_at >= now - HOUR
        )
    )
    return {
        "open": sum(by_stage.values()),
        "open_by_stage": by_stage,
        "opened_last_hour": int(last_hour or 0),
    }


# -- the snapshot ----------------------------------------------------------------------------------


def alerts(snapshot: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """Alerts raised by the snapshot: each a stable `key`, a `kind` and a `message`."""
    raised: list[dict[str, Any]] = []
    for name, queue in snapshot["queues"].items():
        age = queue["oldest_age_s"]
        if age is not None and age > settings.alert_backlog_age:
            raised.append(
                {
                    "key": f"backlog:{name}",
                    "kind": "backlog",
                    "message": f"queue {name}: oldest job waiting {age:.0f}s "
                    f"(threshold {settings.alert_backlog_age:.0f}s), {queue['depth']} queued",
                }
            )
    retries = snapshot["retries"]
    due_age = retries["oldest_due_age_s"]
    if due_age is not None and due_age > settings.alert_backlog_age:
        raised.append(
            {
                "key": "backlog:retry_queue",
                "kind": "backlog",
                "message": f"retry_queue: {retries['due']} retries due, oldest {due_age:.0f}s "
                "overdue (is the sweeper running?)",
            }
        )
    waiting = sum(q["depth"] for q in snapshot["queues"].values())
    if waiting and not snapshot["workers"]["alive"]:
        raised.append(
            {
                "key": "workers",
                "kind": "workers",
                "message": f"{waiting} jobs queued and no worker alive",
            }
        )
    for name, stat in snapshot["endpoints"].items():
        rate = stat.get("success_rate")
        if (
            rate is not None
            and stat["attempts"] >= settings.alert_failure_min_attempts
            and 1 - rate > settings.alert_failure_rate
        ):
            raised.append(
                {
                    "key": f"failure_rate:{name}",
                    "kind": "failure_rate",
                    "message": f"endpoint {name}: {stat['failed']} of {stat['attempts']} attempts "
                    f"failed in the last hour (threshold {settings.alert_failure_rate:.0%})",
                }
            )
        if stat.get("circuit") == "open":
            raised.append(
                {
                    "key": f"circuit:{name}",
                    "kind": "circuit",
                    "message": f"endpoint {name}: circuit open, deliveries are held back",
                }
            )
    opened = snapshot["dead_letters"]["opened_last_hour"]
    if opened >= settings.alert_dead_letter_growth:
        raised.append(
            {
                "key": "dead_letters",
                "kind": "dead_letters",
                "message": f"{opened} dead letters opened in the last hour "
                f"(threshold {settings.alert_dead_letter_growth}); see hub dead-letters list",
            }
        )
    return raised


def collect(
    engine: Engine, redis: Redis, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """The whole snapshot as a JSON-ready dict (blocking: run it off the event loop)."""
    now = now or utcnow()
    try:
        with Session(engine) as session:
            events = {
                "last_hour": _by_status(
                    session, IntegrationEvent.status, IntegrationEvent.created_at, now - HOUR
                ),
                "last_day": _by_status(
                    session, IntegrationEvent.status, IntegrationEvent.created_at, now - DAY
                ),
            }
            deliveries = {
                "last_hour": _by_status(
                    session, WebhookDelivery.status, WebhookDelivery.created_at, now - HOUR
                ),
                "last_day": _by_status(
                    session, WebhookDelivery.status, WebhookDelivery.created_at, now - DAY
                ),
            }
            pending = session.scalar(
                select(func.count()).where(
                    WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.DELIVERING))
                )
            )
            names = endpoint_names(session)
            endpoints = endpoint_stats(session, now - HOUR)
            retries = retry_stats(session, now)
            retries["pending_deliveries"] = int(pending or 0)
            dead_letters = dead_letter_stats(session, now)
            syncs = sync_stats(session, now)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot read the status: {type(exc).__name__}") from exc

    circuits = circuit_states(redis, names + sorted(endpoints))
    for name in circuits:
        endpoints.setdefault(
            name, {"attempts": 0, "delivered": 0, "failed": 0, "success_rate": None}
        )
        endpoints[name]["circuit"] = circuits[name]
    workers = worker_stats(redis)
    snapshot: dict[str, Any] = {
        "generated_at": now.isoformat() + "Z",
        "queues": {
            name: {"depth": stat.depth, "oldest_age_s": _round(stat.oldest_age_s)}
            for name, stat in queue_stats(redis, now).items()
        },
        "workers": {"alive": len(workers), "list": workers},
        "events": events,
        "deliveries": deliveries,
        "endpoints": dict(sorted(endpoints.items())),
        "retries": retries,
        "dead_letters": dead_letters,
        "syncs": syncs,
    }
    snapshot["alerts"] = alerts(snapshot, settings) + sync_alerts(syncs)
    return snapshot


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def metrics_state(engine: Engine, redis: Redis) -> metrics.StateCollector:
    """The gauges of `GET /metrics` (a cheap subset of the snapshot)."""
    try:
        with Session(engine) as session:
            names = endpoint_names(session)
            open_letters = dead_letters.count_open(session)
            syncs = sync_stats(session, utcnow())
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot read the metrics: {type(exc).__name__}") from exc
    stats = queue_stats(redis)
    return metrics.StateCollector(
        queues={name: (s.depth, s.oldest_age_s) for name, s in stats.items()},
        circuits=circuit_states(redis, names),
        dead_letters_open=open_letters,
        workers=len(worker_stats(redis)),
        syncs=syncs,
    )


# -- routes ----------------------------------------------------------------------------------------


@requires_key(operator_only=True)
async def status_route(request: Request, _principal: Principal) -> Response:
    state = request.app.state
    body = await run_in_threadpool(collect, state.engine, state.redis, state.settings)
    return JSONResponse(body)


async def metrics_route(request: Request) -> Response:
    """Counters always; the state gauges only while Redis and the database answer.

    With HUB_METRICS_TOKEN set, a scrape must carry it as `Authorization: Bearer <token>`."""
    state = request.app.state
    token = state.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            error = Unauthorized("/metrics needs the scrape token: Authorization: Bearer <token>")
            response = error_response(error)
            response.headers["WWW-Authenticate"] = 'Bearer realm="hub metrics"'
            return response
    try:
        snapshot = await run_in_threadpool(metrics_state, state.engine, state.redis)
    except ServiceUnavailable:
        snapshot = None
    return Response(metrics.render(snapshot), media_type=metrics.CONTENT_TYPE)


ROUTES: list[BaseRoute] = [
    Route("/status", status_route, methods=["GET"]),
    Route("/metrics", metrics_route, methods=["GET"]),
]
