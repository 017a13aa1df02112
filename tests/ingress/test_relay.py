"""The relay re-enqueues on evidence (hub.core.inflight): a killed worker's events go again within
seconds, a backlog is never enqueued twice, a flush brings every waiting event back once. The
rounds read RQ's jobs through one InFlight, as the sweeper does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.core.inflight import CONFIRM_AFTER, PULSE_TTL, InFlight
from hub.core.models import EventStatus, IntegrationEvent, Tenant
from hub.core.queues import PRIORITY, PROCESS_EVENTS, enqueue_ids, get_queue
from hub.core.settings import Settings
from hub.ingress.events import enqueue_events, mark_queued, store_events
from hub.ingress.relay import requeue_lost
from tests.ingress.test_events import new


@pytest.fixture
def tenant_id(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        tenant = Tenant(slug="clinic-1", name="Clinic 1")
        session.add(tenant)
        session.flush()
        return tenant.id


def carried_ids(redis: Redis) -> Counter[str]:
    """How many queued jobs carry each id."""
    counts: Counter[str] = Counter()
    for name in PRIORITY:
        for job in get_queue(redis, name).jobs:
            counts.update(job.args[0])
    return counts


def queued_events(engine: Engine, tenant_id: int, count: int) -> list[str]:
    stored = store_events(engine, [new(tenant_id, f"e{i}") for i in range(count)])
    return [s.event_id for s in stored]


def sweep_rounds(engine: Engine, redis: Redis, seconds: float) -> int:
    """requeue_lost every 0.25 s for `seconds`; returns how many it moved in all."""
    moved = 0
    inflight = InFlight()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        moved += requeue_lost(engine, redis, inflight=inflight)
        time.sleep(0.25)
    return moved


def test_events_waiting_behind_a_backlog_are_never_enqueued_twice(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    requeue_lost(engine, redis)  # sets the sentinel: from here on, evidence only
    ids = queued_events(engine, tenant_id, 2000)
    enqueue_events(engine, redis, [(i, "default") for i in ids])
    jobs = get_queue(redis, "default").count

    moved = sweep_rounds(engine, redis, CONFIRM_AFTER + 1)
    counts = carried_ids(redis)
    assert (moved, get_queue(redis, "default").count) == (0, jobs), (
        f"{moved} of 2000 waiting events enqueued again; {jobs} jobs became "
        f"{get_queue(redis, 'default').count}"
    )
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def test_after_a_flush_every_waiting_event_is_enqueued_once(
    engine: Engine, redis: Redis, tenant_id: int
) -> None:
    ids = queued_events(engine, tenant_id, 300)
    enqueue_events(engine, redis, [(i, "default") for i in ids])
    requeue_lost(engine, redis)

    redis.flushdb()
    moved = sweep_rounds(engine, redis, CONFIRM_AFTER + 1)
    counts = carried_ids(redis)
    assert moved == 300, f"{moved} of 300 events enqueued again after FLUSHDB"
    assert set(counts) == set(ids) and set(counts.values()) == {1}, (
        f"{sum(counts.values())} enqueued ids for 300 events, {len(counts)} distinct"
    )


@pytest.fixture
def worker_process(settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": settings.redis_url or "",
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "worker", "default"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_a_killed_workers_events_are_enqueued_again_within_seconds(
    engine: Engine,
    redis: Redis,
    tenant_id: int,
    settings: Settings,
    worker_process: subprocess.Popen[bytes],
) -> None:
    ids = queued_events(engine, tenant_id, 20)
    mark_queued(engine, ids)
    requeue_lost(engine, redis)  # sets the sentinel (and enqueues the events: dropped below)
    redis.delete(get_queue(redis, "default").key)
    started = get_queue(redis, "default").started_job_registry
    with engine.connect() as lock:  # the worker's lease on the events waits for this lock
        if engine.dialect.name == "sqlite":
            lock.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            lock.begin()
            lock.execute(
                select(IntegrationEvent.id).where(IntegrationEvent.id.in_(ids)).with_for_update()
            )
        enqueue_ids(redis, PROCESS_EVENTS, "default", ids)
        deadline = time.monotonic() + 30
        while not started.get_job_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.get_job_ids(), "the worker never started the job"
        assert requeue_lost(engine, redis) == 0  # its job is in hand, its worker alive

        os.kill(worker_process.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert worker_process.wait(10) == -signal.SIGKILL
        lock.rollback()
    moved = 0
    inflight = InFlight()
    while moved < len(ids) and time.monotonic() - killed < 30:
        moved += requeue_lost(engine, redis, inflight=inflight)
        time.sleep(0.25)
    took = time.monotonic() - killed
    assert moved == len(ids), f"{moved} of {len(ids)} events enqueued again in {took:.1f} s"
    assert took < PULSE_TTL + CONFIRM_AFTER + 3, (
        f"the killed worker's events were enqueued again {took:.1f} s after the kill"
    )
    assert started.get_job_ids(), "RQ alone still counts the dead job as started"
    assert set(carried_ids(redis)) == set(ids)
    with engine.connect() as conn:
        statuses = set(
            conn.scalars(select(IntegrationEvent.status).where(IntegrationEvent.id.in_(ids)))
        )
    assert statuses == {EventStatus.QUEUED}
