"""`process_events`: turn a batch of stored events into deliveries (the RQ job's body).

For each event still waiting (received, queued or processing): decrypt the payload, evaluate the
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

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.core import ids, metrics
from hub.core.context import JobContext
from hub.core.crypto import Cipher
from hub.core.errors import RedisUnavailable
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import DELIVER, enqueue_ids
from hub.mapping.engine import RuleSet
from hub.mapping.live import live_mappings

log = logging.getLogger("hub.mapping.routing")

WAITING = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING)


@dataclass
class BatchOutcome:
    processed: list[str] = field(default_factory=list)
    no_route: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # event id -> reason
    deliveries: int = 0  # created by this run
    enqueue: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> log fields

    def counts(self) -> dict[str, int]:
        return {
            "processed": len(self.processed),
            "no_route": len(self.no_route),
            "failed": len(self.failed),
            "deliveries": self.deliveries,
        }


def process_events(ctx: JobContext, event_ids: list[str]) -> dict[str, int]:
    """Route each event of the batch; idempotent; returns counts by outcome."""
    applied = live_mappings(ctx.cache).get(ctx.engine, ctx.redis)
    try:
        outcome = _route_batch(ctx, applied.ruleset, applied.endpoint_ids, event_ids)
    except (IntegrityError, OperationalError):
        # another worker routed some of these events at the same time (a duplicate delivery, a
        # deadlock, SQLite's stale snapshot): a second pass in a fresh transaction sees its rows
        log.info("events.retry_batch", extra={"count": len(event_ids)})
        outcome = _route_batch(ctx, applied.ruleset, applied.endpoint_ids, event_ids)
    _enqueue(ctx, outcome.enqueue)
    return outcome.counts()


def _route_batch(
    ctx: JobContext, ruleset: RuleSet, endpoint_ids: dict[str, int], event_ids: list[str]
) -> BatchOutcome:
    out = BatchOutcome()
    with ctx.sessions() as session, session.begin():
        events = session.execute(
            select(
                IntegrationEvent.id,
                IntegrationEvent.tenant_id,
                IntegrationEvent.source,
                IntegrationEvent.event_type,
                IntegrationEvent.payload,
                IntegrationEvent.correlation_id,
                IntegrationEvent.created_at,
            ).where(IntegrationEvent.id.in_(event_ids), IntegrationEvent.status.in_(WAITING))
        ).all()
        if not events:
            return out
        existing = {
            (row[0], row[1], row[2])
            for row in session.execute(
                select(
                    WebhookDelivery.event_id, WebhookDelivery.mapping, WebhookDelivery.route
                ).where(WebhookDelivery.event_id.in_([e.id for e in events]))
            )
        }
        now = utcnow()
        deliveries: list[dict[str, Any]] = []
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
                        "correlation_id": event.correlation_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            out.processed.append(event.id)
        if deliveries:
            session.execute(insert(WebhookDelivery), deliveries)
            out.deliveries = len(deliveries)
        if scheduled:
            session.execute(insert(RetryQueue), scheduled)
        if dead:
            session.execute(insert(DeadLetter), dead)
        for status, event_ids_done in (
            (EventStatus.PROCESSED, out.processed),
            (EventStatus.NO_ROUTE, out.no_route),
        ):
            if event_ids_done:
                session.execute(
                    update(IntegrationEvent)
                    .where(IntegrationEvent.id.in_(event_ids_done))
                    .values(status=status, processed_at=now, error=None, updated_at=now)
                )
        for event_id, reason in out.failed.items():
            session.execute(
                update(IntegrationEvent)
                .where(IntegrationEvent.id == event_id)
                .values(status=EventStatus.FAILED, processed_at=now, error=reason, updated_at=now)
            )
    _log(out)
    return out


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
    return {
        "id": ids.new_id(ids.DEAD_LETTER),
        "tenant_id": event.tenant_id,
        "event_id": event.id,
        "source": event.source,
        "stage": DeadLetterStage.MAPPING,
        "reason": reason,
        "attempts": 0,
        "created_at": utcnow(),
    }


def _enqueue(ctx: JobContext, batches: dict[str, list[str]]) -> None:
    """One enqueue per queue; if Redis is down, schedule the ids for the sweeper instead."""
    for queue, delivery_ids in batches.items():
        if not delivery_ids:
            continue
        try:
            enqueue_ids(ctx.redis, DELIVER, queue, delivery_ids)
        except RedisUnavailable:
            log.warning(
                "deliveries.enqueue_failed", extra={"queue": queue, "count": len(delivery_ids)}
            )
            _schedule_now(ctx, delivery_ids)


def _schedule_now(ctx: JobContext, delivery_ids: list[str]) -> None:
    now = utcnow()
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
