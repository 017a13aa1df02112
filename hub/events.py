"""Storing incoming events exactly once, then handing them to the queues (outbox pattern).

`store_events(engine, events)` inserts a batch in one transaction: a row whose (tenant, source,
external id) already exists is skipped by the database (INSERT IGNORE / ON CONFLICT DO NOTHING),
and every event comes back as `Stored(event_id, created)`: its own new id, or the id of the event
stored first. Nothing fails the whole batch because one row is a duplicate.

`EventWriter` is the web process's group commit: concurrent requests put their event on an
asyncio queue, a writer takes whatever is waiting (up to `MAX_BATCH` rows or `MAX_BATCH_BYTES`),
commits it in one transaction in a worker thread, and answers each request only after that commit.
Committed new events go to an enqueuer that sends one `process_events` job per batch of ids to
each queue and marks them `queued`. If Redis is down they stay `received`, and the sweeper's
`relay_events` task enqueues them once it is back.

Only this module catches IntegrityError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Connection, Engine, Table, insert, select, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from hub import ids
from hub.errors import DatabaseUnavailable, HubError, RedisUnavailable
from hub.models import EventStatus, IntegrationEvent, utcnow
from hub.queues import KEY_PREFIX, enqueue_ids

if TYPE_CHECKING:
    from workers.sweeper import SweepContext

log = logging.getLogger("hub.events")

PROCESS_EVENTS = "workers.jobs.process_events"  # as workers.jobs.PROCESS_EVENTS
MAX_BATCH = 200  # rows per group commit
MAX_BATCH_BYTES = 8 * 1024 * 1024  # payload bytes per group commit (max_allowed_packet is 16 MiB)
WRITERS = 2  # group commits in flight at once
JOB_BATCH = 100  # event ids per process_events job
RELAY_AFTER = 5.0  # seconds an event may stay `received` before the sweeper enqueues it
RELAY_LIMIT = 2000  # events the sweeper moves per sweep
REQUEUE_AFTER = 600.0  # seconds an event may stay `queued` before its job counts as lost
SENTINEL_KEY = KEY_PREFIX + "sentinel"  # absent: Redis is new or lost its data
REDIS_PAUSE = 2.0  # seconds the enqueuer leaves Redis alone after a failure
DEADLOCK_RETRIES = 3
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock

events_table: Table = IntegrationEvent.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NewEvent:
    """An event as ingress hands it over; `payload` is already encrypted."""

    tenant_id: int
    source: str
    external_id: str
    event_type: str
    queue: str
    payload: bytes
    headers: dict[str, str]
    correlation_id: str | None = None


@dataclass(frozen=True)
class Stored:
    event_id: str
    created: bool  # False: a duplicate, `event_id` is the first one's


# -- the store ------------------------------------------------------------------------------------


def store_event(engine: Engine, event: NewEvent) -> Stored:
    """Store one event; `Stored(event_id, created)`."""
    return store_events(engine, [event])[0]


def store_events(engine: Engine, events: Sequence[NewEvent]) -> list[Stored]:
    """Store a batch in one transaction, skipping duplicates row by row; results in order.

    Raises DatabaseUnavailable when the database cannot be reached (nothing is stored then).
    """
    if not events:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": ids.new_id(ids.EVENT),
            "tenant_id": e.tenant_id,
            "source": e.source,
            "external_id": e.external_id,
            "event_type": e.event_type,
            "queue": e.queue,
            "status": EventStatus.RECEIVED,
            "payload": e.payload,
            "headers": e.headers,
            "correlation_id": e.correlation_id,
            "created_at": now,
            "updated_at": now,
        }
        for e in events
    ]
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with engine.begin() as conn:
                existing = _insert_skipping_duplicates(conn, rows)
            break
        except IntegrityError:
            # not a duplicate (those are skipped): store row by row so one bad row fails alone
            return [_store_alone(engine, row) for row in rows]
        except OperationalError as exc:
            code = getattr(exc.orig, "args", (None,))[0]
            if code in _RETRYABLE_MYSQL and attempt < DEADLOCK_RETRIES:
                time.sleep(0.005 * (attempt + 1))
                continue
            raise DatabaseUnavailable(_reason("cannot store the event", exc)) from exc
        except SQLAlchemyError as exc:
            log.error("events.store_failed", exc_info=True, extra={"count": len(rows)})
            raise DatabaseUnavailable(_reason("cannot store the event", exc)) from exc
    results = []
    for row in rows:
        first = existing.get((row["tenant_id"], row["source"], row["external_id"]))
        if first is None:  # refused without an error (e.g. its tenant vanished): never a 202
            raise HubError("the event was not stored")
        created = first == row["id"]
        results.append(Stored(first, created=created))
        if created and log.isEnabledFor(logging.INFO):
            log.info(
                "event.received",
                extra={
                    "event_id": first,
                    "tenant_id": row["tenant_id"],
                    "source": row["source"],
                    "correlation_id": row["correlation_id"],
                    "status": "received",
                },
            )
    return results


def _insert_skipping_duplicates(
    conn: Connection, rows: list[dict[str, Any]]
) -> dict[tuple[int, str, str], str]:
    """Insert `rows`, duplicates skipped; the stored id of every row's unique key.

    When the database reports every row inserted (the usual case), the ids are the rows' own
    and no query is needed; otherwise one SELECT finds the first stored id of each key.
    """
    dialect = conn.dialect.name
    if dialect in ("mysql", "mariadb"):
        # IGNORE skips duplicate keys; strings are validated before (no silent truncation)
        stmt: Any = insert(events_table).prefix_with("IGNORE")
    elif dialect == "sqlite":
        stmt = sqlite_insert(events_table).on_conflict_do_nothing(
            index_elements=["tenant_id", "source", "external_id"]
        )
    else:
        stmt = insert(events_table)  # other databases: a duplicate fails the batch, then row by row
    inserted = conn.execute(stmt, rows).rowcount
    if inserted == len(rows):
        return {(r["tenant_id"], r["source"], r["external_id"]): r["id"] for r in rows}
    keys = {(r["tenant_id"], r["source"], r["external_id"]) for r in rows}
    found = conn.execute(
        select(
            events_table.c.tenant_id,
            events_table.c.source,
            events_table.c.external_id,
            events_table.c.id,
        ).where(
            tuple_(events_table.c.tenant_id, events_table.c.source, events_table.c.external_id).in_(
                list(keys)
            )
        )
    ).all()
    return {(t, s, x): i for t, s, x, i in found}


def _store_alone(engine: Engine, row: dict[str, Any]) -> Stored:
    try:
        with engine.begin() as conn:
            existing = _insert_skipping_duplicates(conn, [row])
    except IntegrityError as exc:
        with engine.connect() as conn:
            first = conn.scalar(
                select(events_table.c.id).where(
                    events_table.c.tenant_id == row["tenant_id"],
                    events_table.c.source == row["source"],
                    events_table.c.external_id == row["external_id"],
                )
            )
        if first is None:
            raise HubError(f"cannot store the event: {type(exc).__name__}") from exc
        return Stored(first, created=False)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(_reason("cannot store the event", exc)) from exc
    first = existing[(row["tenant_id"], row["source"], row["external_id"])]
    return Stored(first, created=first == row["id"])


def _reason(what: str, exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return f"{what}: the database is unavailable ({type(orig or exc).__name__})"


# -- handing events to the queues -----------------------------------------------------------------


def enqueue_events(engine: Engine, redis: Redis, events: Sequence[tuple[str, str]]) -> int:
    """Enqueue `process_events` for (event_id, queue) pairs, then mark them `queued`.

    Raises RedisUnavailable (events stay `received` for the relay) or DatabaseUnavailable.
    """
    by_queue: dict[str, list[str]] = defaultdict(list)
    for event_id, queue in events:
        by_queue[queue].append(event_id)
    for queue, event_ids in by_queue.items():
        enqueue_ids(redis, PROCESS_EVENTS, queue, event_ids, batch_size=JOB_BATCH)
    mark_queued(engine, [event_id for event_id, _ in events])
    for queue, event_ids in by_queue.items():  # one line per batch: the ids are in the jobs
        log.info("events.queued", extra={"count": len(event_ids), "queue": queue})
    return len(events)


def mark_queued(engine: Engine, event_ids: Sequence[str]) -> None:
    """`received` → `queued` (a worker may already have moved them further: left alone)."""
    if not event_ids:
        return
    stmt = (
        update(events_table)
        .where(events_table.c.id.in_(list(event_ids)))
        .where(events_table.c.status == EventStatus.RECEIVED)
        .values(status=EventStatus.QUEUED, updated_at=utcnow())
    )
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(_reason("cannot mark events queued", exc)) from exc


def relay_received(
    engine: Engine, redis: Redis, older_than: float = RELAY_AFTER, limit: int = RELAY_LIMIT
) -> int:
    """Enqueue events left `received` for more than `older_than` seconds; returns how many."""
    cutoff = utcnow() - timedelta(seconds=older_than)
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
        raise DatabaseUnavailable(_reason("cannot read received events", exc)) from exc
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
    cutoff = utcnow() - timedelta(seconds=0 if lost_data else older_than)
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
                        .values(updated_at=utcnow())
                    )
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(_reason("cannot read queued events", exc)) from exc
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


# -- group commit in the web process --------------------------------------------------------------


class EventWriter:
    """Group commit: concurrent `store` calls share transactions; each returns after its commit."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis | None,
        *,
        max_batch: int = MAX_BATCH,
        writers: int = WRITERS,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.max_batch = max_batch
        self.writers = writers
        self._pending: asyncio.Queue[tuple[NewEvent, asyncio.Future[Stored]]] = asyncio.Queue()
        self._to_enqueue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(writers + 1, thread_name_prefix="hub-events")
        self._tasks: list[asyncio.Task[None]] = []
        self._redis_paused_until = 0.0

    async def start(self) -> EventWriter:
        self._tasks = [asyncio.create_task(self._write_loop()) for _ in range(self.writers)]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._enqueue_loop()))
        return self

    async def stop(self) -> None:
        """Finish what was accepted (commits and enqueues), then stop."""
        await self._pending.join()
        await self._to_enqueue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def store(self, event: NewEvent) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.put_nowait((event, future))
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._pending.get()]
            size = len(batch[0][0].payload)
            while (
                len(batch) < self.max_batch and size < MAX_BATCH_BYTES and not self._pending.empty()
            ):
                item = self._pending.get_nowait()
                batch.append(item)
                size += len(item[0].payload)
            try:
                results = await loop.run_in_executor(
                    self._executor, store_events, self.engine, [e for e, _ in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiter must get an answer
                error = exc if isinstance(exc, HubError) else DatabaseUnavailable(str(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (event, future), stored in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(stored)
                    if stored.created and self.redis is not None:
                        self._to_enqueue.put_nowait((stored.event_id, event.queue))
            finally:
                for _ in batch:
                    self._pending.task_done()

    async def _enqueue_loop(self) -> None:
        assert self.redis is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._to_enqueue.get()]
            while not self._to_enqueue.empty():
                batch.append(self._to_enqueue.get_nowait())
            try:
                if time.monotonic() < self._redis_paused_until:
                    continue  # left `received`: the sweeper's relay enqueues them
                await loop.run_in_executor(
                    self._executor, enqueue_events, self.engine, self.redis, batch
                )
            except RedisUnavailable:
                self._redis_paused_until = time.monotonic() + REDIS_PAUSE
                log.warning("events.enqueue_deferred", extra={"count": len(batch)})
            except HubError as exc:
                log.warning(
                    "events.enqueue_failed",
                    extra={"count": len(batch), "error_class": type(exc).__name__},
                )
            finally:
                for _ in batch:
                    self._to_enqueue.task_done()
