"""What became of each delivery of a group: decided, written in one transaction, logged.

    decide (pure: delivered, retrying with its next due time, or dead with its reason) · under a
    lock on the rows still leased with the group's token: one multi-row INSERT of the attempts,
    the statuses, the `retry_queue` rows (the schedule lives in the database, so it survives a
    Redis flush), the dead letters (the event becomes `failed`) · a log line and a metric each

Every write is conditional on still holding the lease, so a worker that lost its lease (it
stalled past it and the sweeper handed the delivery on) changes nothing but its attempts.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from hub.core import clock, dead_letters, metrics
from hub.core.context import JobContext
from hub.core.inserts import insert_rows
from hub.core.models import (
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    utcnow,
)
from hub.delivery.adapters import Outcome, OutgoingRequest, Verdict
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.retry import next_delay, policy_for

log = logging.getLogger("hub.delivery.jobs")  # the deliver job's lines keep one logger


@dataclass
class Item:
    """One leased delivery on its way."""

    id: str
    event_id: str
    tenant_id: int
    endpoint: str
    queue: str
    attempts: int
    correlation_id: str | None
    last_error: str | None = None
    config: EndpointConfig | None = None
    request: OutgoingRequest | None = None
    outcome: Outcome | None = None
    started_at: datetime | None = None
    duration_ms: int = 0
    defer_wait: float | None = None  # seconds from the decision until it is tried again
    defer_reason: str | None = None

    @property
    def attempt(self) -> int:
        return self.attempts + 1


# the statements of every finish, built once (building one costs more CPU than running it)
_HELD = (
    select(WebhookDelivery.id)
    .where(
        WebhookDelivery.id.in_(bindparam("b_ids", expanding=True)),
        WebhookDelivery.status == DeliveryStatus.DELIVERING,
        WebhookDelivery.lease_expires_at == bindparam("b_token"),
    )
    .with_for_update()
)
_DELIVERED = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id.in_(bindparam("b_ids", expanding=True)))
    .values(
        status=DeliveryStatus.DELIVERED,
        attempts=WebhookDelivery.attempts + 1,
        delivered_at=bindparam("b_now"),
        lease_expires_at=None,
        next_attempt_at=None,
        last_error=None,
        updated_at=bindparam("b_now"),
    )
)
_UNQUEUE = delete(RetryQueue).where(RetryQueue.delivery_id.in_(bindparam("b_ids", expanding=True)))


def finish_safely(ctx: JobContext, items: list[Item], token: datetime) -> Counter[str]:
    try:
        return _finish(ctx, items, token)
    except OperationalError:  # a deadlock or a lost connection: the transaction rolled back
        log.warning("delivery.finish_retried", extra={"count": len(items)})
        return _finish(ctx, items, token)


@dataclass
class Decision:
    item: Item
    status: DeliveryStatus
    attempts: int
    next_at: datetime | None = None
    reason: str | None = None  # retry_queue reason, or the dead letter's reason
    error: str | None = None


def _decide(item: Item, now: datetime) -> Decision:
    if item.outcome is None:  # deferred: no attempt used
        return Decision(
            item,
            DeliveryStatus.RETRYING,
            item.attempts,
            now + timedelta(seconds=item.defer_wait or 0.0),
            item.defer_reason,
        )
    outcome = item.outcome
    error = outcome.error or outcome.error_class
    sent = item.started_at is not None
    attempts = item.attempt if sent else item.attempts
    if outcome.verdict == Verdict.DELIVERED:
        return Decision(item, DeliveryStatus.DELIVERED, attempts)
    if outcome.verdict == Verdict.DEAD:
        return Decision(
            item, DeliveryStatus.DEAD, attempts, reason=f"permanent: {error}", error=error
        )
    assert item.config is not None
    delay = next_delay(
        item.attempt, policy_for(item.config.kind, item.config.retry), outcome.retry_after
    )
    if delay is None:
        reason = f"gave up after {attempts} attempts: {error}"
        return Decision(item, DeliveryStatus.DEAD, attempts, reason=reason, error=error)
    return Decision(
        item,
        DeliveryStatus.RETRYING,
        attempts,
        next_at=now + timedelta(seconds=delay),
        reason=outcome.error_class,
        error=error,
    )


def _finish(ctx: JobContext, items: list[Item], token: datetime) -> Counter[str]:
    now = clock.now(ctx.engine)  # due times are the sweeper's to compare: the database's clock
    decisions = [_decide(item, now) for item in items]
    counts: Counter[str] = Counter()
    with ctx.engine.begin() as conn:
        held = set(conn.scalars(_HELD, {"b_ids": [d.item.id for d in decisions], "b_token": token}))
        _insert_attempts(conn, decisions)
        mine = [d for d in decisions if d.item.id in held]
        for lost in (d for d in decisions if d.item.id not in held):
            log.warning("delivery.lease_lost", extra={"delivery_id": lost.item.id})
            counts["lease_lost"] += 1
        _write_statuses(conn, mine, now)
        _write_retry_queue(conn, mine)
        _write_dead(conn, [d for d in mine if d.status == DeliveryStatus.DEAD], now)
    for decision in mine:
        outcome = _log_decision(decision, now)
        counts[outcome] += 1
        seconds = decision.item.duration_ms / 1000 if decision.item.started_at else None
        metrics.delivery_attempted(decision.item.endpoint, outcome, seconds)
    return counts


def _insert_attempts(conn: Connection, decisions: list[Decision]) -> None:
    rows = []
    for d in decisions:
        item, outcome = d.item, d.item.outcome
        if outcome is None or item.started_at is None:
            continue
        rows.append(
            {
                "delivery_id": item.id,
                "number": item.attempt,
                "started_at": item.started_at,
                "duration_ms": item.duration_ms,
                "status_code": outcome.status_code,
                "response_excerpt": outcome.excerpt,
                "error_class": outcome.error_class,
                "outcome": "retry" if d.status == DeliveryStatus.RETRYING else d.status.value,
            }
        )
    insert_rows(conn, DeliveryAttempt.__table__, rows)  # type: ignore[arg-type]


def _write_statuses(conn: Connection, mine: list[Decision], now: datetime) -> None:
    delivered = [d for d in mine if d.status == DeliveryStatus.DELIVERED]
    if delivered:
        conn.execute(_DELIVERED, {"b_ids": [d.item.id for d in delivered], "b_now": now})
    others = [d for d in mine if d.status != DeliveryStatus.DELIVERED]
    if others:
        table = cast(Table, WebhookDelivery.__table__)
        conn.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                last_error=bindparam("b_error"),
                lease_expires_at=None,
                updated_at=now,
            ),
            [
                {
                    "b_id": d.item.id,
                    "b_status": d.status,
                    "b_attempts": d.attempts,
                    "b_next": d.next_at,
                    "b_error": d.error if d.error is not None else d.item.last_error,
                }
                for d in others
            ],
        )


def _write_retry_queue(conn: Connection, mine: list[Decision]) -> None:
    if not mine:
        return
    conn.execute(_UNQUEUE, {"b_ids": [d.item.id for d in mine]})
    rows = [
        {
            "delivery_id": d.item.id,
            "next_retry_at": d.next_at,
            "attempt": d.attempts,
            "reason": (d.reason or "")[:255] or None,
            "created_at": utcnow(),
        }
        for d in mine
        if d.status == DeliveryStatus.RETRYING and d.next_at is not None
    ]
    if rows:
        conn.execute(insert(RetryQueue), rows)


def _write_dead(conn: Connection, dead: list[Decision], now: datetime) -> None:
    if not dead:
        return
    event_ids = sorted({d.item.event_id for d in dead})
    sources = dict(
        conn.execute(
            select(IntegrationEvent.id, IntegrationEvent.source).where(
                IntegrationEvent.id.in_(event_ids)
            )
        ).all()
    )
    dead_letters.create_many(
        conn,
        [
            dead_letters.new_row(
                tenant_id=d.item.tenant_id,
                event_id=d.item.event_id,
                delivery_id=d.item.id,
                source=sources.get(d.item.event_id, "?"),
                endpoint=d.item.endpoint,
                stage=DeadLetterStage.DELIVERY,
                reason=d.reason or "dead",
                last_error=d.error,
                attempts=d.attempts,
                now=now,
            )
            for d in dead
        ],
    )
    table = cast(Table, IntegrationEvent.__table__)
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(status=EventStatus.FAILED, error=bindparam("b_error"), updated_at=now),
        [
            {
                "b_id": d.item.event_id,
                "b_error": f"delivery {d.item.id} to {d.item.endpoint}: {d.reason}",
            }
            for d in dead
        ],
    )


def _log_decision(d: Decision, now: datetime) -> str:
    item, outcome = d.item, d.item.outcome
    if outcome is None:
        delay = (d.next_at - now).total_seconds() if d.next_at else None
        log.info(
            "delivery.deferred",
            extra={
                "delivery_id": item.id,
                "endpoint": item.endpoint,
                "reason": d.reason,
                "delay_s": delay,
                "correlation_id": item.correlation_id,
            },
        )
        return "deferred"
    fields = {
        "delivery_id": item.id,
        "event_id": item.event_id,
        "endpoint": item.endpoint,
        "attempt": item.attempt,
        "status_code": outcome.status_code,
        "duration_ms": item.duration_ms,
        "error_class": outcome.error_class,
        "correlation_id": item.correlation_id,
    }
    if d.status == DeliveryStatus.DELIVERED:
        log.info("delivery.delivered", extra=fields)
        return "delivered"
    if d.status == DeliveryStatus.DEAD:
        log.warning("delivery.dead", extra=fields)  # the reason may quote the target: not logged
        return "dead"
    delay = (d.next_at - now).total_seconds() if d.next_at else None
    log.info("delivery.retry", extra=fields | {"delay_s": delay})
    return "retrying"
