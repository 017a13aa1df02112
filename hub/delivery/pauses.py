"""Pausing an endpoint: its deliveries wait, untried and charged no attempt, until it resumes.

    pause    a row in `endpoint_pauses` (durable: a restart or a Redis flush keeps it)
    pick-up  `deliver_batch` parks a delivery to a paused endpoint instead of leasing it: status
             `paused`, its `retry_queue` row gone, so nothing enqueues it again
    resume   the row goes; the paused deliveries become `retrying` with `retry_queue` rows spread
             at the endpoint's rate limit (`rate_limit: 10/s`: one every 0.1 s), so the sweeper
             releases them no faster than the endpoint takes them

Parking is conditional on the pause row still being there, in the same statement, so a resume
racing a worker never leaves a delivery parked behind an endpoint that is no longer paused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from limits import parse
from sqlalchemy import Engine, delete, func, insert, select, update

from hub.core.models import (
    DeliveryStatus,
    EndpointPause,
    RetryQueue,
    WebhookDelivery,
    utcnow,
)
from hub.core.units import parse_rate

log = logging.getLogger("hub.delivery.pauses")

RELEASE_BATCH = 1000  # paused deliveries released per transaction


@dataclass(frozen=True)
class Pause:
    endpoint: str
    paused_by: str | None
    paused_at: datetime


def paused(engine: Engine) -> dict[str, Pause]:
    """Every paused endpoint, by name."""
    with engine.connect() as conn:
        rows = conn.execute(select(EndpointPause)).all()
    return {row.endpoint: Pause(row.endpoint, row.paused_by, row.paused_at) for row in rows}


def pause(engine: Engine, endpoint: str, *, by: str | None = None) -> bool:
    """Pause `endpoint`; False when it was paused already."""
    with engine.begin() as conn:
        found = conn.scalar(
            select(EndpointPause.endpoint).where(EndpointPause.endpoint == endpoint)
        )
        if found is not None:
            return False
        conn.execute(
            insert(EndpointPause).values(endpoint=endpoint, paused_by=by, paused_at=utcnow())
        )
    log.info("endpoint.paused", extra={"endpoint": endpoint})
    return True


def spacing(rate_limit: str | None) -> float:
    """Seconds between two released deliveries at `rate_limit` (0: no limit)."""
    if not rate_limit:
        return 0.0
    item = parse(parse_rate(rate_limit))
    return item.get_expiry() / item.amount


def resume(engine: Engine, endpoint: str, *, rate_limit: str | None = None) -> int:
    """Resume `endpoint` and release its paused deliveries; returns how many were released."""
    step = spacing(rate_limit)
    now = utcnow()
    released = 0
    with engine.begin() as conn:
        conn.execute(delete(EndpointPause).where(EndpointPause.endpoint == endpoint))
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(WebhookDelivery.id, WebhookDelivery.attempts)
                .where(
                    WebhookDelivery.endpoint == endpoint,
                    WebhookDelivery.status == DeliveryStatus.PAUSED,
                )
                .order_by(WebhookDelivery.id)  # oldest first
                .limit(RELEASE_BATCH)
                .with_for_update()
            ).all()
            if not rows:
                break
            due = [now + timedelta(seconds=step * (released + i)) for i in range(len(rows))]
            for row, when in zip(rows, due, strict=True):
                conn.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == row.id,
                        WebhookDelivery.status == DeliveryStatus.PAUSED,
                    )
                    .values(status=DeliveryStatus.RETRYING, next_attempt_at=when, updated_at=now)
                )
            ids = [row.id for row in rows]
            conn.execute(delete(RetryQueue).where(RetryQueue.delivery_id.in_(ids)))
            conn.execute(
                insert(RetryQueue),
                [
                    {
                        "delivery_id": row.id,
                        "next_retry_at": when,
                        "attempt": row.attempts,
                        "reason": "resumed",
                        "created_at": now,
                    }
                    for row, when in zip(rows, due, strict=True)
                ],
            )
            released += len(rows)
    log.info("endpoint.resumed", extra={"endpoint": endpoint, "count": released})
    return released


def waiting(engine: Engine, endpoints: Sequence[str]) -> dict[str, int]:
    """How many deliveries each endpoint holds `paused` (on the endpoint-and-status index)."""
    if not endpoints:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.endpoint, func.count())
            .where(
                WebhookDelivery.endpoint.in_(list(endpoints)),
                WebhookDelivery.status == DeliveryStatus.PAUSED,
            )
            .group_by(WebhookDelivery.endpoint)
        ).all()
    return {name: int(count) for name, count in rows}


def hold_back(engine: Engine, heads: Sequence[Any], takeable: Any) -> tuple[list[Any], int]:
    """Of the rows (`id`, `endpoint`) about to be leased, park those of a paused endpoint.

    Returns the rows still to lease and how many were parked. `takeable` is the caller's
    condition for a delivery it may take, so one leased by another worker is left alone."""
    names = {row.endpoint for row in heads}
    with engine.connect() as conn:
        held = set(
            conn.scalars(select(EndpointPause.endpoint).where(EndpointPause.endpoint.in_(names)))
        )
    if not held:
        return list(heads), 0
    ids = [row.id for row in heads if row.endpoint in held]
    still_paused = select(EndpointPause.endpoint).where(
        EndpointPause.endpoint == WebhookDelivery.endpoint
    )
    now = utcnow()
    with engine.begin() as conn:
        parked = conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), takeable, still_paused.exists())
            .values(status=DeliveryStatus.PAUSED, lease_expires_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        conn.execute(
            delete(RetryQueue).where(
                RetryQueue.delivery_id.in_(ids),
                RetryQueue.delivery_id.in_(
                    select(WebhookDelivery.id).where(
                        WebhookDelivery.id.in_(ids),
                        WebhookDelivery.status == DeliveryStatus.PAUSED,
                    )
                ),
            )
        )
    if parked:
        log.info("delivery.paused", extra={"count": parked, "endpoint": ",".join(sorted(held))})
    return [row for row in heads if row.endpoint not in held], int(parked or 0)
