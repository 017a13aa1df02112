"""process_events: stored events become deliveries, once, with each event's own outcome."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from hub.core import ids
from hub.core.crypto import Cipher
from hub.core.db import create_db_engine, session_factory
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from hub.core.queues import DELIVER, PROCESS_EVENTS, get_queue
from hub.core.settings import Settings
from hub.core.tenants import get_or_create
from hub.delivery.runtime import RUNTIME_KEY, runtime
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from hub.mapping.routing import process_events
from hub.ops import tenants
from tests.conftest import with_mysql_driver
from tests.delivery.conftest import TargetServer, ZapiStandIn, clinic_env
from workers.context import WorkerContext

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
LEAD = {"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}
SERVICE = {
    "event": "service.completed",
    "service": {"id": "S1", "status": "completed", "type": "visita", "billable": True,
                "completed_at": "2026-11-27T17:30:00Z", "amount": 200,
                "caregiver": {"name": "Rita"}},
    "client": {"id": "C1", "name": "Maria", "phone": "31 99876-5432"},
}  # fmt: skip


@pytest.fixture
def ctx(settings: Settings, engine: Engine, redis: Redis) -> Iterator[WorkerContext]:
    apply_mappings(engine, redis, load_mappings(SHIPPED))
    ctx = WorkerContext(
        settings=settings,
        engine=engine,
        redis=redis,
        cipher=Cipher("test-secret"),
        sessions=session_factory(engine),
    )
    yield ctx
    if RUNTIME_KEY in ctx.cache:  # a job sent deliveries: its lanes' threads and clients
        ctx.cache.pop(RUNTIME_KEY).close()


def store(ctx: WorkerContext, source: str, event_type: str, payload: Any, **extra: Any) -> str:
    blob = extra.pop("blob", None)
    with Session(ctx.engine) as session, session.begin():
        tenant, _ = get_or_create(session, extra.pop("tenant", "clinic-1"))
        event_id = ids.new_id(ids.EVENT)
        session.add(
            IntegrationEvent(
                id=event_id,
                tenant_id=tenant.id,
                source=source,
                external_id=event_id,
                event_type=event_type,
                status=EventStatus.QUEUED,
                payload=blob if blob is not None else ctx.cipher.encrypt(orjson.dumps(payload)),
                correlation_id="corr-" + event_id[-6:],
                **extra,
            )
        )
    return event_id


def deliveries(engine: Engine, event_id: str) -> dict[str, WebhookDelivery]:
    with Session(engine) as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event_id))
        return {row.route: row for row in rows}


def status(engine: Engine, event_id: str) -> IntegrationEvent:
    with Session(engine) as session:
        row = session.get(IntegrationEvent, event_id)
        assert row is not None
        return row


def queued_ids(redis: Redis, queue: str) -> list[str]:
    jobs = get_queue(redis, queue).jobs
    assert all(job.func_name == DELIVER for job in jobs)
    return [delivery_id for job in jobs for delivery_id in job.args[0]]


def test_a_lead_becomes_three_deliveries_enqueued_per_queue(ctx: WorkerContext) -> None:
    event_id = store(ctx, "site", "lead.created", LEAD)
    counts = process_events(ctx, [event_id])
    assert counts == {"processed": 1, "no_route": 0, "failed": 0, "deliveries": 3}
    assert status(ctx.engine, event_id).status == EventStatus.PROCESSED
    rows = deliveries(ctx.engine, event_id)
    assert set(rows) == {"crm", "auto-reply", "marketing"}
    crm = rows["crm"]
    assert (crm.mapping, crm.endpoint, crm.queue) == ("lead-created", "crm", "default")
    assert crm.status == DeliveryStatus.PENDING and crm.next_attempt_at is None
    assert crm.correlation_id == "corr-" + event_id[-6:]
    with Session(ctx.engine) as session:
        endpoint = session.get(WebhookEndpoint, crm.endpoint_id)
        assert endpoint is not None and endpoint.name == "crm" and endpoint.active
    assert crm.request is not None
    request = orjson.loads(ctx.cipher.decrypt(crm.request))
    assert request["method"] == "POST" and request["path"] == "/leads"
    assert request["headers"] == {}
    assert request["body"]["phone"] == "+5511912345678"
    assert b"91234" not in crm.request  # stored encrypted
    assert sorted(queued_ids(ctx.redis, "default")) == sorted([crm.id, rows["marketing"].id])
    assert queued_ids(ctx.redis, "notifications") == [rows["auto-reply"].id]


def test_running_the_job_twice_creates_nothing_new(ctx: WorkerContext) -> None:
    event_id = store(ctx, "site", "lead.created", LEAD)
    process_events(ctx, [event_id])
    first = {k: v.id for k, v in deliveries(ctx.engine, event_id).items()}
    assert process_events(ctx, [event_id])["deliveries"] == 0
    # even when the event is sent through again (a replay), existing deliveries stay the only ones
    with Session(ctx.engine) as session, session.begin():
        row = session.get(IntegrationEvent, event_id)
        assert row is not None
        row.status = EventStatus.QUEUED
    assert process_events(ctx, [event_id]) == {
        "processed": 1, "no_route": 0, "failed": 0, "deliveries": 0,
    }  # fmt: skip
    assert {k: v.id for k, v in deliveries(ctx.engine, event_id).items()} == first
    assert len(queued_ids(ctx.redis, "default")) == 2


def test_a_delayed_route_is_scheduled_in_the_database(ctx: WorkerContext) -> None:
    before = utcnow()
    event_id = store(ctx, "operacao", "service.completed", SERVICE)
    process_events(ctx, [event_id])
    rows = deliveries(ctx.engine, event_id)
    assert set(rows) == {"notify-client", "feedback-request", "invoice", "update-crm"}
    feedback = rows["feedback-request"]
    assert feedback.next_attempt_at is not None
    assert before + timedelta(hours=2) <= feedback.next_attempt_at
    assert feedback.next_attempt_at <= utcnow() + timedelta(hours=2)
    with Session(ctx.engine) as session:
        retry = session.scalars(
            select(RetryQueue).where(RetryQueue.delivery_id == feedback.id)
        ).one()
        assert retry.attempt == 0 and retry.next_retry_at == feedback.next_attempt_at
    assert feedback.id not in queued_ids(ctx.redis, "notifications")
    assert rows["notify-client"].id in queued_ids(ctx.redis, "notifications")


def test_dates_are_written_in_each_tenants_time_zone(ctx: WorkerContext) -> None:
    with Session(ctx.engine) as session, session.begin():
        tenants.create(session, "clinic-jp", timezone="Asia/Tokyo", locale="en-US")
    home = store(ctx, "operacao", "service.completed", SERVICE)
    tokyo = store(ctx, "operacao", "service.completed", SERVICE, tenant="clinic-jp")
    process_events(ctx, [home, tokyo])

    def body(event_id: str, route: str) -> Any:
        request = deliveries(ctx.engine, event_id)[route].request
        assert request is not None
        return orjson.loads(ctx.cipher.decrypt(request))["body"]

    assert body(home, "update-crm")["last_service_at"] == "2026-11-27T14:30:00-03:00"
    assert body(home, "invoice")["service_date"] == "2026-11-27"
    assert body(tokyo, "update-crm")["last_service_at"] == "2026-11-28T02:30:00+09:00"
    assert body(tokyo, "invoice")["service_date"] == "2026-11-28"


def test_a_payload_that_does_not_fit_fails_that_event_alone(ctx: WorkerContext) -> None:
    bad = store(ctx, "site", "lead.created", {**LEAD, "phone": "123"})
    good = store(ctx, "site", "lead.created", LEAD)
    none = store(ctx, "financeiro", "payment.succeeded", {"amount": 10})
    counts = process_events(ctx, [bad, good, none])
    assert counts == {"processed": 1, "no_route": 1, "failed": 1, "deliveries": 3}
    failed = status(ctx.engine, bad)
    assert failed.status == EventStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith(
        "rule lead-created: routes[0].body.phone: phone_br: not a Brazilian phone number"
    )
    assert deliveries(ctx.engine, bad) == {}
    with Session(ctx.engine) as session:
        dead = session.scalars(select(DeadLetter).where(DeadLetter.event_id == bad)).one()
        assert dead.stage == DeadLetterStage.MAPPING
        assert dead.reason == failed.error
        assert dead.source == "site" and dead.delivery_id is None
    assert status(ctx.engine, good).status == EventStatus.PROCESSED
    assert status(ctx.engine, none).status == EventStatus.NO_ROUTE
    # a failed event is final: running the batch again adds no second dead letter
    process_events(ctx, [bad])
    with Session(ctx.engine) as session:
        assert len(session.scalars(select(DeadLetter)).all()) == 1


def test_a_stored_payload_that_cannot_be_read_fails_with_the_reason(ctx: WorkerContext) -> None:
    garbled = store(ctx, "site", "lead.created", None, blob=b"\x01" + b"0" * 40)
    not_json = store(ctx, "site", "lead.created", None, blob=ctx.cipher.encrypt(b"{nope"))
    process_events(ctx, [garbled, not_json])
    assert status(ctx.engine, garbled).error == (
        "the stored payload cannot be decrypted (DecryptionError)"
    )
    assert status(ctx.engine, not_json).error == "the stored payload is not valid JSON"


def test_unknown_ids_and_finished_events_are_ignored(ctx: WorkerContext) -> None:
    assert process_events(ctx, ["evt_nope"]) == {
        "processed": 0, "no_route": 0, "failed": 0, "deliveries": 0,
    }  # fmt: skip


def test_a_batch_costs_the_same_number_of_statements_whatever_its_size(
    ctx: WorkerContext,
) -> None:
    process_events(ctx, [])  # the applied mappings are loaded once per version, not per batch

    def statements(batch: list[str]) -> list[str]:
        seen: list[str] = []

        def record(*args: Any) -> None:
            seen.append(args[2])

        event.listen(ctx.engine, "before_cursor_execute", record)
        try:
            process_events(ctx, batch)
        finally:
            event.remove(ctx.engine, "before_cursor_execute", record)
        return seen

    small = statements([store(ctx, "site", "lead.created", LEAD) for _ in range(2)])
    large = statements([store(ctx, "site", "lead.created", LEAD) for _ in range(25)])
    assert len(large) == len(small) == 5  # lease, events, existing deliveries, insert, update


def test_when_redis_is_down_the_deliveries_are_left_for_the_sweeper(
    ctx: WorkerContext, settings: Settings
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    offline = WorkerContext(settings, ctx.engine, down, ctx.cipher, ctx.sessions)
    event_id = store(ctx, "site", "lead.created", LEAD)
    assert process_events(offline, [event_id])["processed"] == 1
    rows = deliveries(ctx.engine, event_id)
    with Session(ctx.engine) as session:
        due = set(session.scalars(select(RetryQueue.delivery_id)))
    assert due == {row.id for row in rows.values()}


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> Iterator[TargetServer]:
    """clinic-1's CRM and marketing endpoints (the shipped mappings) point at a local target,
    its WhatsApp at a Z-API stand-in."""
    server, zapi = TargetServer().start(), ZapiStandIn().start()
    env = clinic_env(f"{server.url}/crm", f"{server.url}/marketing", zapi)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()
    zapi.stop()


def test_the_rq_job_routes_its_batch_and_sends_it_from_its_own_lanes(
    ctx: WorkerContext, targets: TargetServer
) -> None:
    from hub.core.queues import enqueue_ids
    from workers import context
    from workers.worker import HubWorker

    event_ids = [store(ctx, "site", "lead.created", LEAD) for _ in range(3)]
    enqueue_ids(ctx.redis, PROCESS_EVENTS, "default", event_ids)
    context.install(ctx)
    try:
        worker = HubWorker([get_queue(ctx.redis, "default")], connection=ctx.redis)
        worker.work(burst=True, max_jobs=1)  # a burst worker waits for its lanes' sends
    finally:
        context.install(None)
    assert [status(ctx.engine, e).status for e in event_ids] == [EventStatus.PROCESSED] * 3
    for queue in ("default", "notifications"):  # no deliver job: the routing job sent them
        assert queued_ids(ctx.redis, queue) == []
    sent = sorted(seen.path.split("/")[1] for seen in targets.seen)
    assert sent == ["crm"] * 3 + ["marketing"] * 3
    for event_id in event_ids:
        rows = deliveries(ctx.engine, event_id)
        assert sorted(rows) == ["auto-reply", "crm", "marketing"]
        assert {(r.status, r.attempts) for r in rows.values()} == {(DeliveryStatus.DELIVERED, 1)}


def test_where_a_lane_is_full_or_an_endpoint_paused_the_deliveries_wait_for_a_deliver_job(
    ctx: WorkerContext, targets: TargetServer
) -> None:
    from hub.delivery import pauses

    rt = runtime(ctx)
    rt.registry.refresh()
    crm = rt.registry.endpoint("crm")
    assert crm is not None
    lane = rt.lanes.get("crm", crm)
    full = lane.reserve(lane.capacity, crm.timeout)  # the CRM's lane is busy with other sends
    try:
        first = store(ctx, "site", "lead.created", LEAD)
        assert process_events(ctx, [first], send=True)["processed"] == 1
        rt.drain(10)
        rows = deliveries(ctx.engine, first)
        assert rows["crm"].status == DeliveryStatus.PENDING  # left for a deliver job
        assert rows["marketing"].status == DeliveryStatus.DELIVERED
        assert queued_ids(ctx.redis, "default") == [rows["crm"].id]
        assert lane.busy == full.taken  # the routing job took no room it did not use

        pauses.pause(ctx.engine, "marketing")
        second = store(ctx, "site", "lead.created", LEAD)
        assert process_events(ctx, [second], send=True)["processed"] == 1
        rt.drain(10)
        rows = deliveries(ctx.engine, second)
        assert rows["crm"].status == rows["marketing"].status == DeliveryStatus.PENDING
        assert rows["auto-reply"].status == DeliveryStatus.DELIVERED
        sent = [seen.path.split("/")[1] for seen in targets.seen]
        assert sent == ["marketing"]  # the first event's only
    finally:
        lane.release(full.taken)


def test_a_worker_racing_on_the_same_event_leaves_one_delivery_per_route(
    ctx: WorkerContext,
) -> None:
    event_id = store(ctx, "site", "lead.created", LEAD)
    with Session(ctx.engine) as session:
        tenant_id = session.get(IntegrationEvent, event_id).tenant_id  # type: ignore[union-attr]
    raced: list[str] = []

    def other_worker_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO webhook_deliveries") and not raced:
            raced.append(ids.new_id(ids.DELIVERY))
            racer = ctx.engine.connect()  # a second connection commits the same route first
            with racer.begin():
                racer.execute(
                    WebhookDelivery.__table__.insert().values(
                        id=raced[0], event_id=event_id, tenant_id=tenant_id,
                        mapping="lead-created", route="crm", endpoint="crm", queue="default",
                        status=DeliveryStatus.PENDING, attempts=0,
                        created_at=utcnow(), updated_at=utcnow(),
                    )
                )  # fmt: skip
            racer.close()

    event.listen(ctx.engine, "before_cursor_execute", other_worker_first)
    try:
        counts = process_events(ctx, [event_id])
    finally:
        event.remove(ctx.engine, "before_cursor_execute", other_worker_first)
    assert counts["processed"] == 1 and counts["deliveries"] == 2
    rows = deliveries(ctx.engine, event_id)
    assert set(rows) == {"crm", "auto-reply", "marketing"}
    assert rows["crm"].id == raced[0]
    assert status(ctx.engine, event_id).status == EventStatus.PROCESSED


def test_an_event_leased_by_a_live_job_is_skipped_and_one_whose_job_died_is_handed_on(
    ctx: WorkerContext,
) -> None:
    from sqlalchemy import update

    from hub.core.models import utcnow
    from hub.mapping.routing import EVENT_LEASE, expire_event_leases
    from workers.sweeper import SweepContext

    sweep = SweepContext(ctx.settings, ctx.engine, ctx.redis)
    live, dead = (store(ctx, "site", "lead.created", LEAD) for _ in range(2))
    with ctx.engine.begin() as conn:  # two jobs took them; one is still running, one died
        for event_id, lease in ((live, EVENT_LEASE), (dead, -1.0)):
            conn.execute(
                update(IntegrationEvent)
                .where(IntegrationEvent.id == event_id)
                .values(
                    status=EventStatus.PROCESSING,
                    lease_expires_at=utcnow() + timedelta(seconds=lease),
                )
            )
    assert process_events(ctx, [live])["processed"] == 0, "leased by a live job: skipped"
    assert expire_event_leases(sweep) == 1
    assert expire_event_leases(sweep) == 0, "handed on once"
    row = status(ctx.engine, dead)
    assert (row.status, row.lease_expires_at) == (EventStatus.QUEUED, None)
    jobs = get_queue(ctx.redis, "default").jobs
    assert [(job.func_name, job.args[0]) for job in jobs] == [(PROCESS_EVENTS, [dead])]
    assert process_events(ctx, [dead])["processed"] == 1
    done = status(ctx.engine, dead)
    assert (done.status, done.lease_expires_at) == (EventStatus.PROCESSED, None)


def test_a_lease_the_server_rolled_back_is_taken_again_and_the_job_goes_on(
    ctx: WorkerContext, settings: Settings, mysql_driver: str
) -> None:
    """Another transaction holds the event past this worker's lock wait, and the server rolls
    the lease back (as it does the loser of a deadlock with another worker's lease): the lease
    is tried again, and the job routes the event instead of failing and leaving it to the
    sweeper."""
    event_id = store(ctx, "site", "lead.created", LEAD)
    impatient = create_db_engine(with_mysql_driver(settings, mysql_driver), pool_size=2)

    @event.listens_for(impatient, "connect")
    def one_second_lock_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.close()

    worker = dataclasses.replace(ctx, engine=impatient, sessions=session_factory(impatient))
    holder = ctx.engine.connect()
    held = holder.begin()
    holder.execute(
        select(IntegrationEvent.id).where(IntegrationEvent.id == event_id).with_for_update()
    )
    letting_go = threading.Timer(1.5, held.commit)  # after the first attempt's wait ran out
    letting_go.start()
    try:
        counts = process_events(worker, [event_id])
    finally:
        letting_go.join()
        holder.close()
        impatient.dispose()
    assert counts["processed"] == 1
    assert status(ctx.engine, event_id).status == EventStatus.PROCESSED
    assert len(deliveries(ctx.engine, event_id)) == 3


def test_a_mapping_job_that_failed_on_a_database_cut_runs_again(
    ctx: WorkerContext, settings: Settings, targets: TargetServer
) -> None:
    from hub.core.db import create_db_engine
    from hub.core.queues import enqueue_ids, requeue_failed_jobs
    from tests.faults import database_proxy
    from workers import context
    from workers.worker import HubWorker

    if not settings.effective_database_url.startswith("mysql"):
        pytest.skip("SQLite is a file: there is no connection to cut")
    event_ids = [store(ctx, "site", "lead.created", LEAD) for _ in range(3)]
    enqueue_ids(ctx.redis, PROCESS_EVENTS, "default", event_ids)
    with database_proxy(settings.effective_database_url) as proxy:
        cut_settings = settings.model_copy(
            update={"database_url": proxy.url_for(settings.effective_database_url)}
        )
        cut_engine = create_db_engine(cut_settings)
        proxy.cut()
        cut_ctx = WorkerContext(
            settings=cut_settings,
            engine=cut_engine,
            redis=ctx.redis,
            cipher=ctx.cipher,
            sessions=session_factory(cut_engine),
            cache=ctx.cache,
        )
        context.install(cut_ctx)
        try:
            HubWorker([get_queue(ctx.redis, "default")], connection=ctx.redis).work(
                burst=True, max_jobs=1
            )
        finally:
            context.install(None)
            cut_engine.dispose()
    failed = get_queue(ctx.redis, "default").failed_job_registry
    assert failed.count == 1, "the job failed while the database was cut"
    assert [status(ctx.engine, e).status for e in event_ids] == [EventStatus.QUEUED] * 3

    assert requeue_failed_jobs(ctx.redis) == 3
    assert failed.count == 0 and requeue_failed_jobs(ctx.redis) == 0
    context.install(ctx)
    try:
        HubWorker([get_queue(ctx.redis, "default")], connection=ctx.redis).work(
            burst=True, max_jobs=1
        )
    finally:
        context.install(None)
    assert [status(ctx.engine, e).status for e in event_ids] == [EventStatus.PROCESSED] * 3
