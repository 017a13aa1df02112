"""Expired leases are attempts: a delivery that kills its worker every time ends dead."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

from sqlalchemy import select, update

from hub.core.models import (
    DeadLetter,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import DELIVER, enqueue_ids
from hub.delivery.sweeps import LEASE_LOST_REASON, expire_leases
from hub.ops.replay import run_dead_letters
from tests.delivery.conftest import Reply, TargetServer, World
from tests.delivery.test_jobs import attempts, delivery
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
