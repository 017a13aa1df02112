"""Dead letters: the queryable registry of what hub gave up on, and why.

A row names its stage (ingest, mapping, delivery), the reason, the last error and the attempts
made. The CLI (`hub dead-letters`) and the admin API call these same functions: list, get,
discard, and `requeue` (one new attempt of the same delivery, same webhook-id, through the
sweeper). Replaying an event through today's mappings is the replay module's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.orm import Session

from hub import ids
from hub.errors import BadRequest, DeadLetterClosed, DeadLetterNotFound
from hub.models import (
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    Tenant,
    WebhookDelivery,
    utcnow,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetterFilter:
    status: DeadLetterStatus | None = DeadLetterStatus.OPEN
    stage: DeadLetterStage | None = None
    source: str | None = None
    endpoint: str | None = None
    tenant_id: int | None = None
    tenant: str | None = None  # slug
    since: datetime | None = None
    until: datetime | None = None


def new_row(
    *,
    tenant_id: int,
    event_id: str,
    source: str,
    stage: DeadLetterStage,
    reason: str,
    delivery_id: str | None = None,
    endpoint: str | None = None,
    last_error: str | None = None,
    attempts: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A dead_letter row as a dict (for `create_many`)."""
    return {
        "id": ids.new_id(ids.DEAD_LETTER),
        "tenant_id": tenant_id,
        "event_id": event_id,
        "delivery_id": delivery_id,
        "source": source,
        "endpoint": endpoint,
        "stage": stage,
        "status": DeadLetterStatus.OPEN,
        "reason": reason[:2000],
        "last_error": last_error[:2000] if last_error else None,
        "attempts": attempts,
        "created_at": now or utcnow(),
    }


def create_many(conn: Connection | Session, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Insert dead letters in one statement (inside the caller's transaction); returns ids."""
    if rows:
        conn.execute(insert(DeadLetter), list(rows))
    return [row["id"] for row in rows]


def create(session: Session, **fields: Any) -> DeadLetter:
    """Record one dead letter (fields as `new_row` takes them) and return it."""
    letter = DeadLetter(**new_row(**fields))
    session.add(letter)
    session.flush()
    return letter


def list_dead_letters(
    session: Session,
    where: DeadLetterFilter | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[DeadLetter]:
    """Dead letters matching `where`, newest first."""
    query = select(DeadLetter)
    for clause in clauses(where or DeadLetterFilter()):
        query = query.where(clause)
    query = query.order_by(DeadLetter.created_at.desc(), DeadLetter.id.desc())
    query = query.limit(max(1, min(limit, MAX_LIMIT))).offset(max(offset, 0))
    return list(session.scalars(query))


def clauses(where: DeadLetterFilter) -> list[Any]:
    """WHERE clauses selecting the dead letters `where` describes."""
    clauses: list[Any] = []
    if where.status is not None:
        clauses.append(DeadLetter.status == where.status)
    if where.stage is not None:
        clauses.append(DeadLetter.stage == where.stage)
    if where.source is not None:
        clauses.append(DeadLetter.source == where.source)
    if where.endpoint is not None:
        clauses.append(DeadLetter.endpoint == where.endpoint)
    if where.tenant_id is not None:
        clauses.append(DeadLetter.tenant_id == where.tenant_id)
    if where.tenant is not None:
        clauses.append(
            DeadLetter.tenant_id.in_(select(Tenant.id).where(Tenant.slug == where.tenant))
        )
    if where.since is not None:
        clauses.append(DeadLetter.created_at >= where.since)
    if where.until is not None:
        clauses.append(DeadLetter.created_at < where.until)
    return clauses


def get(session: Session, dead_letter_id: str, *, tenant_id: int | None = None) -> DeadLetter:
    """One dead letter; DeadLetterNotFound when absent (or another tenant's, if `tenant_id`)."""
    letter = session.get(DeadLetter, dead_letter_id)
    if letter is None or (tenant_id is not None and letter.tenant_id != tenant_id):
        raise DeadLetterNotFound(f"dead letter {dead_letter_id} not found")
    return letter


def discard(session: Session, dead_letter_id: str, *, tenant_id: int | None = None) -> DeadLetter:
    """Close an open dead letter without replaying it (an already closed one is left as is)."""
    letter = get(session, dead_letter_id, tenant_id=tenant_id)
    if letter.status == DeadLetterStatus.OPEN:
        letter.status = DeadLetterStatus.DISCARDED
        letter.resolved_at = utcnow()
        session.flush()
    return letter


def requeue(session: Session, dead_letter_id: str, *, tenant_id: int | None = None) -> DeadLetter:
    """A new attempt of a dead delivery (the same delivery: the same webhook-id), due now.

    The delivery becomes `retrying` with a `retry_queue` row due now (the sweeper enqueues it on
    `retry`; nothing here needs Redis); its attempts count goes on, so a failure of this one
    attempt makes it dead again. The dead letter is closed as replayed, and the event leaves
    `failed` when no other dead letter of it is open. Only delivery-stage letters qualify.
    """
    letter = get(session, dead_letter_id, tenant_id=tenant_id)
    if letter.status != DeadLetterStatus.OPEN:
        raise DeadLetterClosed(f"dead letter {letter.id} is already {letter.status.value}")
    if letter.stage != DeadLetterStage.DELIVERY or letter.delivery_id is None:
        raise BadRequest(f"dead letter {letter.id} is not a delivery: replay its event instead")
    now = utcnow()
    delivery = session.get(WebhookDelivery, letter.delivery_id, with_for_update=True)
    if delivery is None:
        raise DeadLetterNotFound(f"delivery {letter.delivery_id} of {letter.id} is gone")
    delivery.status = DeliveryStatus.RETRYING
    delivery.next_attempt_at = now
    delivery.lease_expires_at = None
    session.execute(delete(RetryQueue).where(RetryQueue.delivery_id == delivery.id))
    session.add(
        RetryQueue(
            delivery_id=delivery.id,
            next_retry_at=now,
            attempt=delivery.attempts,
            reason="replay",
            created_at=now,
        )
    )
    letter.status = DeadLetterStatus.REPLAYED
    letter.resolved_at = now
    session.flush()
    others_open = session.scalar(
        select(func.count()).where(
            DeadLetter.event_id == letter.event_id, DeadLetter.status == DeadLetterStatus.OPEN
        )
    )
    if not others_open:
        session.execute(
            update(IntegrationEvent)
            .where(
                IntegrationEvent.id == letter.event_id,
                IntegrationEvent.status == EventStatus.FAILED,
            )
            .values(status=EventStatus.PROCESSED, error=None, updated_at=now)
        )
    return letter


def mark_replayed(session: Session, dead_letter_id: str) -> DeadLetter:
    """Close a dead letter because it was sent again (called by the replay code)."""
    letter = get(session, dead_letter_id)
    letter.status = DeadLetterStatus.REPLAYED
    letter.resolved_at = utcnow()
    session.flush()
    return letter


def count(session: Session, where: DeadLetterFilter | None = None) -> int:
    """How many dead letters match `where` (for paging and bulk replay's progress)."""
    query = select(func.count()).select_from(DeadLetter)
    return int(session.scalar(query.where(*clauses(where or DeadLetterFilter()))) or 0)


def count_open(session: Session) -> int:
    """Open dead letters (for /status)."""
    return int(
        session.scalar(select(func.count()).where(DeadLetter.status == DeadLetterStatus.OPEN)) or 0
    )
