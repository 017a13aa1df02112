"""`process_events`: turn a batch of stored events into deliveries (the RQ job's body).

For each event still waiting (received, queued, or processing with an expired lease), leased to
this job: decrypt the payload, evaluate the
applied rules, and insert one `webhook_deliveries` row per route that fires (unique per event, rule
and route, so running the job twice creates nothing new). Then, after the commit, enqueue
`deliver` with batches of delivery ids per queue. A route with a `delay` is scheduled in the
database instead (`next_attempt_at` plus a `retry_queue` row), so it survives restarts.

Every event ends `processed`, `no_route`, or `failed` with a `dead_letter` row (stage `mapping`)
that says exactly why; one event that does not fit never fails its batch or the worker.
The batch costs a handful of queries whatever its size: one to load the events, one for the
deliveries that already exist, one multi-row insert, one update per outcome.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.core import clock, dead_letters, ids, metrics
from hub.core.context import JobContext, SweepContext
from hub.core.crypto import Cipher
from hub.core.errors import RedisUnavailable
from hub.core.inserts import insert_rows
from hub.core.models import (
    DeadLetterStage,
    DeliveryStatus,
    EndpointPause,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    Tenant,
    WebhookDelivery,
)
from hub.core.queues import DELIVER, PROCESS_EVENTS, enqueue_ids
from hub.core.tenants import TenantSettings
from hub.delivery.groups import Routed, lease_routed
from hub.delivery.jobs import CHUNK, send_routed  # CHUNK: a deliver job's share of a lease
from hub.delivery.runtime import runtime
from hub.ingress.events import JOB_BATCH
from hub.mapping.engine import RuleSet
from hub.mapping.live import live_mappings

log = logging.getLogger("hub.mapping.routing")

EVENT_LEASE = 15.0  # seconds a job holds its events; far above a batch's usual time
LEASE_RETRIES = 3  # a lease the server rolled back (a deadlock, a lock wait timeout): again
LEASE_RETRY_PAUSE = 0.005  # seconds, times the attempt
EXPIRE_LIMIT = 2000  # events the sweeper hands on per sweep

# A job's statements, built once: building one (and its cache key) cost the worker more CPU than
# running it (a 45-id SELECT here: 1.2-1.7 ms built each time, 0.5-0.7 ms built once).
_TAKE_EVENTS = (
    update(IntegrationEvent)
    .where(
        IntegrationEvent.id.in_(bindparam("b_ids", expanding=True)),
        or_(
            IntegrationEvent.status.in_((EventStatus.RECEIVED, EventStatus.QUEUED)),
            and_(
                IntegrationEvent.status == EventStatus.PROCESSING,
                or_(
                    IntegrationEvent.lease_expires_at.is_(None),
                    IntegrationEvent.lease_expires_at < bindparam("b_now"),
                ),
            ),
        ),
    )
    .values(
        status=EventStatus.PROCESSING,
        lease_expires_at=bindparam("b_token"),
        updated_at=bindparam("b_now"),
    )
)
_LEASED_EVENTS = (
    select(
        IntegrationEvent.id,
        IntegrationEvent.tenant_id,
        IntegrationEvent.source,
        IntegrationEvent.event_type,
        IntegrationEvent.payload,
        IntegrationEvent.correlation_id,
        IntegrationEvent.created_at,
        Tenant.timezone,  # the tenant's settings, for date and money functions
        Tenant.locale,
        Tenant.active,
    )
    .join(Tenant, Tenant.id == IntegrationEvent.tenant_id)
    .where(
        IntegrationEvent.id.in_(bindparam("b_ids", expanding=True)),
        IntegrationEvent.status == EventStatus.PROCESSING,
        IntegrationEvent.lease_expires_at == bindparam("b_token"),
    )
)
_EXISTING_DELIVERIES = select(
    WebhookDelivery.event_id, WebhookDelivery.mapping, WebhookDelivery.route
).where(WebhookDelivery.event_id.in_(bindparam("b_ids", expanding=True)))
_EVENTS_DONE = (
    update(IntegrationEvent)
    .where(
        IntegrationEvent.id.in_(bindparam("b_ids", expanding=True)),
        IntegrationEvent.lease_expires_at == bindparam("b_token"),
    )
    .values(
        status=bindparam("b_status"),
        processed_at=bindparam("b_now"),
        error=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)
_PAUSED = select(EndpointPause.endpoint)


@dataclass
class BatchOutcome:
    processed: list[str] = field(default_factory=list)
    no_route: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # event id -> reason
    deliveries: int = 0  # created by this run
    enqueue: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> log fields
    routed: Routed = field(default_factory=Routed)  # leased to this process: sent after commit

    def counts(self) -> dict[str, int]:
        return {
            "processed": len(self.processed),
            "no_route": len(self.no_route),
            "failed": len(self.failed),
            "deliveries": self.deliveries,
        }


def process_events(ctx: JobContext, event_ids: list[str], *, send: bool = False) -> dict[str, int]:
    """Route each event of the batch; idempotent; returns counts by outcome.

    The events are leased first (`processing` until `EVENT_LEASE` seconds from now, the expiry
    doubling as this job's claim token): an event leased by a live job is skipped, and the
    events of a job that died go back to the queues when their lease expires
    (`expire_event_leases`).

    With `send` (the worker's job), the new deliveries whose endpoint's lane in this process has
    room are inserted leased to it and handed to the lane right after the commit: no deliver job
    and no second read of the rows, and each worker sends what it routed. The rest (no room, a
    paused endpoint, a deactivated tenant, a delayed route) go the usual way.
    """
    applied = live_mappings(ctx.cache).get(ctx.engine, ctx.redis)
    token = _lease(ctx, event_ids)
    route = functools.partial(
        _route_batch, ctx, applied.ruleset, applied.endpoint_ids, event_ids, token, send=send
    )
    try:
        outcome = route()
    except (IntegrityError, OperationalError):
        # another worker routed some of these events at the same time (a duplicate delivery, a
        # deadlock, SQLite's stale snapshot): a second pass in a fresh transaction sees its rows
        log.info("events.retry_batch", extra={"count": len(event_ids)})
        outcome = route()
    if outcome.routed.items:
        send_routed(ctx, outcome.routed)
    _enqueue(ctx, outcome.enqueue)
    return outcome.counts()


def _lease(ctx: JobContext, event_ids: list[str]) -> datetime:
    """Take the events still waiting (or whose lease expired); returns the lease's token.

    Two workers' leases can deadlock on the status index's gaps (each moves its events'
    entries), and the server rolls one back: that one tries again (`LEASE_RETRIES` times), as
    failing the job would leave its events to the sweeper, a second or more later."""
    now = clock.now(ctx.engine)  # the sweeper compares the lease on its host: one clock
    token = now + timedelta(seconds=EVENT_LEASE, microseconds=random.randrange(1_000_000))
    for attempt in itertools.count():
        try:
            with ctx.engine.begin() as conn:
                conn.execute(_TAKE_EVENTS, {"b_ids": event_ids, "b_token": token, "b_now": now})
            return token
        except OperationalError:
            if attempt >= LEASE_RETRIES:
                raise
            log.info("events.lease_retried", extra={"count": len(event_ids)})
            time.sleep(LEASE_RETRY_PAUSE * (attempt + 1))
    raise AssertionError("unreachable")


def expire_event_leases(ctx: SweepContext) -> int:
    """Sweeper task: events `processing` past their lease (their mapping job died or failed)
    go to their queues again, within seconds rather than after `REQUEUE_AFTER`."""
    now = clock.now(ctx.engine)
    expired = and_(
        IntegrationEvent.status == EventStatus.PROCESSING,
        IntegrationEvent.lease_expires_at < now,
    )
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(IntegrationEvent.id, IntegrationEvent.queue).where(expired).limit(EXPIRE_LIMIT)
        ).all()
    if not rows:
        return 0
    by_queue: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_queue[row.queue].append(row.id)
    for queue, ids_ in by_queue.items():  # first the jobs, then the rows: nothing waits unqueued
        enqueue_ids(ctx.redis, PROCESS_EVENTS, queue, ids_, batch_size=JOB_BATCH)
    with ctx.engine.begin() as conn:
        conn.execute(
            update(IntegrationEvent)
            .where(IntegrationEvent.id.in_([row.id for row in rows]), expired)
            .values(status=EventStatus.QUEUED, lease_expires_at=None, updated_at=now)
        )
    log.warning("events.lease_expired", extra={"count": len(rows)})
    return len(rows)


def _route_batch(
    ctx: JobContext,
    ruleset: RuleSet,
    endpoint_ids: dict[str, int],
    event_ids: list[str],
    token: datetime,
    *,
    send: bool = False,
) -> BatchOutcome:
    out = BatchOutcome()
    try:
        with ctx.engine.begin() as conn:  # Core: no ORM object is loaded or kept
            _route_in(ctx, conn, ruleset, endpoint_ids, event_ids, token, send, out)
    except BaseException:
        out.routed.release()  # nothing was inserted: the lanes' room is free again
        raise
    _log(out)
    return out


def _route_in(
    ctx: JobContext,
    conn: Connection,
    ruleset: RuleSet,
    endpoint_ids: dict[str, int],
    event_ids: list[str],
    token: datetime,
    send: bool,
    out: BatchOutcome,
) -> None:
    events = conn.execute(_LEASED_EVENTS, {"b_ids": event_ids, "b_token": token}).all()
    if not events:
        return
    existing = {
        (row[0], row[1], row[2])
        for row in conn.execute(_EXISTING_DELIVERIES, {"b_ids": [e.id for e in events]})
    }
    now = clock.now(ctx.engine)
    deliveries: list[dict[str, Any]] = []
    requests: dict[str, dict[str, Any]] = {}  # delivery id -> its request, to send it from here
    scheduled: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    for event in events:
        out.ids[event.id] = {
            "tenant_id": event.tenant_id,
            "source": event.source,
            "correlation_id": event.correlation_id,
        }
        try:
            payload = _payload(ctx.cipher, event.payload)
        except ValueError as exc:
            out.failed[event.id] = str(exc)
            dead.append(_dead_letter(event, str(exc)))
            continue
        evaluation = ruleset.evaluate(
            event.source,
            event.event_type,
            payload,
            tenant=TenantSettings(event.timezone, event.locale),
            occurred_at=event.created_at.isoformat(timespec="milliseconds") + "Z",
        )
        if evaluation.errors:
            reason = "; ".join(evaluation.errors)
            out.failed[event.id] = reason
            dead.append(_dead_letter(event, reason))
            continue
        if not evaluation.planned:
            out.no_route.append(event.id)
            continue
        for planned in evaluation.planned:
            if (event.id, planned.rule, planned.route) in existing:
                continue  # made by an earlier run (a replay): it lives its own life
            delivery_id = ids.new_id(ids.DELIVERY)
            due = None
            if planned.delay:
                due = now + timedelta(seconds=planned.delay)
                scheduled.append(
                    {
                        "delivery_id": delivery_id,
                        "next_retry_at": due,
                        "attempt": 0,
                        "reason": f"route delay {planned.delay:g}s",
                        "created_at": now,
                    }
                )
            else:
                out.enqueue[planned.queue].append(delivery_id)
                requests[delivery_id] = planned.request
            deliveries.append(
                {
                    "id": delivery_id,
                    "event_id": event.id,
                    "tenant_id": event.tenant_id,
                    "mapping": planned.rule,
                    "route": planned.route,
                    "endpoint": planned.endpoint,
                    "endpoint_id": endpoint_ids.get(planned.endpoint),
                    "queue": planned.queue,
                    "status": DeliveryStatus.PENDING,
                    "request": ctx.cipher.encrypt(orjson.dumps(planned.request)),
                    "attempts": 0,
                    "next_attempt_at": due,
                    "lease_expires_at": None,  # or this job's lease (_lease_to_self)
                    "correlation_id": event.correlation_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        out.processed.append(event.id)
    if send and deliveries:
        _lease_to_self(ctx, conn, deliveries, requests, events, now, out)
    if deliveries:
        insert_rows(conn, WebhookDelivery.__table__, deliveries)  # type: ignore[arg-type]
        out.deliveries = len(deliveries)
    if scheduled:
        conn.execute(insert(RetryQueue), scheduled)
    if dead:
        dead_letters.create_many(conn, dead)
    for status, event_ids_done in (
        (EventStatus.PROCESSED, out.processed),
        (EventStatus.NO_ROUTE, out.no_route),
    ):
        if event_ids_done:
            conn.execute(
                _EVENTS_DONE,
                {"b_ids": event_ids_done, "b_token": token, "b_status": status, "b_now": now},
            )
    for event_id, reason in out.failed.items():
        conn.execute(
            update(IntegrationEvent)
            .where(IntegrationEvent.id == event_id, IntegrationEvent.lease_expires_at == token)
            .values(
                status=EventStatus.FAILED,
                processed_at=now,
                error=reason,
                lease_expires_at=None,
                updated_at=now,
            )
        )


def _lease_to_self(
    ctx: JobContext,
    conn: Connection,
    deliveries: list[dict[str, Any]],
    requests: dict[str, dict[str, Any]],
    events: Sequence[Any],
    now: datetime,
    out: BatchOutcome,
) -> None:
    """Lease the batch's new deliveries to this process where they can go now (see
    `process_events`); they leave the ids to enqueue."""
    held_tenants = {event.tenant_id for event in events if not event.active}
    paused = set(conn.scalars(_PAUSED))
    ready = [
        values
        for values in deliveries
        if values["id"] in requests  # not delayed
        and values["tenant_id"] not in held_tenants
        and values["endpoint"] not in paused
    ]
    rt = runtime(ctx)
    rt.registry.refresh()
    rt.secrets.refresh()
    out.routed = lease_routed(rt, ready, requests, now)
    leased = {item.id for item in out.routed.items}
    for queue, ids_ in out.enqueue.items():
        out.enqueue[queue] = [i for i in ids_ if i not in leased]


def _payload(cipher: Cipher, blob: bytes | None) -> Any:
    """The event's JSON payload; ValueError with the reason when it cannot be read."""
    if blob is None:
        raise ValueError("the payload was purged; nothing to map")
    try:
        return orjson.loads(cipher.decrypt(blob))
    except orjson.JSONDecodeError as exc:
        raise ValueError("the stored payload is not valid JSON") from exc
    except Exception as exc:  # noqa: BLE001 - a payload we cannot decrypt fails the event alone
        raise ValueError(f"the stored payload cannot be decrypted ({type(exc).__name__})") from exc


def _dead_letter(event: Any, reason: str) -> dict[str, Any]:
    return dead_letters.new_row(
        tenant_id=event.tenant_id,
        event_id=event.id,
        source=event.source,
        stage=DeadLetterStage.MAPPING,
        reason=reason,
    )


def _enqueue(ctx: JobContext, batches: dict[str, list[str]]) -> None:
    """One enqueue per queue; if Redis is down, schedule the ids for the sweeper instead."""
    for queue, delivery_ids in batches.items():
        if not delivery_ids:
            continue
        try:
            enqueue_ids(ctx.redis, DELIVER, queue, delivery_ids, batch_size=2 * CHUNK)
        except RedisUnavailable:
            log.warning(
                "deliveries.enqueue_failed", extra={"queue": queue, "count": len(delivery_ids)}
            )
            _schedule_now(ctx, delivery_ids)


def _schedule_now(ctx: JobContext, delivery_ids: list[str]) -> None:
    now = clock.now(ctx.engine)
    with ctx.sessions() as session, session.begin():
        have = set(
            session.scalars(
                select(RetryQueue.delivery_id).where(RetryQueue.delivery_id.in_(delivery_ids))
            )
        )
        rows = [
            {"delivery_id": d, "next_retry_at": now, "attempt": 0, "reason": "enqueue failed",
             "created_at": now}
            for d in delivery_ids
            if d not in have
        ]  # fmt: skip
        if rows:
            session.execute(insert(RetryQueue), rows)


def _log(out: BatchOutcome) -> None:
    metrics.event_processed("processed", len(out.processed))
    metrics.event_processed("no_route", len(out.no_route))
    metrics.event_processed("failed", len(out.failed))
    for event_id in out.processed:
        fields = out.ids.get(event_id, {})
        log.info("event.processed", extra={"event_id": event_id, "status": "processed", **fields})
    for event_id in out.no_route:
        fields = out.ids.get(event_id, {})
        log.info("event.no_route", extra={"event_id": event_id, "status": "no_route", **fields})
    for event_id in out.failed:
        # the reason names rules, fields and paths, never payload values
        fields = out.ids.get(event_id, {}) | {"reason": out.failed[event_id]}
        log.warning("event.failed", extra={"event_id": event_id, "status": "failed", **fields})
