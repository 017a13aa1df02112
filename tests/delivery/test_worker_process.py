"""`hub worker` as a real process: SIGKILL in the middle of a send, SIGTERM with a job in hand."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.core.models import DeliveryAttempt, DeliveryStatus, WebhookDelivery
from hub.core.queues import DELIVER, enqueue_ids
from hub.core.settings import Settings
from tests.delivery.conftest import Reply, TargetServer, World
from tests.delivery.test_jobs import attempts, delivery, run_until
from tests.hub_processes import HubProcesses
from workers.context import WorkerContext
from workers.sweeper import SweepContext


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[object]:
    processes = HubProcesses(settings, tmp_path)
    yield lambda *queues: processes.start("worker", *queues)
    processes.close()


def test_a_worker_killed_mid_send_leaves_a_lease_that_expires_and_the_delivery_completes(
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    sweep: SweepContext,
    start_worker: object,
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="1s")  # lease: 1 s + 2 s
    target.replies(Reply(delay=3))  # the first request hangs
    dlv = world.delivery("crm", {"name": "Ana"})
    enqueue_ids(ctx.redis, DELIVER, "default", [dlv])
    worker = start_worker("default")  # type: ignore[operator]

    assert target.arrived.wait(30), "the worker never sent"
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(10) == -signal.SIGKILL
    row = delivery(ctx, dlv)
    assert row.status == DeliveryStatus.DELIVERING and row.lease_expires_at is not None

    run_until(sweep, lambda: delivery(ctx, dlv).status == DeliveryStatus.DELIVERED, timeout=15)

    # at-least-once: the target saw the same webhook-id twice
    assert [s.headers["webhook-id"] for s in target.seen] == [dlv, dlv]
    assert [a.error_class for a in attempts(ctx, dlv)] == ["lease_expired", None]
    assert [a.outcome for a in attempts(ctx, dlv)] == ["retry", "delivered"]


def test_sigterm_lets_the_job_in_hand_finish_then_the_worker_exits(
    ctx: WorkerContext, world: World, target: TargetServer, start_worker: object
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="5s")
    target.replies(Reply(delay=1))
    dlv = world.delivery("crm", {"name": "Ana"})
    enqueue_ids(ctx.redis, DELIVER, "default", [dlv])
    worker = start_worker("default", "retry")  # type: ignore[operator]

    assert target.arrived.wait(30), "the worker never sent"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0

    with ctx.sessions() as session:
        row = session.get(WebhookDelivery, dlv)
        assert row is not None and row.status == DeliveryStatus.DELIVERED
        tries = session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == dlv))
        assert [a.status_code for a in tries] == [200]


def test_a_secret_set_while_the_worker_runs_is_used_by_the_next_delivery(
    ctx: WorkerContext, world: World, target: TargetServer, start_worker: object
) -> None:
    from hub.core.secrets import set_secret

    world.endpoint(
        "crm", kind="webhook", url=target.url, headers={"Authorization": "secret:CRM_TOKEN"}
    )
    set_secret(ctx.engine, ctx.cipher, ctx.redis, "clinic-1", "CRM_TOKEN", "tok-1", "cli:test")
    start_worker("default")  # type: ignore[operator]
    first = world.delivery("crm", {"n": 1})
    enqueue_ids(ctx.redis, DELIVER, "default", [first])
    wait_for(lambda: delivery(ctx, first).status == DeliveryStatus.DELIVERED)

    set_secret(ctx.engine, ctx.cipher, ctx.redis, "clinic-1", "CRM_TOKEN", "tok-2", "cli:test")
    second = world.delivery("crm", {"n": 2})
    enqueue_ids(ctx.redis, DELIVER, "default", [second])
    wait_for(lambda: delivery(ctx, second).status == DeliveryStatus.DELIVERED)
    assert [s.headers["authorization"] for s in target.seen] == ["tok-1", "tok-2"]


def wait_for(done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
