"""The sweeper's delivery tasks: the database's schedule turned into queued jobs.

- `enqueue_due_retries`: `retry_queue` rows that are due → `workers.jobs.deliver` on `retry`
  (first attempts of delayed routes, `attempt` 0, on their own queue). A row stays, pushed
  `REENQUEUE_AFTER` ahead, until the delivery's outcome replaces or deletes it: a Redis flush
  between the enqueue and the worker costs a few seconds, never the delivery. A due row whose
  delivery a waiting job already carries is only pushed, not enqueued twice.
- `relay_retries`: rows enqueued so (pushed ahead while their delivery is due) whose job was lost
  (hub.core.inflight: no live job carries the delivery for `CONFIRM_AFTER` s in a row) →
  enqueued again within seconds, not after `REENQUEUE_AFTER`; never one waiting in a backlog.
- `expire_leases`: deliveries `delivering` past their lease (the worker died mid-send) → the lost
  send counts as an attempt: back to `retrying`, due now, or `dead` ("worker lost during the
  attempt") after the last one. The target may see that webhook-id twice: at-least-once.
- `relay_pending`: deliveries `pending` with no schedule that no live RQ job carries (Redis was
  down when the mapping step enqueued them, their job was lost with its worker or a flush) →
  enqueued on their queue within seconds (hub.core.inflight); never one waiting in a backlog.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Protocol

from redis import Redis
from sqlalchemy import Connection, Engine, and_, delete, insert, or_, select, update

from hub.core import clock, dead_letters
from hub.core.inflight import InFlight, Suspects
from hub.core.models import (
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
)
from hub.core.queues import DELIVER, QueueName, enqueue_ids
from hub.core.settings import Settings
from hub.delivery.registry import EndpointRegistry
from hub.delivery.retry import next_delay, policy_for

log = logging.getLogger("hub.delivery.sweeps")

BATCH = 5000  # rows per sweep and task
DETAILS_CHUNK = 1000  # ids per IN list when a rule reads the rows of uncarried deliveries
REENQUEUE_AFTER = 120.0  # seconds a due row waits for its job before it is enqueued again
PENDING_STALE_AFTER = 120.0  # safety net: seconds a pending delivery no waiting job carries
PENDING_GRACE = 2.0  # seconds between a delivery's insert and its job's enqueue, at most
TAKEABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)  # as hub.delivery.groups
LEASE_LOST_REASON = "worker lost during the attempt"
LEASE_LOST_ERROR = "lease expired: the worker stopped in the middle of a send"


class SweepCtx(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def redis(self) -> Redis: ...
    @property
    def inflight(self) -> InFlight: ...


def _enqueue(redis: Redis, by_queue: dict[str, list[str]]) -> int:
    moved = 0
    for queue, ids in by_queue.items():
        enqueue_ids(redis, DELIVER, queue, ids)
        moved += len(ids)
    return moved


def _queue_of(row: Any) -> str:
    """A first attempt of a delayed route goes to its own queue; a retry to `retry`."""
    return row.queue if row.attempt == 0 else QueueName.RETRY.value


def _by_queue(rows: list[Any]) -> dict[str, list[str]]:
    by_queue: dict[str, list[str]] = defaultdict(list)
    # grouped by endpoint, so each job's batch goes to one target
    for row in sorted(rows, key=lambda r: r.endpoint):
        by_queue[_queue_of(row)].append(row.delivery_id)
    return by_queue


def _push(ctx: SweepCtx, row_ids: list[int], now: datetime, after: float, where: Any) -> None:
    """The rows' next look REENQUEUE_AFTER ahead: the safety net's clock restarts."""
    with ctx.engine.begin() as conn:
        conn.execute(
            update(RetryQueue)
            .where(RetryQueue.id.in_(row_ids), where)
            .values(next_retry_at=now + timedelta(seconds=after))
        )


def _retry_rows(ctx: SweepCtx, where: Any) -> list[Any]:
    """Retry rows meeting `where`, soonest first, with their delivery's queue and endpoint."""
    with ctx.engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    RetryQueue.id,
                    RetryQueue.delivery_id,
                    RetryQueue.attempt,
                    WebhookDelivery.queue,
                    WebhookDelivery.endpoint,
                )
                .join(WebhookDelivery, WebhookDelivery.id == RetryQueue.delivery_id)
                .where(where)
                .order_by(RetryQueue.next_retry_at)
                .limit(BATCH)
            ).all()
        )


