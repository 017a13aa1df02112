"""The outbox relay, run by the sweeper: events whose `process_events` job never reached Redis,
or whose job was lost, go to their queues again.

    relay_received   events left `received` for `RELAY_AFTER` s (Redis was down at ingest)
    requeue_lost     events `queued`/`processing` that no live RQ job carries (hub.core.inflight),
                     within seconds; all at once when the Redis sentinel key vanished (a flush, a
                     restart without persistence); a safety net after `REQUEUE_AFTER` s
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from hub.core import clock
from hub.core.context import SweepContext
from hub.core.errors import DatabaseUnavailable, RedisUnavailable
from hub.core.inflight import InFlight, Suspects, carried
from hub.core.models import EventStatus
from hub.core.queues import PROCESS_EVENTS, SENTINEL_KEY, enqueue_ids
from hub.ingress.events import JOB_BATCH, enqueue_events, events_table, unavailable

log = logging.getLogger("hub.ingress.relay")

RELAY_AFTER = 5.0  # seconds an event may stay `received` before the sweeper enqueues it
RELAY_LIMIT = 2000  # events the sweeper moves per sweep
REQUEUE_AFTER = 120.0  # safety net: seconds an event no waiting job carries may stay unmoved
EVIDENCE_LIMIT = 10_000  # waiting events checked against RQ's jobs per sweep, oldest first
DETAILS_CHUNK = 1000  # ids per IN list when the rule reads the rows of uncarried events
WAITING = (EventStatus.QUEUED, EventStatus.PROCESSING)


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
    engine: Engine,
    redis: Redis,
    older_than: float = REQUEUE_AFTER,
    limit: int = RELAY_LIMIT,
    inflight: InFlight | None = None,
) -> int:
    """Enqueue again the events whose job was lost; returns how many.

    Evidence, not age (hub.core.inflight): an event `queued` or `processing` that no job on a
    queue and no started job of a live worker carries, for `CONFIRM_AFTER` seconds in a row,
    lost its job (its worker was killed, Redis lost the job) and goes to its queue again. An
    event whose job waits behind a backlog is never enqueued twice, however long it waits.
    Safety net: an event that no waiting job carries and that has not moved for `older_than`
    seconds goes again too. When the sentinel key has vanished (a flush, a restart without
    persistence) every waiting event goes at once. Processing is idempotent: a job that was
    only slow costs a no-op. The sweeper passes its `inflight`, whose reads are incremental.
    """
    try:
        lost_data = bool(redis.set(SENTINEL_KEY, "1", nx=True))
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot check the Redis sentinel: {exc}") from exc
    if lost_data:
        return _requeue_all(engine, redis, limit)
    # read before the rows: a job that ends in between leaves its rows done
    jobs = inflight.carried(redis) if inflight is not None else carried(redis)
    now = clock.now(engine)
    try:
        with engine.connect() as conn:
            # ids only, from the (status, created_at) index: a backlog costs no row reads
            waiting = conn.scalars(
                select(events_table.c.id)
                .where(events_table.c.status.in_(WAITING))
                .order_by(events_table.c.created_at)
                .limit(EVIDENCE_LIMIT)
            ).all()
            # the rest of the rule reads only the events no waiting job carries: few, usually
            unwaited = [event_id for event_id in waiting if event_id not in jobs.waiting]
            rows = _details(conn, unwaited)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(unavailable("cannot read queued events", exc)) from exc
    confirmed = Suspects(redis, "events").confirm(i for i in unwaited if i not in jobs)
    cutoff = now - timedelta(seconds=older_than)
    stale = {r.id for r in rows if r.updated_at <= cutoff}
    lost = [r for r in rows if r.id in confirmed or r.id in stale][:limit]
    moved = _requeue(engine, redis, [(r.id, r.queue) for r in lost], now)
    if moved:
        reason = "job lost" if confirmed else "waited too long"
        log.warning("events.requeued", extra={"count": moved, "reason": reason})
    return moved


def _details(conn: Connection, event_ids: list[str]) -> list[Any]:
    """Queue and last move of the events still waiting, oldest move first."""
    rows: list[Any] = []
    for start in range(0, len(event_ids), DETAILS_CHUNK):
        rows.extend(
            conn.execute(
                select(events_table.c.id, events_table.c.queue, events_table.c.updated_at).where(
                    events_table.c.id.in_(event_ids[start : start + DETAILS_CHUNK]),
                    events_table.c.status.in_(WAITING),
                )
            ).all()
        )
    return sorted(rows, key=lambda r: r.updated_at)


def _requeue_all(engine: Engine, redis: Redis, limit: int) -> int:
    """Redis lost its data: every waiting event, at once (one clock's rounding later, for rows
    written with a web host's clock)."""
    moved = 0
    now = clock.now(engine)
    last = ""  # pages in id order: the rows requeued keep matching the cut-off
    while True:
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(events_table.c.id, events_table.c.queue)
                    .where(events_table.c.status.in_(WAITING))
                    .where(events_table.c.updated_at <= now + timedelta(seconds=1))
                    .where(events_table.c.id > last)
                    .order_by(events_table.c.id)
                    .limit(limit)
                ).all()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(unavailable("cannot read queued events", exc)) from exc
        moved += _requeue(engine, redis, [(r.id, r.queue) for r in rows], now)
        if len(rows) < limit:
            break
        last = rows[-1].id
    if moved:
        log.warning("events.requeued", extra={"count": moved, "reason": "redis lost its data"})
    return moved


def _requeue(engine: Engine, redis: Redis, events: list[tuple[str, str]], now: datetime) -> int:
    """Back to `queued` (a dead job's lease dropped), `updated_at` now, then enqueued."""
    if not events:
        return 0
    try:
        with engine.begin() as conn:
            conn.execute(
                update(events_table)
                .where(events_table.c.id.in_([event_id for event_id, _ in events]))
                .where(events_table.c.status.in_(WAITING))
                .values(status=EventStatus.QUEUED, lease_expires_at=None, updated_at=now)
            )
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(unavailable("cannot requeue events", exc)) from exc
    by_queue: dict[str, list[str]] = defaultdict(list)
    for event_id, queue in events:
        by_queue[queue].append(event_id)
    for queue, event_ids in by_queue.items():
        enqueue_ids(redis, PROCESS_EVENTS, queue, event_ids, batch_size=JOB_BATCH)
    return len(events)


def relay_events(ctx: SweepContext) -> int:
    """Sweeper task (outbox relay): events Redis missed at ingest go to their queues now, and
    events whose job was lost go again."""
    relayed = relay_received(ctx.engine, ctx.redis)
    return relayed + requeue_lost(ctx.engine, ctx.redis, inflight=ctx.inflight)
