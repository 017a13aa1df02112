"""The outbox relay, run by the sweeper: events whose `process_events` job never reached Redis,
or whose job was lost, go to their queues again.

    relay_received   events left `received` for `RELAY_AFTER` s (Redis was down at ingest)
    requeue_lost     events `queued`/`processing` for `REQUEUE_AFTER` s, or all at once when the
                     Redis sentinel key vanished (a flush, a restart without persistence)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from hub.core import clock
from hub.core.context import SweepContext
from hub.core.errors import DatabaseUnavailable, RedisUnavailable
from hub.core.models import EventStatus
from hub.core.queues import PROCESS_EVENTS, SENTINEL_KEY, enqueue_ids
from hub.ingress.events import JOB_BATCH, enqueue_events, events_table, unavailable

log = logging.getLogger("hub.ingress.relay")

RELAY_AFTER = 5.0  # seconds an event may stay `received` before the sweeper enqueues it
RELAY_LIMIT = 2000  # events the sweeper moves per sweep
REQUEUE_AFTER = 600.0  # seconds an event may stay `queued` before its job counts as lost


def relay_received(
    engine: Engine, redis: Redis, older_than: float = RELAY_AFTER, limit: int = RELAY_LIMIT
) -> int:
    """Enqueue events left `received` for more than `older_than` seconds; returns how many."""
    cutoff = clock.now(engine) - timedelta(seconds=older_than)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events_table.c.id, events_table.c.queue)
                .where(events_table.c.status == EventStatus.RECEIVED)
                .where(events_table.c.created_at <= cutoff)
                .order_by(events_table.c.created_at)
                .limit(limit)
            ).all()
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(unavailable("cannot read received events", exc)) from exc
    if not rows:
        return 0
    moved = enqueue_events(engine, redis, [(r.id, r.queue) for r in rows])
    log.info("events.relayed", extra={"count": moved})
    return moved


def requeue_lost(
    engine: Engine, redis: Redis, older_than: float = REQUEUE_AFTER, limit: int = RELAY_LIMIT
) -> int:
    """Enqueue again the events whose job may be lost; returns how many.

    A job is lost when Redis loses its data (a restart without persistence, a flush) or when a
    worker dies in the middle of it. An event still `queued` or `processing` after `older_than`
    seconds is enqueued again, and so is every such event at once when the sentinel key has
    vanished from Redis. Processing is idempotent, so a job that was only slow costs a no-op.
    """
    try:
        lost_data = bool(redis.set(SENTINEL_KEY, "1", nx=True))
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot check the Redis sentinel: {exc}") from exc
    now = clock.now(engine)
    # Redis lost its data: every waiting event (one clock's rounding later, for rows written
    # with a web host's clock); else the ones waiting longer than `older_than`
    cutoff = now + timedelta(seconds=1) if lost_data else now - timedelta(seconds=older_than)
    moved = 0
    while True:
        try:
            with engine.begin() as conn:
                rows = conn.execute(
                    select(events_table.c.id, events_table.c.queue)
                    .where(events_table.c.status.in_([EventStatus.QUEUED, EventStatus.PROCESSING]))
                    .where(events_table.c.updated_at <= cutoff)
                    .order_by(events_table.c.updated_at)
                    .limit(limit)
                ).all()
                if rows:  # the clock restarts: the next try is `older_than` from now
                    conn.execute(
                        update(events_table)
                        .where(events_table.c.id.in_([r.id for r in rows]))
                        .values(updated_at=now)
                    )
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(unavailable("cannot read queued events", exc)) from exc
        by_queue: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_queue[row.queue].append(row.id)
        for queue, event_ids in by_queue.items():
            enqueue_ids(redis, PROCESS_EVENTS, queue, event_ids, batch_size=JOB_BATCH)
        moved += len(rows)
        if len(rows) < limit or not lost_data:
            break
    if moved:
        reason = "redis lost its data" if lost_data else "queued too long"
        log.warning("events.requeued", extra={"count": moved, "reason": reason})
    return moved


def relay_events(ctx: SweepContext) -> int:
    """Sweeper task (outbox relay): events Redis missed at ingest go to their queues now, and
    events whose job was lost go again."""
    return relay_received(ctx.engine, ctx.redis) + requeue_lost(ctx.engine, ctx.redis)
