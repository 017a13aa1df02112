"""Endpoint lanes: a slow target fills its own lane and never holds another endpoint's sends."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import select

from hub.core import clock
from hub.core.models import DeliveryStatus, RetryQueue, WebhookDelivery
from hub.core.queues import DELIVER, enqueue_ids, get_queue
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.jobs import deliver_batch
from hub.delivery.lanes import DEFAULT_CONCURRENCY, ROOM_WAIT, Lane, concurrency_of
from tests.delivery.conftest import Reply, TargetServer, World
from workers.context import WorkerContext
from workers.worker import HubWorker

SLOW = 2.5  # seconds the slow target takes to answer


def delivered_at(ctx: WorkerContext, ids: list[str]) -> dict[str, datetime | None]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.status, WebhookDelivery.delivered_at).where(
                WebhookDelivery.id.in_(ids)
            )
        ).all()
    return {r.id: r.delivered_at if r.status == DeliveryStatus.DELIVERED else None for r in rows}


def wait_delivered(ctx: WorkerContext, ids: list[str], timeout: float = 30) -> list[datetime]:
    deadline = time.monotonic() + timeout
    while True:
        found = delivered_at(ctx, ids)
        if all(found.get(i) for i in ids):
            return sorted(t for t in found.values() if t is not None)
        assert time.monotonic() < deadline, f"not delivered within {timeout} s: {found}"
        time.sleep(0.05)


@pytest.fixture
def slow() -> TargetServer:
    server = TargetServer().start()
    server.default = Reply(delay=SLOW)
    yield server  # type: ignore[misc]
    server.stop()


def test_a_slow_target_does_not_slow_another_endpoint_on_the_same_queue(
    ctx: WorkerContext, world: World, target: TargetServer, slow: TargetServer
) -> None:
    """One worker, one queue: a job mixing both endpoints (the slow ones first), then a job of
    the fast endpoint alone. Every fast delivery is done before the first slow one is."""
    world.endpoint("slow", kind="webhook", url=slow.url, timeout="10s")
    world.endpoint("fast", kind="webhook", url=target.url, timeout="10s")
    slow_ids = [world.delivery("slow", {"n": i}) for i in range(6)]
    fast_ids = [world.delivery("fast", {"n": i}) for i in range(12)]
    enqueue_ids(ctx.redis, DELIVER, "default", slow_ids + fast_ids[:6], batch_size=12)
    enqueue_ids(ctx.redis, DELIVER, "default", fast_ids[6:], batch_size=6)

    started = clock.now(ctx.engine)  # delivered_at is on the database's clock too
    HubWorker([get_queue(ctx.redis, "default")], connection=ctx.redis).work(burst=True)
    fast_times = wait_delivered(ctx, fast_ids)
    slow_times = wait_delivered(ctx, slow_ids)

    fast_done = (fast_times[-1] - started).total_seconds()
    slow_first = (slow_times[0] - started).total_seconds()
    figures = (
        f"the last fast delivery done {fast_done:.2f} s after the start, the first slow one "
        f"{slow_first:.2f} s (the slow target answers after {SLOW} s)"
    )
    assert fast_times[-1] < slow_times[0], figures
    assert fast_done < SLOW, figures  # neither job waited for the slow target
    assert len(slow.seen) == 6 and len(target.seen) == 12, figures


def test_a_batch_finishes_each_endpoint_group_as_it_completes(
    ctx: WorkerContext, world: World, target: TargetServer, slow: TargetServer
) -> None:
    """Even waiting for the whole batch (as replay does), the fast group is recorded first."""
    world.endpoint("slow", kind="webhook", url=slow.url)
    world.endpoint("fast", kind="webhook", url=target.url)
    slow_ids = [world.delivery("slow", {"n": i}) for i in range(3)]
    fast_ids = [world.delivery("fast", {"n": i}) for i in range(3)]

    counts = deliver_batch(ctx, slow_ids + fast_ids)

    assert counts == {"skipped": 0, "delivered": 6}, counts
    times = delivered_at(ctx, slow_ids + fast_ids)
    fast_last = max(t for i, t in times.items() if i in fast_ids and t)
    slow_first = min(t for i, t in times.items() if i in slow_ids and t)
    gap = (slow_first - fast_last).total_seconds()
    assert gap > 1.0, f"the slow group was recorded {gap:.2f} s after the fast one"


def test_a_lane_sends_as_many_at_once_as_it_has_threads_and_no_more(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    target.default = Reply(delay=0.2)
    world.endpoint("three", kind="webhook", url=target.url, concurrency=3)
    batch = [world.delivery("three", {"n": i}) for i in range(9)]  # three rounds of three

    counts = deliver_batch(ctx, batch)

    assert counts == {"skipped": 0, "delivered": 9}, counts
    assert target.peak == 3, f"{target.peak} sends at once in a lane of 3 threads"
    assert sorted(s.json()["n"] for s in target.seen) == list(range(9))


def test_a_full_lane_defers_the_rest_of_a_batch_without_using_an_attempt(
    ctx: WorkerContext, world: World, slow: TargetServer
) -> None:
    world.endpoint("slow", kind="webhook", url=slow.url, concurrency=1)
    batch = [world.delivery("slow", {"n": i}) for i in range(6)]

    counts = deliver_batch(ctx, batch, wait=False)

    assert counts == {"skipped": 0, "deferred": 2, "sending": 1}, counts  # 4 rounds of 1
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(WebhookDelivery.status, WebhookDelivery.attempts, RetryQueue.reason)
            .join(RetryQueue, RetryQueue.delivery_id == WebhookDelivery.id)
            .where(WebhookDelivery.id.in_(batch))  # which two: the lease's order, not the list's
        ).all()
    assert [tuple(r) for r in rows] == [(DeliveryStatus.RETRYING, 0, "endpoint_busy")] * 2, rows


def test_concurrency_comes_from_the_rate_limit_and_timeout_unless_configured() -> None:
    def of(**fields: object) -> int:
        return concurrency_of(
            EndpointConfig.model_validate(
                {"kind": "webhook", "url": "https://crm.example", **fields}
            )
        )

    assert of() == DEFAULT_CONCURRENCY
    assert of(rate_limit="10/s", timeout="2s") == 20  # 10 sends a second, each up to 2 s
    assert of(rate_limit="2/min") == 1
    assert of(rate_limit="1000/s") == 32
    assert of(rate_limit="10/s", concurrency=3) == 3


def test_a_lane_takes_a_few_rounds_and_leases_them() -> None:
    lane = Lane("crm", 2)
    try:
        first = lane.reserve(5, timeout=3.0)
        assert (first.taken, first.lease) == (5, 3.0 * 3 + 3.0)
        second = lane.reserve(5, timeout=3.0)
        assert (second.taken, second.lease) == (3, 3.0 * 4 + 3.0)  # 8 = 4 rounds of 2
        lane.release(8)
        assert lane.busy == 0
    finally:
        lane.close()


def test_a_full_lane_that_drains_fast_is_waited_for_and_a_slow_one_is_not() -> None:
    """A lane whose sends take 10 ms frees room for a burst within ROOM_WAIT: the job waits
    and takes it all; one whose sends take 2.5 s would not: the job takes what is free."""
    fast, slow = Lane("fast", 2), Lane("slow", 2)
    try:
        timers = []
        for lane, seconds in ((fast, 0.01), (slow, 2.5)):
            lane.observe(seconds)
            lane.reserve(lane.capacity, timeout=5.0)  # full
            # 4 sends finish: the fast ones at once, the slow ones long after the test
            timers.append(threading.Timer(seconds * 5, lane.release, args=(4,)))
            timers[-1].start()

        started = time.monotonic()
        fast_room = fast.reserve(4, timeout=5.0, wait=ROOM_WAIT)
        fast_waited = time.monotonic() - started
        started = time.monotonic()
        slow_room = slow.reserve(4, timeout=5.0, wait=ROOM_WAIT)
        slow_waited = time.monotonic() - started

        assert fast_room.taken == 4, f"fast lane: took {fast_room.taken} after {fast_waited:.3f}s"
        assert 0.03 < fast_waited < ROOM_WAIT, f"fast lane waited {fast_waited:.3f}s"
        assert slow_room.taken == 0, f"slow lane: took {slow_room.taken}"
        assert slow_waited < 0.02, f"slow lane held the job {slow_waited:.3f}s"
    finally:
        for timer in timers:
            timer.cancel()
        fast.close()
        slow.close()


def test_a_new_lane_whose_speed_is_unknown_is_given_the_room_wait_to_show_it() -> None:
    """The first two chunks of a big job reach a lane that has not sent yet: the second waits
    for the first sends to free room (a guess from the timeout would defer it for 40 s)."""
    lane = Lane("new", 2)
    try:
        lane.reserve(lane.capacity, timeout=10.0)  # full, nothing observed yet
        timer = threading.Timer(0.05, lane.release, args=(4,))
        timer.start()
        started = time.monotonic()
        room = lane.reserve(4, timeout=10.0, wait=ROOM_WAIT)
        waited = time.monotonic() - started
        assert room.taken == 4, f"took {room.taken} after {waited:.3f}s"
        assert waited < ROOM_WAIT, f"waited {waited:.3f}s"
    finally:
        timer.cancel()
        lane.close()
