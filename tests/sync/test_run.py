"""A sync run against a real HTTP stand-in for the CRM: pagination, window, duplicates, retries."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from hub.core.models import (
    EventStatus,
    IntegrationEvent,
    SyncJob,
    SyncJobStatus,
    SyncRun,
    SyncRunStatus,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import PROCESS_EVENTS, RUN_SYNC, QueueName, get_queue
from hub.ingress.events import NewEvent, store_events
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from hub.mapping.routing import process_events
from hub.sync.run import run_job
from hub.sync.schedule import claim_due_syncs
from tests.conftest import ROOT
from tests.sync.conftest import T0, CrmApi, Misbehave, applied, item, job
from workers import jobs
from workers.context import WorkerContext
from workers.sweeper import SweepContext


def events(engine: Engine) -> dict[str, IntegrationEvent]:
    with Session(engine) as session:
        return {e.external_id: e for e in session.scalars(select(IntegrationEvent))}


def received_as_webhooks(ctx: WorkerContext, tenant: int, numbers: range) -> None:
    """What POST /webhooks/crm stores for these items (the same store, the same keys)."""
    store_events(
        ctx.engine,
        [
            NewEvent(
                tenant_id=tenant,
                source="crm",
                external_id=item(n)["id"],
                event_type="client.registered",
                queue="default",
                payload=ctx.cipher.encrypt(orjson.dumps(item(n))),
                sealed_headers=None,
            )
            for n in numbers
        ],
    )


def test_missed_items_become_events_and_deliveries_received_ones_are_duplicates(
    ctx: WorkerContext, sweep: SweepContext, crm: CrmApi, tenant: int
) -> None:
    crm.items = [item(n) for n in range(250)]
    received_as_webhooks(ctx, tenant, range(0, 250, 2))  # every other one arrived
    apply_mappings(ctx.engine, ctx.redis, load_mappings(ROOT / "mappings"))
    jid = applied(ctx.engine, crm)

    assert claim_due_syncs(sweep) == 1
    low = get_queue(ctx.redis, QueueName.LOW)
    [queued] = low.get_jobs()
    assert queued.func_name == RUN_SYNC and list(queued.args) == [[str(jid)]]
    low.remove(queued)
    assert jobs.run_sync([str(jid)]) == [True]

    with Session(ctx.engine) as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.status == SyncRunStatus.SUCCEEDED
    assert (run.pages, run.items, run.created, run.duplicates, run.errors) == (4, 250, 125, 125, 0)
    assert run.high_water_mark == T0 + timedelta(minutes=249)
    row = job(ctx.engine, jid)
    assert row.status == SyncJobStatus.IDLE and row.high_water_mark == run.high_water_mark
    assert row.next_run_at > utcnow() + timedelta(minutes=14)
    assert [r.params.get("page") for r in crm.seen] == ["1", "2", "3", "4"]
    assert "updated_since" not in crm.seen[0].params  # no mark, no `initial`: everything

    stored = events(ctx.engine)
    assert len(stored) == 250
    missed = [e for e in stored.values() if e.queue == "low"]
    assert len(missed) == 125 and all(e.status == EventStatus.QUEUED for e in missed)
    assert all(stored[item(n)["id"]].queue == "default" for n in range(0, 250, 2))
    assert ctx.cipher.decrypt(stored[item(1)["id"]].payload or b"") == orjson.dumps(item(1))
    pending = [j for j in low.get_jobs() if j.func_name == PROCESS_EVENTS]
    assert sum(len(j.args[0]) for j in pending) == 125

    for batch in pending:  # the mapping step, as the `low` worker runs it
        process_events(ctx, batch.args[0])
    with Session(ctx.engine) as session:
        delivered_events = set(session.scalars(select(WebhookDelivery.event_id)))
    assert delivered_events == {e.id for e in missed}  # finance-setup for each missed client

    # the next run asks from the mark minus the overlap; nothing new: all duplicates
    crm.seen.clear()
    with ctx.engine.begin() as conn:
        conn.execute(update(SyncJob).values(next_run_at=utcnow()))
    assert claim_due_syncs(sweep) == 1
    assert jobs.run_sync([str(jid)]) == [True]
    assert crm.seen[0].params["updated_since"] == "2026-11-01T15:59:00Z"  # 16:09 - 10 min
    with Session(ctx.engine) as session:
        second = session.scalars(select(SyncRun).order_by(SyncRun.started_at.desc())).first()
        assert second is not None
    assert (second.items, second.created, second.duplicates) == (11, 0, 11)
    assert len(events(ctx.engine)) == 250


@pytest.mark.parametrize(
    ("mode", "pagination"),
    [
        ("cursor", {"kind": "cursor", "param": "cursor", "cursor": "$.next_cursor"}),
        ("link", {"kind": "link"}),
    ],
)
def test_cursor_and_link_pagination_reach_every_page(
    ctx: WorkerContext, crm: CrmApi, tenant: int, mode: str, pagination: dict[str, str]
) -> None:
    crm.mode, crm.per_page = mode, 10
    crm.items = [item(n) for n in range(25)]
    jid = applied(ctx.engine, crm, pagination=pagination)
    result = run_job(ctx, jid, trigger="manual")
    assert result is not None and result.ok, result
    assert (result.progress.pages, result.progress.created) == (3, 25)
    assert len(events(ctx.engine)) == 25
    if mode == "cursor":
        assert [r.params.get("cursor") for r in crm.seen] == [None, "10", "20"]
    else:
        assert [r.params.get("p") for r in crm.seen] == [None, "2", "3"]


def test_the_sources_misbehaviour_is_retried_and_the_run_completes(
    ctx: WorkerContext, crm: CrmApi, tenant: int
) -> None:
    crm.items = [item(n) for n in range(5)]
    crm.script = [
        Misbehave(503),
        Misbehave(429, headers={"retry-after": "0"}),
        Misbehave(200, body=b"<html>maintenance</html>"),
        Misbehave(200, body=b"[]", delay=1.0),  # past the 0.5 s timeout
    ]
    jid = applied(ctx.engine, crm, retry={"max_attempts": 5}, request={"timeout": "500ms"})
    result = run_job(ctx, jid, trigger="manual")
    assert result is not None and result.ok, result
    assert (result.progress.retries, result.progress.created) == (4, 5)
    with Session(ctx.engine) as session:
        run = session.scalars(select(SyncRun)).one()
    assert run.retries == 4 and run.status == SyncRunStatus.SUCCEEDED


def test_failures_keep_the_mark_and_are_visible(
    ctx: WorkerContext, crm: CrmApi, tenant: int
) -> None:
    crm.items = [item(n) for n in range(3)]
    jid = applied(ctx.engine, crm)
    first = run_job(ctx, jid, trigger="manual")
    assert first is not None and first.ok
    mark = job(ctx.engine, jid).high_water_mark
    assert mark == T0 + timedelta(minutes=2)

    crm.items.append(item(3))
    crm.script = [Misbehave(502)] * 3  # max_attempts 3: gives up
    failed = run_job(ctx, jid, trigger="manual")
    assert failed is not None and not failed.ok
    assert "HTTP 502" in (failed.error or "") and "gave up after 3 attempts" in (failed.error or "")
    row = job(ctx.engine, jid)
    assert row.status == SyncJobStatus.FAILED and row.failures == 1
    assert row.high_water_mark == mark and row.run_id is None
    assert row.next_run_at > utcnow()

    crm.script = [Misbehave(401, body=b'{"error": "bad token"}')]  # permanent: no retry
    again = run_job(ctx, jid, trigger="manual")
    assert again is not None and not again.ok and "not retried" in (again.error or "")
    assert len(crm.seen) == 2 + 3 + 1  # pages 1 and 2 (empty), 3 tries, 1
    row = job(ctx.engine, jid)
    assert row.failures == 2 and row.high_water_mark == mark

    # the next good run picks up what the failed ones missed, and resets the count
    done = run_job(ctx, jid, trigger="manual")
    assert done is not None and done.ok and done.progress.created == 1
    row = job(ctx.engine, jid)
    assert row.failures == 0 and row.high_water_mark == T0 + timedelta(minutes=3)
    with Session(ctx.engine) as session:
        statuses = list(session.scalars(select(SyncRun.status).order_by(SyncRun.started_at)))
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 4
    assert statuses == ["succeeded", "failed", "failed", "succeeded"]


def test_a_run_never_overlaps_another(ctx: WorkerContext, crm: CrmApi, tenant: int) -> None:
    import threading

    crm.items = [item(n) for n in range(3)]
    crm.hold_page = 1
    jid = applied(ctx.engine, crm)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(run_job(ctx, jid, trigger="manual")))
    first.start()
    assert crm.held.wait(10)
    assert run_job(ctx, jid, trigger="manual") is None  # held: a second run is refused
    crm.release.set()
    first.join(10)
    assert results and results[0] is not None
    with Session(ctx.engine) as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 1
