"""The sweeper's delivery tasks: the database's schedule turned into queued jobs.

- `enqueue_due_retries`: `retry_queue` rows that are due → `workers.jobs.deliver` on `retry`
  (first attempts of delayed routes, `attempt` 0, on their own queue). A row stays, pushed
  `REENQUEUE_AFTER` ahead, until the delivery's outcome replaces or deletes it: a Redis flush
  between the enqueue and the worker costs a delay, never the delivery.
- `expire_leases`: deliveries `delivering` past their lease (the worker died mid-send) → back to
  `retrying`, due now. The target may see that webhook-id twice: at-least-once.
- `relay_pending`: deliveries still `pending` long after their creation with no schedule (Redis
  was down when the mapping step enqueued them) → enqueued on their queue.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Protocol

from redis import Redis
from sqlalchemy import Engine, and_, delete, insert, select, update

from hub.core.models import DeliveryAttempt, DeliveryStatus, RetryQueue, WebhookDelivery, utcnow
from hub.core.queues import DELIVER, QueueName, enqueue_ids
from hub.core.settings import Settings

log = logging.getLogger("hub.delivery.sweeps")

BATCH = 5000  # rows per sweep and task
REENQUEUE_AFTER = 120.0  # seconds a due row waits for its job before it is enqueued again
PENDING_STALE_AFTER = 60.0


class SweepCtx(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def redis(self) -> Redis: ...


def _enqueue(redis: Redis, by_queue: dict[str, list[str]]) -> int:
    moved = 0
    for queue, ids in by_queue.items():
        enqueue_ids(redis, DELIVER, queue, ids)
        moved += len(ids)
    return moved


def enqueue_due_retries(ctx: SweepCtx, *, reenqueue_after: float = REENQUEUE_AFTER) -> int:
    now = utcnow()
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(
                RetryQueue.id,
                RetryQueue.delivery_id,
                RetryQueue.attempt,
                WebhookDelivery.queue,
                WebhookDelivery.endpoint,
            )
            .join(WebhookDelivery, WebhookDelivery.id == RetryQueue.delivery_id)
            .where(RetryQueue.next_retry_at <= now)
            .order_by(RetryQueue.next_retry_at)
            .limit(BATCH)
        ).all()
    if not rows:
        return 0
    by_queue: dict[str, list[str]] = defaultdict(list)
    # grouped by endpoint, so each job's batch goes to one target
    for row in sorted(rows, key=lambda r: r.endpoint):
        queue = row.queue if row.attempt == 0 else QueueName.RETRY.value
        by_queue[queue].append(row.delivery_id)
    moved = _enqueue(ctx.redis, by_queue)
    with ctx.engine.begin() as conn:
        conn.execute(
            update(RetryQueue)
            .where(RetryQueue.id.in_([row.id for row in rows]), RetryQueue.next_retry_at <= now)
            .values(next_retry_at=now + timedelta(seconds=reenqueue_after))
        )
    log.info("sweeper.retries_enqueued", extra={"count": moved})
    return moved


def expire_leases(ctx: SweepCtx) -> int:
    now = utcnow()
    expired = and_(
        WebhookDelivery.status == DeliveryStatus.DELIVERING,
        WebhookDelivery.lease_expires_at < now,
    )
    with ctx.engine.begin() as conn:
        rows = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.attempts)
            .where(expired)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        ids = [row.id for row in rows]
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), expired)
            .values(
                status=DeliveryStatus.RETRYING,
                lease_expires_at=None,
                next_attempt_at=now,
                last_error="lease expired: the worker stopped in the middle of a send",
                updated_at=now,
            )
        )
        conn.execute(delete(RetryQueue).where(RetryQueue.delivery_id.in_(ids)))
        conn.execute(
            insert(RetryQueue),
            [
                {
                    "delivery_id": row.id,
                    "next_retry_at": now,
                    "attempt": row.attempts,
                    "reason": "lease_expired",
                    "created_at": now,
                }
                for row in rows
            ],
        )
        conn.execute(
            insert(DeliveryAttempt),
            [
                {
                    "delivery_id": row.id,
                    "number": row.attempts + 1,
                    "started_at": now,
                    "duration_ms": 0,
                    "error_class": "lease_expired",
                    "outcome": "retry",
                }
                for row in rows
            ],
        )
    for row in rows:
        log.warning("delivery.lease_expired", extra={"delivery_id": row.id})
    return len(rows)


def relay_pending(ctx: SweepCtx, *, stale_after: float = PENDING_STALE_AFTER) -> int:
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after)
    scheduled = select(RetryQueue.delivery_id).where(RetryQueue.delivery_id == WebhookDelivery.id)
    stale = and_(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.updated_at < cutoff,
        ~scheduled.exists(),
    )
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.queue, WebhookDelivery.endpoint)
            .where(stale)
            .order_by(WebhookDelivery.endpoint)
            .limit(BATCH)
        ).all()
    if not rows:
        return 0
    by_queue: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_queue[row.queue].append(row.id)
    moved = _enqueue(ctx.redis, by_queue)
    with ctx.engine.begin() as conn:  # not again before another `stale_after`
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([row.id for row in rows]), stale)
            .values(updated_at=now)
        )
    log.info("sweeper.pending_relayed", extra={"count": moved})
    return moved
