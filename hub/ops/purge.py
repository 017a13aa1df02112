"""Retention: `hub purge --older-than 90d` drops old payloads and keeps the rows.

What goes: the encrypted payload and request headers of events that finished well (`processed`,
`no_route`) and the encrypted request of deliveries that are finished (`delivered`, or `dead` with
no open dead letter), created before the cutoff. Rows, statuses, attempts and counts stay, so
history and `/status` are unchanged; only the personal data goes (LGPD). Failed events and open
dead letters keep theirs, so they can still be replayed.

Ids are time-ordered, so "created before the cutoff" is a range of the primary key: each batch
reads and updates at most `batch_size` rows by key in its own short transaction, and never holds
locks on a table for long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, exists, null, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from hub.core import ids
from hub.core.models import (
    DeadLetter,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    WebhookDelivery,
    utcnow,
)

log = logging.getLogger("hub.ops.purge")

DEFAULT_BATCH = 1000
FINISHED_EVENTS = (EventStatus.PROCESSED, EventStatus.NO_ROUTE)


@dataclass
class PurgeResult:
    cutoff: datetime
    events: int = 0
    deliveries: int = 0
    dry_run: bool = False


Progress = Callable[[str, int], None]


def _cutoff_ms(cutoff: datetime) -> int:
    epoch = datetime(1970, 1, 1)
    return int((cutoff - epoch).total_seconds() * 1000)


def purge(
    engine: Engine,
    older_than: timedelta,
    *,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> PurgeResult:
    """Null the payloads described above; returns how many rows lost theirs (or would)."""
    cutoff = (now or utcnow()) - older_than
    result = PurgeResult(cutoff=cutoff, dry_run=dry_run)
    event_ceiling = ids.floor_id(ids.EVENT, _cutoff_ms(cutoff))
    delivery_ceiling = ids.floor_id(ids.DELIVERY, _cutoff_ms(cutoff))

    event_done = and_(
        IntegrationEvent.status.in_(FINISHED_EVENTS),
        or_(
            IntegrationEvent.payload.is_not(None),
            IntegrationEvent.sealed_headers.is_not(None),
            IntegrationEvent.headers.is_not(None),
        ),
    )
    result.events = _sweep(
        engine,
        IntegrationEvent.id,
        (IntegrationEvent.payload, IntegrationEvent.sealed_headers, IntegrationEvent.headers),
        event_ceiling,
        event_done,
        batch_size,
        dry_run,
        lambda n: progress("events", n) if progress else None,
    )
    open_letter = exists().where(
        DeadLetter.delivery_id == WebhookDelivery.id, DeadLetter.status == DeadLetterStatus.OPEN
    )
    delivery_done = and_(
        WebhookDelivery.request.is_not(None),
        or_(
            WebhookDelivery.status == DeliveryStatus.DELIVERED,
            and_(WebhookDelivery.status == DeliveryStatus.DEAD, ~open_letter),
        ),
    )
    result.deliveries = _sweep(
        engine,
        WebhookDelivery.id,
        (WebhookDelivery.request,),
        delivery_ceiling,
        delivery_done,
        batch_size,
        dry_run,
        lambda n: progress("deliveries", n) if progress else None,
    )
    log.info("purge.done", extra={"count": result.events + result.deliveries})
    return result


def _sweep(
    engine: Engine,
    key: InstrumentedAttribute[str],
    columns: tuple[InstrumentedAttribute[Any], ...],
    ceiling: str,
    condition: ColumnElement[bool],
    batch_size: int,
    dry_run: bool,
    progress: Callable[[int], None],
) -> int:
    """Walk the primary key below `ceiling` in batches, nulling `columns` where `condition`."""
    table = key.class_.__table__
    total = 0
    after = ""
    while True:
        with engine.begin() as conn:
            window = list(
                conn.scalars(
                    select(key).where(key > after, key < ceiling).order_by(key).limit(batch_size)
                )
            )
            if not window:
                return total
            after = window[-1]
            targets = list(conn.scalars(select(key).where(key.in_(window), condition)))
            if targets and not dry_run:
                conn.execute(
                    update(table)
                    .where(key.in_(targets), condition)
                    .values({column.key: null() for column in columns})  # SQL NULL, not JSON null
                )
        total += len(targets)
        if targets:
            progress(total)
        if len(window) < batch_size:
            return total