def enqueue_due_retries(ctx: SweepCtx, *, reenqueue_after: float = REENQUEUE_AFTER) -> int:
    # read before the rows: a job that ends in between leaves them taken
    jobs = ctx.inflight.carried(ctx.redis)
    now = clock.now(ctx.engine)
    rows = _retry_rows(ctx, RetryQueue.next_retry_at <= now)
    if not rows:
        return 0
    # a delivery a waiting job carries is taken by that job: enqueued once, however long it waits
    due = [row for row in rows if row.delivery_id not in jobs.waiting]
    moved = _enqueue(ctx.redis, _by_queue(due))
    _push(ctx, [row.id for row in rows], now, reenqueue_after, RetryQueue.next_retry_at <= now)
    if moved:
        log.info("sweeper.retries_enqueued", extra={"count": moved})
    return moved


def relay_retries(ctx: SweepCtx, *, reenqueue_after: float = REENQUEUE_AFTER) -> int:
    """Retries whose job was lost: enqueued again within seconds.

    A row `enqueue_due_retries` enqueued is pushed `reenqueue_after` ahead while its delivery
    stays due (`next_attempt_at` passed, or none) and takeable: its job has not run yet. Evidence,
    not age (hub.core.inflight): such a delivery that no job on a queue and no started job of a
    live worker carries, for `CONFIRM_AFTER` seconds in a row, goes to its queue again (a worker
    was killed, Redis was flushed). One whose job waits behind a backlog is never enqueued twice.
    """
    # read before the rows: a job that ends in between leaves them taken
    jobs = ctx.inflight.carried(ctx.redis)
    now = clock.now(ctx.engine)
    waiting = and_(
        RetryQueue.next_retry_at > now,
        WebhookDelivery.status.in_(TAKEABLE),
        or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now),
    )
    rows = _retry_rows(ctx, waiting)
    suspects = (row.delivery_id for row in rows if row.delivery_id not in jobs)
    confirmed = Suspects(ctx.redis, "retries").confirm(suspects)
    lost = [row for row in rows if row.delivery_id in confirmed]
    if not lost:
        return 0
    _push(ctx, [row.id for row in lost], now, reenqueue_after, RetryQueue.next_retry_at > now)
    moved = _enqueue(ctx.redis, _by_queue(lost))
    log.warning("sweeper.retries_relayed", extra={"count": moved, "reason": "job lost"})
    return moved


def expire_leases(ctx: SweepCtx) -> int:
    """Deliveries `delivering` past their lease: the worker died (or stalled) mid-send.

    The lost send counts as an attempt (`lease_expired`): the target may have received it. While
    the endpoint's retry policy allows another, the delivery goes back to `retrying`, due now;
    after its last attempt it is `dead` with the reason LEASE_LOST_REASON, so a delivery that
    kills its worker every time ends in the dead letters instead of looping (replay brings it
    back like any other).
    """
    now = clock.now(ctx.engine)
    expired = and_(
        WebhookDelivery.status == DeliveryStatus.DELIVERING,
        WebhookDelivery.lease_expires_at < now,
    )
    with ctx.engine.begin() as conn:
        rows = conn.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.attempts,
                WebhookDelivery.endpoint,
                WebhookDelivery.event_id,
                WebhookDelivery.tenant_id,
            )
            .where(expired)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        registry = EndpointRegistry(ctx.engine, ctx.redis)
        registry.refresh()
        dead = [row for row in rows if _exhausted(registry, row.endpoint, row.attempts + 1)]
        again = [row for row in rows if row not in dead]
        ids = [row.id for row in rows]
        for status, group, next_at in (
            (DeliveryStatus.RETRYING, again, now),
            (DeliveryStatus.DEAD, dead, None),
        ):
            if group:
                conn.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([row.id for row in group]), expired)
                    .values(
                        status=status,
                        attempts=WebhookDelivery.attempts + 1,
                        lease_expires_at=None,
                        next_attempt_at=next_at,
                        last_error=LEASE_LOST_ERROR,
                        updated_at=now,
                    )
                )
        if dead:
            _dead_letters(conn, dead, now)
        conn.execute(delete(RetryQueue).where(RetryQueue.delivery_id.in_(ids)))
        if again:
            conn.execute(
                insert(RetryQueue),
                [
                    {
                        "delivery_id": row.id,
                        "next_retry_at": now,
                        "attempt": row.attempts + 1,
                        "reason": "lease_expired",
                        "created_at": now,
                    }
                    for row in again
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
                    "outcome": "dead" if row in dead else "retry",
                }
                for row in rows
            ],
        )
    for row in rows:
        log.warning(
            "delivery.lease_expired",
            extra={
                "delivery_id": row.id,
                "attempt": row.attempts + 1,
                "status": "dead" if row in dead else "retrying",
            },
        )
    return len(rows)


