"""Events are stored exactly once per (tenant, source, external id), then handed to the queues."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pymysql
import pymysql.connections
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session

from hub.core.db import create_db_engine
from hub.core.errors import DatabaseUnavailable, RedisUnavailable
from hub.core.models import EventStatus, IntegrationEvent, Tenant
from hub.core.queues import get_queue
from hub.core.settings import Settings
from hub.ingress.events import (
    NewEvent,
    Stored,
    events_table,
    mark_queued,
    store_event,
    store_events,
)
from hub.ingress.relay import relay_received, requeue_lost
from hub.ingress.writer import MARK_DELAY, EventWriter
from hub.local.processes import free_port as closed_port
from tests.conftest import with_mysql_driver
from tests.faults import database_proxy


@pytest.fixture
def tenant_id(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        tenant = Tenant(slug="clinic-1", name="Clinic 1")
        session.add(tenant)
        session.flush()
        return tenant.id


def new(tenant_id: int, external_id: str, source: str = "site", queue: str = "default") -> NewEvent:
    return NewEvent(
        tenant_id=tenant_id,
        source=source,
        external_id=external_id,
        event_type="lead.created",
        queue=queue,
        payload=b"encrypted bytes",
        sealed_headers=b"encrypted headers",
        correlation_id="cor_1",
    )


def stored_rows(engine: Engine) -> list[IntegrationEvent]:
    with Session(engine) as session:
        return list(session.scalars(select(IntegrationEvent).order_by(IntegrationEvent.id)))


def created_at(engine: Engine, event_id: str) -> datetime:
    (row,) = [r for r in stored_rows(engine) if r.id == event_id]
    return row.created_at


def test_store_event_returns_the_id_and_whether_it_was_created(
    engine: Engine, tenant_id: int
) -> None:
    first = store_event(engine, new(tenant_id, "a"))
    again = store_event(engine, new(tenant_id, "a"))
    assert first.created and first.event_id.startswith("evt_")
    assert again == Stored(first.event_id, created=False)
    (row,) = stored_rows(engine)
    assert (row.id, row.status, row.queue, row.correlation_id) == (
        first.event_id,
        EventStatus.RECEIVED,
        "default",
        "cor_1",
    )


def test_a_batch_with_duplicates_inside_and_outside_stores_each_key_once(
    engine: Engine, tenant_id: int
) -> None:
    earlier = store_event(engine, new(tenant_id, "old"))
    results = store_events(
        engine,
        [
            new(tenant_id, "x"),
            new(tenant_id, "old"),  # stored before
            new(tenant_id, "x"),  # twice in this batch
            new(tenant_id, "x", source="zapi"),  # another source: another event
            new(tenant_id, "y"),
        ],
    )
    assert [r.created for r in results] == [True, False, False, True, True]
    assert results[1].event_id == earlier.event_id
    assert results[2].event_id == results[0].event_id
    assert len({r.event_id for r in results}) == 4
    assert len(stored_rows(engine)) == 4


def test_the_database_down_raises_database_unavailable_and_stores_nothing(
    settings: Settings, engine: Engine, tenant_id: int
) -> None:
    down = create_db_engine(
        settings.model_copy(
            update={"database_url": f"mysql+pymysql://root@127.0.0.1:{closed_port()}/hub"}
        )
    )
    with pytest.raises(DatabaseUnavailable):
        store_events(down, [new(tenant_id, "a")])
    down.dispose()
    assert stored_rows(engine) == []


# -- one round trip per group commit (MySQL, the web's writer engine) ----------------------------


@pytest.fixture
def one_trip(settings: Settings, mysql_driver: str) -> Iterator[Engine]:
    """An engine like the web's writer (its connections take several statements at once), on
    each MySQL driver in turn."""
    engine = create_db_engine(
        with_mysql_driver(settings, mysql_driver), pool_size=2, multi_statements=True
    )
    yield engine
    engine.dispose()


class Commands:
    """The commands the driver sends to the server (each a round trip), counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
        self.sent: list[str] = []
        if driver == "mysqldb":  # statements go through query(); commit() is a call of its own
            import MySQLdb.connections

            connection_class = MySQLdb.connections.Connection
            query, commit = connection_class.query, connection_class.commit

            def counted_query(conn: Any, sql: Any) -> Any:
                self._note(sql)
                return query(conn, sql)

            def counted_commit(conn: Any) -> Any:
                self.sent.append("COMMIT")
                return commit(conn)

            monkeypatch.setattr(connection_class, "query", counted_query)
            monkeypatch.setattr(connection_class, "commit", counted_commit)
            return
        original = pymysql.connections.Connection._execute_command

        def counted(conn: Any, command: int, sql: Any) -> Any:
            self._note(sql)
            return original(conn, command, sql)

        monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", counted)

    def _note(self, sql: Any) -> None:
        text = sql.decode(errors="replace") if isinstance(sql, bytes) else str(sql)
        self.sent.append(text.split(" ", 1)[0].upper())


