"""Expired leases are attempts: a delivery that kills its worker every time ends dead. A due
retry whose job was lost goes again within seconds; one waiting behind a backlog, never twice."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

from redis import Redis
from sqlalchemy import insert, select, update

from hub.core.inflight import CONFIRM_AFTER
from hub.core.models import (
    DeadLetter,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import DELIVER, enqueue_ids, get_queue
from hub.delivery.sweeps import (
    LEASE_LOST_REASON,
    enqueue_due_retries,
    expire_leases,
    relay_retries,
)
from hub.ops.replay import run_dead_letters
from tests.delivery.conftest import Reply, TargetServer, World
from tests.delivery.test_jobs import attempts, delivery
from tests.ingress.test_relay import carried_ids
from tests.workers.test_worker import StartWorker, start_worker, wait_for
from workers.context import WorkerContext
from workers.sweeper import SweepContext, sweep_once

__all__ = ["start_worker"]  # the fixture


def _lose_the_lease(ctx: WorkerContext, dlv: str) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == dlv)
            .values(
                status=DeliveryStatus.DELIVERING, lease_expires_at=utcnow() - timedelta(seconds=1)
            )
        )


def test_a_delivery_whose_lease_expires_every_time_ends_dead_and_replay_brings_it_back(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, retry={"max_attempts": 3})
    dlv = world.delivery("crm", {"name": "Ana"})
    statuses = []
    for _ in range(3):
        _lose_the_lease(ctx, dlv)
        assert expire_leases(sweep) == 1
        statuses.append(delivery(ctx, dlv).status)
    assert statuses == [DeliveryStatus.RETRYING, DeliveryStatus.RETRYING, DeliveryStatus.DEAD]
    row = delivery(ctx, dlv)
    assert row.attempts == 3, f"each lost send is an attempt: {row.attempts}"
    assert [(a.number, a.outcome) for a in attempts(ctx, dlv)] == [
        (1, "retry"),
        (2, "retry"),
        (3, "dead"),
    ]
    with ctx.sessions() as session:
        letters = list(session.scalars(select(DeadLetter).where(DeadLetter.delivery_id == dlv)))
        event = session.get(IntegrationEvent, row.event_id)
    assert [(dl.reason, dl.attempts) for dl in letters] == [(LEASE_LOST_REASON, 3)]
    assert event is not None and event.status == EventStatus.FAILED

    assert run_dead_letters(ctx, [letters[0].id])["replayed"] == 1
    assert delivery(ctx, dlv).status == DeliveryStatus.DELIVERED
    assert len(target.seen) == 1


def test_a_poison_delivery_that_kills_its_worker_every_time_ends_dead_after_its_attempts(
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    sweep: SweepContext,
    start_worker: StartWorker,
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="1s", retry={"max_attempts": 2})
    target.default = Reply(delay=0.5)
    dlv = world.delivery("crm", {"name": "Ana"})
    enqueue_ids(ctx.redis, DELIVER, "default", [dlv])
    started = time.monotonic()
    kills = 0
    while delivery(ctx, dlv).status != DeliveryStatus.DEAD:
        assert time.monotonic() - started < 60, f"not dead after {kills} kills"
        worker = start_worker("default", "retry")
        target.arrived.clear()
        assert target.arrived.wait(30), "the worker never sent"
        os.kill(worker.pid, signal.SIGKILL)  # the send kills its worker
        worker.wait(10)
        kills += 1
        wait_for(
            lambda: (
                sweep_once(sweep) is not None
                and delivery(ctx, dlv).status != DeliveryStatus.DELIVERING
            ),
            15,
            "the lease expires",
        )
    took = time.monotonic() - started
    row = delivery(ctx, dlv)
    assert kills == 2 and row.attempts == 2, f"{kills} kills, {row.attempts} attempts"
    assert row.last_error and "lease expired" in row.last_error
    assert len(target.seen) == 2, f"dead after {took:.1f}s and {len(target.seen)} sends"


def _due_retries(ctx: WorkerContext, world: World, count: int) -> list[str]:
    """`count` deliveries that failed once, their retry due now."""
    world.endpoint("crm", kind="webhook", url="http://127.0.0.1:9")
    ids = [world.delivery("crm", {"n": n}) for n in range(count)]
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(status=DeliveryStatus.RETRYING, attempts=1, next_attempt_at=now)
        )
        conn.execute(
            insert(RetryQueue),
            [
                {"delivery_id": d, "next_retry_at": now, "attempt": 1, "created_at": now}
                for d in ids
            ],
        )
    return ids


def _retry_rounds(sweep: SweepContext, seconds: float, *, reenqueue_after: float) -> int:
    """The sweeper's two retry tasks every 0.25 s for `seconds`; how many they enqueued."""
    moved = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        moved += enqueue_due_retries(sweep, reenqueue_after=reenqueue_after)
        moved += relay_retries(sweep, reenqueue_after=reenqueue_after)
        time.sleep(0.25)
    return moved


def test_a_due_retry_whose_job_was_flushed_is_enqueued_again_within_seconds(
    ctx: WorkerContext, world: World, sweep: SweepContext, redis: Redis
) -> None:
    ids = _due_retries(ctx, world, 40)
    assert enqueue_due_retries(sweep) == 40
    redis.flushdb()  # the jobs are gone; the rows wait REENQUEUE_AFTER (120 s) by age alone
    flushed = time.monotonic()
    moved = 0
    while moved < len(ids) and time.monotonic() - flushed < 15:
        moved += enqueue_due_retries(sweep) + relay_retries(sweep)
        time.sleep(0.25)
    took = time.monotonic() - flushed
    assert moved == len(ids), f"{moved} of {len(ids)} retries enqueued again in {took:.1f} s"
    assert took < CONFIRM_AFTER + 2, f"the flushed retries went again {took:.1f} s later"
    counts = carried_ids(redis)
    assert set(counts) == set(ids) and set(counts.values()) == {1}, (
        f"{sum(counts.values())} enqueued ids for {len(ids)} retries, {len(counts)} distinct"
    )
    assert get_queue(redis, "retry").count >= 1


def test_retries_waiting_behind_a_backlog_are_never_enqueued_twice(
    ctx: WorkerContext, world: World, sweep: SweepContext, redis: Redis
) -> None:
    ids = _due_retries(ctx, world, 100)
    # no worker takes them; the age safety net comes round every 0.5 s instead of 120 s
    assert enqueue_due_retries(sweep, reenqueue_after=0.5) == 100
    jobs = get_queue(redis, "retry").count

    moved = _retry_rounds(sweep, CONFIRM_AFTER + 1.5, reenqueue_after=0.5)
    counts = carried_ids(redis)
    assert (moved, get_queue(redis, "retry").count) == (0, jobs), (
        f"{moved} of 100 waiting retries enqueued again; {jobs} jobs became "
        f"{get_queue(redis, 'retry').count}"
    )
    assert set(counts) == set(ids) and set(counts.values()) == {1}
