"""Storing incoming events exactly once, then handing them to the queues (outbox pattern).

`store_events(engine, events)` inserts a batch in one transaction: a row whose (tenant, source,
external id) already exists is skipped by the database (INSERT IGNORE / ON CONFLICT DO NOTHING),
and every event comes back as `Stored(event_id, created)`: its own new id, or the id of the event
stored first. Nothing fails the whole batch because one row is a duplicate.

`enqueue_events` sends one `process_events` job per batch of ids to each queue and marks them
`queued` (the web's writer marks them with its next stored batch instead: one transaction
less). The web process stores through `hub.ingress.writer.EventWriter` (group commit); events
that Redis missed stay `received`, and the sweeper's relay (`hub.ingress.relay`) enqueues them.

Only this module catches IntegrityError.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis import Redis
from sqlalchemy import Connection, Engine, Table, insert, select, tuple_, update
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from hub.core import ids
from hub.core.db import allows_multi_statements
from hub.core.errors import DatabaseUnavailable, HubError
from hub.core.inserts import insert_rows, literal, literal_insert
from hub.core.models import EventStatus, IntegrationEvent, PersonIndex, utcnow
from hub.core.queues import PROCESS_EVENTS, enqueue_ids

log = logging.getLogger("hub.ingress.events")

JOB_BATCH = 200  # event ids per process_events job
DEADLOCK_RETRIES = 3
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock

events_table: Table = IntegrationEvent.__table__  # type: ignore[assignment]
person_table: Table = PersonIndex.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class NewEvent:
    """An event as ingress hands it over; `payload` is already encrypted."""

    tenant_id: int
    source: str
    external_id: str
    event_type: str
    queue: str
    payload: bytes
    sealed_headers: bytes | None  # the storable headers as JSON, encrypted
    correlation_id: str | None = None
    persons: tuple[tuple[str, str], ...] = ()  # (kind, keyed hash): hub.ingress.persons


@dataclass(frozen=True)
class Stored:
    event_id: str
    created: bool  # False: a duplicate, `event_id` is the first one's


# -- the store ------------------------------------------------------------------------------------


def store_event(engine: Engine, event: NewEvent) -> Stored:
    """Store one event; `Stored(event_id, created)`."""
    return store_events(engine, [event])[0]


def store_events(
    engine: Engine, events: Sequence[NewEvent], *, mark: Sequence[str] = ()
) -> list[Stored]:
    """Store a batch in one transaction, skipping duplicates row by row; results in order.

    `mark`: ids of events already enqueued, marked `queued` in the same transaction (the
    web process's writer saves a transaction per batch this way, see hub.ingress.writer).
    Raises DatabaseUnavailable when the database cannot be reached (nothing is stored or
    marked then).
    """
    if not events:
        mark_queued(engine, mark)
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
            "sealed_headers": e.sealed_headers,
            "correlation_id": e.correlation_id,
            "created_at": now,
            "updated_at": now,
        }
        for e in events
    ]
    persons = {row["id"]: e.persons for row, e in zip(rows, events, strict=True) if e.persons}
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            stored = None if persons else _store_in_one_trip(engine, rows, mark, now)
            if stored is not None:
                existing = stored
                break
            with engine.begin() as conn:
                if mark:
                    conn.execute(_queued(mark))
                existing = _insert_skipping_duplicates(conn, rows)
                if persons:
                    _index_persons(conn, rows, persons, existing)
            break
        except IntegrityError:
            # not a duplicate (those are skipped): store row by row so one bad row fails alone
            mark_queued(engine, mark)
            return [_store_alone(engine, row, persons) for row in rows]
        except OperationalError as exc:
            code = getattr(exc.orig, "args", (None,))[0]
            if code in _RETRYABLE_MYSQL and attempt < DEADLOCK_RETRIES:
                time.sleep(0.005 * (attempt + 1))
                continue
            if exc.connection_invalidated and attempt == 0:
                # a pooled connection the server dropped (restart, idle timeout): the writer's
                # engine does not ping before each batch, so one fresh try; a commit that did
                # happen before the drop is found again by the duplicate check
                continue
            raise DatabaseUnavailable(unavailable("cannot store the event", exc)) from exc
        except SQLAlchemyError as exc:
            log.error("events.store_failed", exc_info=True, extra={"count": len(rows)})
            raise DatabaseUnavailable(unavailable("cannot store the event", exc)) from exc
    results = []
    for row in rows:
        first = existing.get((row["tenant_id"], row["source"], row["external_id"]))
        if first is None:  # refused without an error (e.g. its tenant vanished): never a 202
            raise HubError("the event was not stored")
        results.append(Stored(first, created=first == row["id"]))
    if log.isEnabledFor(logging.INFO):
        _log_received(rows, results)
    return results


def _log_received(rows: list[dict[str, Any]], results: list[Stored]) -> None:
    """One line per (tenant, source) of a batch, naming every new event's id: a line per event
    cost as much as storing it."""
    by_source: dict[tuple[int, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for row, stored in zip(rows, results, strict=True):
        if stored.created:
            event_ids, correlation_ids = by_source[(row["tenant_id"], row["source"])]
            event_ids.append(stored.event_id)
            correlation_ids.append(row["correlation_id"])
    for (tenant_id, source), (event_ids, correlation_ids) in by_source.items():
        log.info(
            "events.received",
            extra={
                "tenant_id": tenant_id,
                "source": source,
                "status": "received",
                "count": len(event_ids),
                "event_ids": event_ids,  # in the same order as their correlation ids
                "correlation_ids": correlation_ids,
            },
        )


def _store_in_one_trip(
    engine: Engine, rows: list[dict[str, Any]], mark: Sequence[str], now: datetime
) -> dict[tuple[int, str, str], str] | None:
    """`UPDATE` (the marks); `INSERT IGNORE`; `COMMIT` as one query: one round trip to the
    server instead of three, on a connection that takes several statements (the web's writer
    engine, `create_db_engine(multi_statements=True)`); None on any other connection.

    Every value is a literal of hub's own (hub.core.inserts: strings and bytes in hex), so the
    multi-statement query carries nothing a sender wrote as SQL. If a statement fails the
    server runs none after it: nothing is committed, and what ran before it is rolled back.
    Errors are raised as SQLAlchemy's, as `engine.begin()` would raise them."""
    if not allows_multi_statements(engine):
        return None
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        raw = engine.raw_connection()
    except dbapi_error as exc:  # cannot connect
        raise _wrapped(engine, exc, gone=False) from exc
    try:
        parts = [literal_insert(engine.dialect, events_table, rows, ignore=True), "COMMIT"]
        if mark:  # `_queued(mark)`, written out: compiling it with literal binds costs more
            ids_ = ",".join(literal(event_id) for event_id in mark)
            parts.insert(
                0,
                f"UPDATE {events_table.name} SET status = '{EventStatus.QUEUED.value}', "
                f"updated_at = {literal(now)} WHERE id IN ({ids_}) "
                f"AND status = '{EventStatus.RECEIVED.value}'",
            )
        cursor = raw.cursor()
        try:
            cursor.execute(";".join(parts))  # no parameters: no `%` is read as a placeholder
            if mark:
                cursor.nextset()  # the INSERT's result
            inserted = cursor.rowcount
            while cursor.nextset():  # the COMMIT's
                pass
        finally:
            cursor.close()
        raw.info["committed"] = True  # the pool leaves a committed connection alone
    except dbapi_error as exc:
        gone = engine.dialect.is_disconnect(exc, raw.dbapi_connection, None)
        if gone:
            raw.invalidate(exc)
        else:  # the statements before the failed one ran: undo them here and now
            with suppress(dbapi_error):
                raw.rollback()
        raise _wrapped(engine, exc, gone=gone) from exc
    finally:
        raw.close()
    if inserted == len(rows):
        return _own_ids(rows)
    with engine.connect() as conn:  # some were duplicates: one more round trip
        return _stored_ids(conn, rows, inserted)


def _insert_skipping_duplicates(
    conn: Connection, rows: list[dict[str, Any]]
) -> dict[tuple[int, str, str], str]:
    """Insert `rows`, duplicates skipped; the stored id of every row's unique key.

    When the database reports every row inserted (the usual case), the ids are the rows' own
    and no query is needed; otherwise one SELECT finds the first stored id of each key.
    """
    # duplicate keys skipped; strings are validated before (no silent truncation)
    return _stored_ids(conn, rows, insert_rows(conn, events_table, rows, ignore=True))


def _wrapped(engine: Engine, exc: Exception, *, gone: bool) -> StatementError:
    """A driver's error as SQLAlchemy raises it (IntegrityError, OperationalError, ...)."""
    return DBAPIError.instance(
        "UPDATE; INSERT IGNORE INTO integration_events; COMMIT",
        None,
        exc,
        engine.dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=engine.dialect,
    )


def _own_ids(rows: list[dict[str, Any]]) -> dict[tuple[int, str, str], str]:
    return {(r["tenant_id"], r["source"], r["external_id"]): r["id"] for r in rows}


def _stored_ids(
    conn: Connection, rows: list[dict[str, Any]], inserted: int
) -> dict[tuple[int, str, str], str]:
    """The stored id of each row's key: the rows' own when all were inserted, otherwise (some
    were duplicates) read back in one SELECT."""
    if inserted == len(rows):
        return _own_ids(rows)
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


def _index_persons(
    conn: Connection,
    rows: list[dict[str, Any]],
    persons: dict[str, tuple[tuple[str, str], ...]],
    existing: dict[tuple[int, str, str], str],
) -> None:
    """The keyed hashes of the new events' declared identifiers (duplicates add none)."""
    index = [
        {"tenant_id": row["tenant_id"], "event_id": row["id"], "kind": kind, "digest": digest}
        for row in rows
        if existing.get((row["tenant_id"], row["source"], row["external_id"])) == row["id"]
        for kind, digest in persons.get(row["id"], ())
    ]
    if index:
        conn.execute(insert(person_table), index)


def _store_alone(
    engine: Engine, row: dict[str, Any], persons: dict[str, tuple[tuple[str, str], ...]]
) -> Stored:
    try:
        with engine.begin() as conn:
            existing = _insert_skipping_duplicates(conn, [row])
            if row["id"] in persons:
                _index_persons(conn, [row], persons, existing)
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
        raise DatabaseUnavailable(unavailable("cannot store the event", exc)) from exc
    first = existing[(row["tenant_id"], row["source"], row["external_id"])]
    return Stored(first, created=first == row["id"])


def unavailable(what: str, exc: SQLAlchemyError) -> str:
    """The DatabaseUnavailable message for `what`, naming the driver error, never its text."""
    orig = getattr(exc, "orig", None)
    return f"{what}: the database is unavailable ({type(orig or exc).__name__})"


# -- handing events to the queues -----------------------------------------------------------------


def enqueue_events(engine: Engine | None, redis: Redis, events: Sequence[tuple[str, str]]) -> int:
    """Enqueue `process_events` for (event_id, queue) pairs, then mark them `queued` (without
    an engine the caller marks them: the web's writer does, with its next batch).

    Raises RedisUnavailable (events stay `received` for the relay) or DatabaseUnavailable.
    """
    by_queue: dict[str, list[str]] = defaultdict(list)
    for event_id, queue in events:
        by_queue[queue].append(event_id)
    for queue, event_ids in by_queue.items():
        enqueue_ids(redis, PROCESS_EVENTS, queue, event_ids, batch_size=JOB_BATCH)
    if engine is not None:
        mark_queued(engine, [event_id for event_id, _ in events])
    for queue, event_ids in by_queue.items():  # one line per batch: the ids are in the jobs
        log.info("events.queued", extra={"count": len(event_ids), "queue": queue})
    return len(events)


def _queued(event_ids: Sequence[str]) -> Any:
    """`received` → `queued` (a worker may already have moved them further: left alone)."""
    return (
        update(events_table)
        .where(events_table.c.id.in_(list(event_ids)))
        .where(events_table.c.status == EventStatus.RECEIVED)
        .values(status=EventStatus.QUEUED, updated_at=utcnow())
    )


def mark_queued(engine: Engine, event_ids: Sequence[str]) -> None:
    """`received` → `queued` in a transaction of its own (see `_queued`); none: nothing."""
    if not event_ids:
        return
    try:
        with engine.begin() as conn:
            conn.execute(_queued(event_ids))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(unavailable("cannot mark events queued", exc)) from exc