def test_a_group_commit_with_marks_is_one_round_trip_on_the_writer_engine(
    settings: Settings,
    engine: Engine,
    one_trip: Engine,
    mysql_driver: str,
    tenant_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    earlier = store_event(one_trip, new(tenant_id, "earlier"))  # also warms the pool
    pooled = create_db_engine(with_mysql_driver(settings, mysql_driver), pool_size=1)
    with pooled.connect() as conn:  # warmed too: the dialect's first-connect queries
        conn.execute(select(1))
    commands = Commands(monkeypatch, mysql_driver)

    results = store_events(
        one_trip, [new(tenant_id, "a"), new(tenant_id, "b")], mark=[earlier.event_id]
    )

    assert commands.sent == ["UPDATE"], commands.sent  # UPDATE ...; INSERT ...; COMMIT at once
    commands.sent.clear()  # the pooled engine: a round trip per statement
    store_events(pooled, [new(tenant_id, "c")], mark=[results[0].event_id])
    pooled.dispose()
    assert commands.sent == ["UPDATE", "INSERT", "COMMIT"], commands.sent
    assert all(r.created for r in results)
    statuses = {r.external_id: r.status for r in stored_rows(engine)}
    assert statuses == {
        "earlier": EventStatus.QUEUED,
        "a": EventStatus.QUEUED,
        "b": EventStatus.RECEIVED,
        "c": EventStatus.RECEIVED,
    }


def test_one_round_trip_stores_each_key_once_and_answers_duplicates_with_the_first_id(
    one_trip: Engine, tenant_id: int
) -> None:
    earlier = store_event(one_trip, new(tenant_id, "old"))
    results = store_events(
        one_trip, [new(tenant_id, "x"), new(tenant_id, "old"), new(tenant_id, "x")]
    )
    assert [r.created for r in results] == [True, False, False]
    assert results[1].event_id == earlier.event_id
    assert results[2].event_id == results[0].event_id
    assert len(stored_rows(one_trip)) == 2


def test_a_7_mib_event_fits_one_statement_under_the_servers_16_mib_packet_limit(
    engine: Engine, one_trip: Engine, tenant_id: int
) -> None:
    """Blobs travel as hex (twice their size): 7 MiB is the largest body hub stores with the
    server's default max_allowed_packet (the README says so beside `max_body`)."""
    payload = bytes(range(256)) * (7 * 4096)
    for writer, key in ((one_trip, "big-1"), (engine, "big-2")):
        event = NewEvent(
            tenant_id=tenant_id, source="site", external_id=key, event_type="lead.created",
            queue="default", payload=payload, sealed_headers=b"h", correlation_id=None,
        )  # fmt: skip
        (result,) = store_events(writer, [event])
        assert result.created
    with engine.connect() as conn:
        sizes = conn.execute(select(events_table.c.external_id, events_table.c.payload)).all()
    assert sorted((k, p == payload) for k, p in sizes) == [("big-1", True), ("big-2", True)]


def test_the_writer_engine_survives_a_database_cut_and_commits_again_once_it_is_back(
    settings: Settings, mysql_driver: str, database_url: str, engine: Engine, tenant_id: int
) -> None:
    """Through a loopback proxy: while the server is cut every group commit is refused and
    stores nothing; once it is back the dropped connection is replaced and commits go on."""
    with database_proxy(database_url) as proxy:
        through = with_mysql_driver(
            settings.model_copy(update={"database_url": proxy.url_for(database_url)}),
            mysql_driver,
        )
        writer = create_db_engine(through, pool_size=2, multi_statements=True)
        try:
            (first,) = store_events(writer, [new(tenant_id, "before")])
            proxy.cut()
            with pytest.raises(DatabaseUnavailable):
                store_events(writer, [new(tenant_id, "during")], mark=[first.event_id])
            proxy.restore()
            (back,) = store_events(writer, [new(tenant_id, "after")], mark=[first.event_id])
        finally:
            writer.dispose()
    assert back.created
    assert {r.external_id: r.status for r in stored_rows(engine)} == {
        "before": EventStatus.QUEUED,
        "after": EventStatus.RECEIVED,
    }


def test_a_failing_insert_undoes_the_marks_of_its_round_trip_and_stores_nothing(
    engine: Engine, one_trip: Engine, tenant_id: int
) -> None:
    """Another transaction holds the key being inserted: the INSERT waits, times out and fails
    after the marks' UPDATE ran; nothing of the round trip is committed, and the writer's
    connection is clean for the next commit."""
    earlier = store_event(one_trip, new(tenant_id, "earlier"))
    event.listen(
        one_trip,
        "connect",
        lambda dbapi, _record: dbapi.cursor().execute("SET SESSION innodb_lock_wait_timeout = 1"),
    )
    one_trip.dispose()  # new connections, with the short lock wait
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(
        events_table.insert().values(
            id="evt_blocker", tenant_id=tenant_id, source="site", external_id="held",
            event_type="x", queue="default", status=EventStatus.RECEIVED,
            created_at=datetime.now(), updated_at=datetime.now(),
        )
    )  # fmt: skip
    try:
        with pytest.raises(DatabaseUnavailable):
            store_events(one_trip, [new(tenant_id, "held")], mark=[earlier.event_id])
    finally:
        blocker.rollback()
        blocker.close()
    assert [(r.external_id, r.status) for r in stored_rows(engine)] == [
        ("earlier", EventStatus.RECEIVED)  # the marks were rolled back with the failed insert
    ]
    (again,) = store_events(one_trip, [new(tenant_id, "held")], mark=[earlier.event_id])
    assert again.created
    assert {r.external_id: r.status for r in stored_rows(engine)} == {
        "earlier": EventStatus.QUEUED,
        "held": EventStatus.RECEIVED,
    }


def test_the_group_commit_answers_each_caller_after_its_commit(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    async def scenario() -> list[Stored]:
        writer = await EventWriter(engine, redis, max_batch=16).start()
        try:
            return await asyncio.gather(
                *(writer.store(new(tenant_id, f"k{i % 40}")) for i in range(100))
            )
        finally:
            await writer.stop()

    results = asyncio.run(scenario())
    assert sum(r.created for r in results) == 40
    by_key: dict[str, set[str]] = {}
    for i, r in enumerate(results):
        by_key.setdefault(f"k{i % 40}", set()).add(r.event_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    rows = stored_rows(engine)
    assert len(rows) == 40
    assert {r.status for r in rows} == {EventStatus.QUEUED}
    jobs = get_queue(redis, "default").jobs
    enqueued = sorted(i for job in jobs for i in job.args[0])
    assert enqueued == sorted(r.id for r in rows)  # each new event enqueued once, in batches
    assert len(jobs) < 40


class Overlap:
    """The most transactions the engine had open at once (its own begin and commit events),
    each made to last `slow` seconds at least, like a busy database's."""

    def __init__(self, engine: Engine, slow: float = 0.05) -> None:
        self.slow = slow
        self.open = self.most = 0
        self.lock = threading.Lock()
        self.engine = engine
        event.listen(engine, "begin", self.began)
        event.listen(engine, "commit", self.ended)
        event.listen(engine, "rollback", self.ended)

    def began(self, conn: Any) -> None:
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        time.sleep(self.slow)

    def ended(self, conn: Any) -> None:
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        event.remove(self.engine, "begin", self.began)
        event.remove(self.engine, "commit", self.ended)
        event.remove(self.engine, "rollback", self.ended)


def test_a_second_commit_runs_alongside_only_when_many_events_wait(
    settings: Settings, tenant_id: int
) -> None:
    """One by one, events wait for the commit under way and go in the next; a crowd of them
    (`few` or more waiting) gets a second commit at once."""
    engine = create_db_engine(settings)  # the writer's own, as in the web process
    overlap = Overlap(engine)

    async def trickle() -> None:
        writer = await EventWriter(engine, None, few=1000).start()  # never a crowd
        try:
            stores = []
            for i in range(30):
                stores.append(asyncio.ensure_future(writer.store(new(tenant_id, f"trickle{i}"))))
                await asyncio.sleep(0.002)
            await asyncio.gather(*stores)
        finally:
            await writer.stop()

    async def crowd() -> None:
        writer = await EventWriter(engine, None, max_batch=3, few=3).start()
        try:
            await asyncio.gather(*(writer.store(new(tenant_id, f"crowd{i}")) for i in range(64)))
        finally:
            await writer.stop()

    try:
        asyncio.run(trickle())
        alone, overlap.most = overlap.most, 0
        asyncio.run(crowd())
        together = overlap.most
        stored = len(stored_rows(engine))
    finally:
        overlap.close()
        engine.dispose()
    assert (alone, together, stored) == (1, 2, 94)


def test_events_left_unmarked_when_traffic_stops_are_marked_queued_by_the_enqueuer(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    """Under traffic the `queued` marks ride on a group commit once due; the last batches have
    no commit after them, so the enqueuer marks them on its own, writer running."""
    mark_after = 0.3

    async def scenario() -> list[EventStatus]:
        writer = await EventWriter(engine, redis, max_batch=8, mark_after=mark_after).start()
        try:
            for i in range(20):
                await writer.store(new(tenant_id, f"a{i}"))
            await asyncio.sleep(mark_after + MARK_DELAY * 10)
            return [row.status for row in stored_rows(engine)]
        finally:
            await writer.stop()

    statuses = asyncio.run(scenario())
    assert len(statuses) == 20
    assert set(statuses) == {EventStatus.QUEUED}, statuses


def test_a_mark_waits_until_its_events_were_enqueued_a_while_then_rides_on_a_commit(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    """A worker takes most events within milliseconds: a mark made at once would find them in
    its routing transaction and wait for it. So the next commits leave a batch's mark alone until
    it is `mark_after` old, and the first commit after that carries it."""
    mark_after = 1.0

    async def scenario() -> tuple[dict[str, EventStatus], dict[str, EventStatus], list[str]]:
        writer = await EventWriter(engine, redis, mark_after=mark_after).start()
        try:
            first = await writer.store(new(tenant_id, "first"))
            while not get_queue(redis, "default").count:  # enqueued
                await asyncio.sleep(0.01)
            soon = await writer.store(new(tenant_id, "soon"))  # a commit before the mark is due
            before = {r.id: r.status for r in stored_rows(engine)}
            await asyncio.sleep(mark_after)
            later = await writer.store(new(tenant_id, "later"))  # the first commit after
            after = {r.id: r.status for r in stored_rows(engine)}
            return before, after, [first.event_id, soon.event_id, later.event_id]
        finally:
            await writer.stop()

    before, after, (first, soon, later) = asyncio.run(scenario())
    assert before == {first: EventStatus.RECEIVED, soon: EventStatus.RECEIVED}
    assert after[first] == EventStatus.QUEUED  # due: carried by the commit of `later`
    assert after[later] == EventStatus.RECEIVED


def test_events_linger_for_a_shared_job_only_while_the_last_job_waits_for_a_worker(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    """No worker takes the jobs here: after the first, each event finds one waiting, so the
    events stored one after another share a job, sent once the linger is over (a worker's cost
    is per job); once a worker has taken the last job, the next event goes at once."""
    queue = get_queue(redis, "default")
    linger = 2.0

    async def enqueued(count: int) -> tuple[list[list[str]], float]:
        """The queue's jobs once they carry `count` events, and how long that took."""
        began = time.monotonic()
        while True:
            jobs = [job.args[0] for job in queue.jobs]
            if sum(map(len, jobs)) >= count:
                return jobs, time.monotonic() - began
            assert time.monotonic() - began < 10, f"{count} events not enqueued: {jobs}"
            await asyncio.sleep(0.01)

    async def scenario() -> tuple[list[list[str]], list[list[str]], float]:
        writer = await EventWriter(engine, redis, linger=linger).start()
        try:
            await writer.store(new(tenant_id, "first"))
            await enqueued(1)
            for i in range(5):  # one commit each, while the first job waits
                await writer.store(new(tenant_id, f"busy{i}"))
            busy, _ = await enqueued(6)
            queue.empty()  # a worker took them all, within the linger of the last enqueue
            await writer.store(new(tenant_id, "idle"))
            idle, waited = await enqueued(1)
            return busy, idle, waited
        finally:
            await writer.stop()

    busy, idle, waited = asyncio.run(scenario())
    assert [len(ids) for ids in busy] == [1, 5]
    assert [len(ids) for ids in idle] == [1]
    assert waited < linger / 2, f"the idle queue's event waited {waited:.2f}s"


def test_mark_queued_never_moves_an_event_backwards(engine: Engine, tenant_id: int) -> None:
    ahead = store_event(engine, new(tenant_id, "a"))
    fresh = store_event(engine, new(tenant_id, "b"))
    with engine.begin() as conn:
        conn.execute(
            update(events_table)
            .where(events_table.c.id == ahead.event_id)
            .values(status=EventStatus.PROCESSING)
        )
    mark_queued(engine, [ahead.event_id, fresh.event_id])
    statuses = {r.id: r.status for r in stored_rows(engine)}
    assert statuses == {ahead.event_id: EventStatus.PROCESSING, fresh.event_id: EventStatus.QUEUED}


def test_the_relay_enqueues_only_events_left_received_long_enough(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    old = store_event(engine, new(tenant_id, "old", queue="high"))
    young = store_event(engine, new(tenant_id, "young"))
    with engine.begin() as conn:
        conn.execute(
            update(events_table)
            .where(events_table.c.id == old.event_id)
            .values(created_at=created_at(engine, old.event_id) - timedelta(seconds=30))
        )
    assert relay_received(engine, redis) == 1
    statuses = {r.id: r.status for r in stored_rows(engine)}
    assert statuses == {old.event_id: EventStatus.QUEUED, young.event_id: EventStatus.RECEIVED}
    assert [job.args[0] for job in get_queue(redis, "high").jobs] == [[old.event_id]]
    assert get_queue(redis, "default").count == 0
    assert relay_received(engine, redis) == 0


def test_the_relay_with_redis_down_leaves_events_received(engine: Engine, tenant_id: int) -> None:
    event = store_event(engine, new(tenant_id, "a"))
    down = Redis(port=closed_port(), retry=Retry(NoBackoff(), 0))

    with pytest.raises(RedisUnavailable):
        relay_received(engine, down, older_than=0)
    assert stored_rows(engine)[0].status == EventStatus.RECEIVED
    assert stored_rows(engine)[0].id == event.event_id


def test_events_whose_jobs_redis_lost_are_enqueued_again(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    first = store_event(engine, new(tenant_id, "a", queue="high"))
    second = store_event(engine, new(tenant_id, "b"))
    mark_queued(engine, [first.event_id, second.event_id])
    assert requeue_lost(engine, redis) == 2  # a new Redis: nothing proves the jobs exist
    assert requeue_lost(engine, redis) == 0  # the sentinel is set: queued events are young

    redis.flushdb()  # Redis loses its data: the jobs are gone
    assert requeue_lost(engine, redis) == 2
    assert [job.args[0] for job in get_queue(redis, "high").jobs] == [[first.event_id]]
    assert [job.args[0] for job in get_queue(redis, "default").jobs] == [[second.event_id]]


def test_an_event_queued_too_long_is_enqueued_again_once_per_period(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    event = store_event(engine, new(tenant_id, "a"))
    mark_queued(engine, [event.event_id])
    requeue_lost(engine, redis)  # sets the sentinel
    redis.delete("rq:queue:default")
    with engine.begin() as conn:
        conn.execute(
            update(events_table)
            .where(events_table.c.id == event.event_id)
            .values(updated_at=created_at(engine, event.event_id) - timedelta(seconds=601))
        )
    assert requeue_lost(engine, redis) == 1
    assert get_queue(redis, "default").count == 1
    assert requeue_lost(engine, redis) == 0  # not again before another period
    assert stored_rows(engine)[0].status == EventStatus.QUEUED
