"""Sync jobs in the database: apply, claims by several sweepers, a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from hub.core.db import create_db_engine
from hub.core.models import IntegrationEvent, SyncJob, SyncJobStatus, SyncRun, utcnow
from hub.core.queues import QueueName, get_queue
from hub.core.settings import Settings
from hub.sync.schedule import apply_syncs, claim_due_syncs
from tests.hub_processes import HubProcesses
from tests.sync.conftest import T0, CrmApi, add_tenant, item, job, sync_config
from workers import jobs
from workers.context import WorkerContext
from workers.sweeper import SweepContext


def jobs_of(engine: Engine) -> list[tuple[str, bool]]:
    with Session(engine) as session:
        return [(r.name, r.active) for r in session.scalars(select(SyncJob).order_by(SyncJob.id))]


def test_apply_writes_one_job_per_sync_and_tenant_and_is_idempotent(
    engine: Engine, crm: CrmApi
) -> None:
    for slug in ("clinic-1", "clinic-2"):
        add_tenant(engine, slug)
    syncs = {
        "everyone": sync_config(crm),
        "only-two": sync_config(crm, tenants=["clinic-2", "clinic-9"]),
    }
    changes = apply_syncs(engine, syncs)
    assert sorted(changes.added) == ["everyone/clinic-1", "everyone/clinic-2", "only-two/clinic-2"]
    assert changes.unknown_tenants == ["only-two: clinic-9"]
    again = apply_syncs(engine, syncs)
    assert again.summary() == "0 added, 0 updated, 0 removed, 3 unchanged"

    with engine.begin() as conn:
        conn.execute(update(SyncJob).values(high_water_mark=T0))
    changed = apply_syncs(engine, {"everyone": sync_config(crm, schedule="*/5 * * * *")})
    assert sorted(changed.updated) == ["everyone/clinic-1", "everyone/clinic-2"]
    assert changed.removed == ["only-two/clinic-2"]
    assert jobs_of(engine) == [("everyone", True), ("everyone", True), ("only-two", False)]
    with Session(engine) as session:
        rows = session.scalars(select(SyncJob).where(SyncJob.active.is_(True))).all()
        assert {r.interval_seconds for r in rows} == {300}
        assert {r.high_water_mark for r in rows} == {T0}  # a changed definition keeps its mark


def test_two_sweepers_at_once_claim_each_due_job_once(
    ctx: WorkerContext, settings: Settings, crm: CrmApi
) -> None:
    for n in range(6):
        add_tenant(ctx.engine, f"tenant-{n}")
    apply_syncs(ctx.engine, {"crm-events": sync_config(crm)})
    engines = [create_db_engine(settings) for _ in range(2)]
    try:
        for _round in range(3):
            with ctx.engine.begin() as conn:
                conn.execute(
                    update(SyncJob).values(
                        status=SyncJobStatus.IDLE, next_run_at=utcnow(), lease_expires_at=None
                    )
                )
            ctx.redis.flushdb()
            counts: list[int] = []
            barrier = threading.Barrier(2)

            def sweep(engine: Engine, barrier: threading.Barrier, counts: list[int]) -> None:
                barrier.wait()
                counts.append(claim_due_syncs(SweepContext(settings, engine, ctx.redis)))

            threads = [threading.Thread(target=sweep, args=(e, barrier, counts)) for e in engines]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sum(counts) == 6
            queued = get_queue(ctx.redis, QueueName.LOW).get_jobs()
            assert sorted(j.args[0][0] for j in queued) == sorted(
                str(r.id) for r in _all_jobs(ctx.engine)
            )
            assert claim_due_syncs(SweepContext(settings, ctx.engine, ctx.redis)) == 0
    finally:
        for e in engines:
            e.dispose()
    # a job enqueued twice (a lease that expired while it waited) runs once
    jid = _all_jobs(ctx.engine)[0].id
    crm.items = [item(1)]
    assert jobs.run_sync([str(jid), str(jid)]) == [True, False]


def _all_jobs(engine: Engine) -> list[SyncJob]:
    with Session(engine) as session:
        return list(session.scalars(select(SyncJob).order_by(SyncJob.id)))


@pytest.fixture
def worker_process(settings: Settings, tmp_path: Path) -> Iterator[object]:
    processes = HubProcesses(settings, tmp_path)
    yield lambda: processes.start("worker", "low", HUB_SYNC_LEASE="1")
    processes.close()


def test_a_worker_killed_mid_run_is_retried_after_its_lease_and_skips_nothing(
    ctx: WorkerContext, settings: Settings, crm: CrmApi, tenant: int, worker_process: object
) -> None:
    crm.per_page = 10
    crm.items = [item(n) for n in range(30)]
    crm.hold_page = 2  # the worker stores page 1, then waits on page 2
    short = settings.model_copy(update={"sync_lease": 1.0})
    sweep = SweepContext(short, ctx.engine, ctx.redis)
    apply_syncs(ctx.engine, {"crm-events": sync_config(crm)})
    jid = _all_jobs(ctx.engine)[0].id

    assert claim_due_syncs(sweep) == 1
    proc = worker_process()  # type: ignore[operator]
    assert crm.held.wait(60), "the worker never asked for page 2"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    row = job(ctx.engine, jid)
    assert row.status == SyncJobStatus.RUNNING and row.run_id is not None
    assert row.high_water_mark is None
    with Session(ctx.engine) as session:
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 10

    crm.hold_page = None
    crm.release.set()
    assert claim_due_syncs(sweep) == 0  # the lease still holds
    deadline = time.monotonic() + 10
    while claim_due_syncs(sweep) == 0:  # once it has expired, one claim takes it over
        assert time.monotonic() < deadline
        time.sleep(0.2)
    get_queue(ctx.redis, QueueName.LOW).empty()
    assert jobs.run_sync([str(jid)]) == [True]

    with Session(ctx.engine) as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.started_at)).all()
        stored = session.scalar(select(func.count()).select_from(IntegrationEvent))
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert "lease expired" in (runs[0].error or "")
    assert (runs[1].items, runs[1].created, runs[1].duplicates) == (30, 20, 10)
    assert stored == 30
    row = job(ctx.engine, jid)
    assert row.status == SyncJobStatus.IDLE and row.failures == 0
    assert row.high_water_mark is not None


def test_a_tenant_without_the_sources_url_is_not_scheduled(
    engine: Engine, crm: CrmApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slug in ("clinic-1", "clinic-2"):
        add_tenant(engine, slug)
    monkeypatch.setenv("CLINIC_2_CRM_API_URL", crm.url)
    monkeypatch.delenv("CLINIC_1_CRM_API_URL", raising=False)
    changes = apply_syncs(
        engine, {"crm-events": sync_config(crm, request={"url": "env:{TENANT}_CRM_API_URL"})}
    )
    assert changes.added == ["crm-events/clinic-2"]
    assert changes.unset == ["crm-events/clinic-1: CLINIC_1_CRM_API_URL"]