def _exhausted(registry: EndpointRegistry, endpoint: str, attempt: int) -> bool:
    """Whether `attempt` (a lost one) was the endpoint's last allowed attempt."""
    config = registry.endpoint(endpoint)
    if config is None:
        return False  # the delivery job itself makes it dead, naming the configuration problem
    return next_delay(attempt, policy_for(config.kind, config.retry)) is None


def _dead_letters(conn: Connection, rows: list[Any], now: datetime) -> None:
    sources = dict(
        conn.execute(
            select(IntegrationEvent.id, IntegrationEvent.source).where(
                IntegrationEvent.id.in_({row.event_id for row in rows})
            )
        ).all()
    )
    dead_letters.create_many(
        conn,
        [
            dead_letters.new_row(
                tenant_id=row.tenant_id,
                event_id=row.event_id,
                delivery_id=row.id,
                source=sources.get(row.event_id, "?"),
                endpoint=row.endpoint,
                stage=DeadLetterStage.DELIVERY,
                reason=LEASE_LOST_REASON,
                last_error=LEASE_LOST_ERROR,
                attempts=row.attempts + 1,
                now=now,
            )
            for row in rows
        ],
    )
    for row in rows:
        conn.execute(
            update(IntegrationEvent)
            .where(IntegrationEvent.id == row.event_id)
            .values(
                status=EventStatus.FAILED,
                error=f"delivery {row.id} to {row.endpoint}: {LEASE_LOST_REASON}",
                updated_at=now,
            )
        )


def relay_pending(
    ctx: SweepCtx, *, stale_after: float = PENDING_STALE_AFTER, grace: float = PENDING_GRACE
) -> int:
    """Deliveries `pending` with no schedule whose job was lost: enqueued again.

    Evidence, not age (hub.core.inflight): a delivery no job on a queue and no started job of a
    live worker carries, for `CONFIRM_AFTER` seconds in a row, goes to its queue again; one that
    waits behind a backlog is never enqueued twice. `grace` covers the moment between a
    delivery's insert and its job's enqueue. Safety net: one that no waiting job carries and
    that has not moved for `stale_after` seconds goes again too.
    """
    # read before the rows: a job that ends in between leaves them taken
    jobs = ctx.inflight.carried(ctx.redis)
    now = clock.now(ctx.engine)
    scheduled = select(RetryQueue.delivery_id).where(RetryQueue.delivery_id == WebhookDelivery.id)
    waiting = and_(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.updated_at < now - timedelta(seconds=grace),
        ~scheduled.exists(),
    )
    with ctx.engine.connect() as conn:
        # ids only, from the (status, next_attempt_at) index: a backlog costs no row reads
        pending = conn.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING, ~scheduled.exists())
            .order_by(WebhookDelivery.id)  # oldest first: ids sort by creation time
            .limit(BATCH)
        ).all()
        # the rule reads only the rows of deliveries no waiting job carries: few, usually
        unwaited = [i for i in pending if i not in jobs.waiting]
        rows: list[Any] = []
        for start in range(0, len(unwaited), DETAILS_CHUNK):
            rows += conn.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.queue,
                    WebhookDelivery.endpoint,
                    WebhookDelivery.updated_at,
                ).where(WebhookDelivery.id.in_(unwaited[start : start + DETAILS_CHUNK]), waiting)
            ).all()
    confirmed = Suspects(ctx.redis, "deliveries").confirm(r.id for r in rows if r.id not in jobs)
    cutoff = now - timedelta(seconds=stale_after)
    stale = {r.id for r in rows if r.updated_at < cutoff}
    lost = [r for r in rows if r.id in confirmed or r.id in stale]
    if not lost:
        return 0
    with ctx.engine.begin() as conn:  # the safety net's clock restarts
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([row.id for row in lost]), waiting)
            .values(updated_at=now)
        )
    by_queue: dict[str, list[str]] = defaultdict(list)
    for row in sorted(lost, key=lambda r: r.endpoint):  # each job's batch goes to one target
        by_queue[row.queue].append(row.id)
    moved = _enqueue(ctx.redis, by_queue)
    reason = "job lost" if confirmed else "waited too long"
    log.warning("sweeper.pending_relayed", extra={"count": moved, "reason": reason})
    return moved
