"""Dead letters: the queryable registry of what hub gave up on, and why.

A row names its stage (ingest, mapping, delivery), the reason, the last error and the attempts
made. There is at most one open dead letter per (delivery or event, stage): `open_key` holds
"stage:id" while the letter is open (a unique index) and NULL once it is replayed or discarded.
`create_many` is the one place that inserts them: a second give-up on the same thing (two
workers routing one event, a replay that fails again) refreshes the open letter's reason, last
error and attempts instead of adding a row. The CLI (`hub dead-letters`) and the admin API call
these same functions: list, get, discard. Replaying (a new attempt of the same delivery, or the
event through today's mappings) is hub.ops.replay's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core import audit, ids
from hub.core.errors import DeadLetterNotFound
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    Tenant,
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


def open_key(stage: DeadLetterStage | str, event_id: str, delivery_id: str | None) -> str:
    """The unique key of an open dead letter: its stage and its delivery (or event) id."""
    return f"{DeadLetterStage(stage).value}:{delivery_id or event_id}"


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
        "open_key": open_key(stage, event_id, delivery_id),
    }


def create_many(conn: Connection | Session, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Open dead letters (rows from `new_row`) inside the caller's transaction; returns their ids.

    A row whose (delivery or event, stage) already has an open letter is folded into it (the
    reason, last error and attempts are the new ones) and that letter's id is returned. Two
    writers racing past the look-up meet the unique index: the loser's statement fails alone
    (its transaction goes on), and it looks again and folds.
    """
    rows = list({row["open_key"]: row for row in rows}.values())  # the last one per key wins
    if not rows:
        return []
    try:
        return _upsert(conn, rows)
    except IntegrityError:  # another transaction opened one of them after our look-up
        return _upsert(conn, rows, latest=True)


def _upsert(
    conn: Connection | Session, rows: list[dict[str, Any]], *, latest: bool = False
) -> list[str]:
    keys = [row["open_key"] for row in rows]
    query = select(DeadLetter.open_key, DeadLetter.id).where(DeadLetter.open_key.in_(keys))
    if latest:  # a locking read sees the rows committed since our snapshot (InnoDB)
        query = query.with_for_update()
    existing = dict(conn.execute(query).all())
    for row in rows:
        letter_id = existing.get(row["open_key"])
        if letter_id is not None:
            conn.execute(
                update(DeadLetter)
                .where(DeadLetter.id == letter_id)
                .values(
                    reason=row["reason"], last_error=row["last_error"], attempts=row["attempts"]
                )
            )
    fresh = [row for row in rows if row["open_key"] not in existing]
    if fresh:
        conn.execute(insert(DeadLetter), fresh)
    return [existing.get(row["open_key"], row["id"]) for row in rows]


def create(session: Session, **fields: Any) -> DeadLetter:
    """Record one dead letter (fields as `new_row` takes them) and return it."""
    [letter_id] = create_many(session, [new_row(**fields)])
    letter = session.get(DeadLetter, letter_id)
    assert letter is not None
    return letter


def resolve_values(status: DeadLetterStatus, now: datetime | None = None) -> dict[str, Any]:
    """The columns that close a dead letter (`status` replayed or discarded): its key is freed."""
    return {"status": status, "resolved_at": now or utcnow(), "open_key": None}


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


def discard(
    session: Session, dead_letter_id: str, *, actor: str, tenant_id: int | None = None
) -> DeadLetter:
    """Close an open dead letter without replaying it (an already closed one is left as is);
    `actor` (hub.core.audit) goes into the audit log with it."""
    letter = get(session, dead_letter_id, tenant_id=tenant_id)
    if letter.status == DeadLetterStatus.OPEN:
        for name, value in resolve_values(DeadLetterStatus.DISCARDED).items():
            setattr(letter, name, value)
        session.flush()
        audit.record(session, actor, "discard", tenant_id=letter.tenant_id, target=letter.id)
    return letter


def mark_replayed(session: Session, dead_letter_id: str) -> DeadLetter:
    """Close a dead letter because it was sent again (called by the replay code)."""
    letter = get(session, dead_letter_id)
    for name, value in resolve_values(DeadLetterStatus.REPLAYED).items():
        setattr(letter, name, value)
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
