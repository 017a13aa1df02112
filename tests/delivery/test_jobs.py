"""deliver_batch against real targets, the real database and Redis; the sweeper's tasks too."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from redis import Redis
from sqlalchemy import select, update
from standardwebhooks import Webhook

from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import get_queue
from hub.delivery.breaker import CircuitBreaker, CircuitState
from hub.delivery.jobs import deliver_batch
from hub.delivery.sweeps import enqueue_due_retries, expire_leases, relay_pending
from tests.delivery.conftest import Reply, TargetServer, World
from workers.context import WorkerContext
from workers.sweeper import SweepContext
from workers.worker import HubWorker

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = {"schedule": ["50ms", "50ms", "50ms"], "jitter": 0}


def delivery(ctx: WorkerContext, delivery_id: str) -> WebhookDelivery:
    with ctx.sessions() as session:
        found = session.get(WebhookDelivery, delivery_id)
        assert found is not None
        return found


def attempts(ctx: WorkerContext, delivery_id: str) -> list[DeliveryAttempt]:
    with ctx.sessions() as session:
        query = select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
        return list(session.scalars(query.order_by(DeliveryAttempt.id)))


def retry_row(ctx: WorkerContext, delivery_id: str) -> RetryQueue | None:
    with ctx.sessions() as session:
        return session.scalar(select(RetryQueue).where(RetryQueue.delivery_id == delivery_id))


def dead_letters(ctx: WorkerContext) -> list[DeadLetter]:
    with ctx.sessions() as session:
        return list(session.scalars(select(DeadLetter)))


def run_until(sweep: SweepContext, done: Callable[[], bool], timeout: float = 10) -> None:
    """The sweeper and a burst worker, in turns, as production runs them side by side."""
    from workers.sweeper import sweep_once

    deadline = time.monotonic() + timeout
    queues = [
        get_queue(sweep.redis, q) for q in ("high", "default", "notifications", "low", "retry")
    ]
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        sweep_once(sweep)
        HubWorker(queues, connection=sweep.redis).work(burst=True)
        time.sleep(0.02)


def test_a_delivery_arrives_signed_and_its_attempt_is_recorded(
    ctx: WorkerContext, world: World, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINIC_1_CRM_SECRET", SECRET)
    world.endpoint("crm", kind="webhook", url=target.url, signing_secret="env:{TENANT}_CRM_SECRET")
    dlv = world.delivery("crm", {"name": "Ana"}, path="/leads")

    assert deliver_batch(ctx, [dlv]) == {"skipped": 0, "delivered": 1}

    seen = target.seen[0]
    assert seen.path == "/leads" and seen.headers["webhook-id"] == dlv
    assert Webhook(SECRET).verify(seen.body, seen.headers) == {"name": "Ana"}
    row = delivery(ctx, dlv)
    assert row.status == DeliveryStatus.DELIVERED and row.attempts == 1
    assert row.delivered_at is not None and row.lease_expires_at is None
    [attempt] = attempts(ctx, dlv)
    assert (attempt.number, attempt.status_code, attempt.outcome) == (1, 200, "delivered")
    assert attempt.response_excerpt == '{"ok": true}' and attempt.error_class is None
    assert attempt.duration_ms >= 0 and attempt.started_at is not None
    assert deliver_batch(ctx, [dlv]) == {"skipped": 1}  # a duplicate job sends nothing
    assert len(target.seen) == 1


def test_a_flaky_target_gets_it_on_the_third_attempt_with_the_same_webhook_id(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, retry=FAST)
    target.replies(Reply(500), Reply(500), Reply(200))
    dlv = world.delivery("crm", {"name": "Ana"})

    assert deliver_batch(ctx, [dlv])["retrying"] == 1
    queued = retry_row(ctx, dlv)
    assert queued is not None and queued.attempt == 1 and queued.reason == "http_500"
    assert delivery(ctx, dlv).status == DeliveryStatus.RETRYING
    assert delivery(ctx, dlv).last_error == "HTTP 500"

    run_until(sweep, lambda: delivery(ctx, dlv).status == DeliveryStatus.DELIVERED)

    assert [a.status_code for a in attempts(ctx, dlv)] == [500, 500, 200]
    assert [a.outcome for a in attempts(ctx, dlv)] == ["retry", "retry", "delivered"]
    assert {s.headers["webhook-id"] for s in target.seen} == {dlv}
    assert delivery(ctx, dlv).attempts == 3 and retry_row(ctx, dlv) is None


def test_a_slow_target_times_out_and_the_delivery_waits_for_its_retry(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="200ms", retry={"base": "1h"})
    target.replies(Reply(delay=1))
    dlv = world.delivery("crm", {"name": "Ana"})

    assert deliver_batch(ctx, [dlv])["retrying"] == 1

    [attempt] = attempts(ctx, dlv)
    assert attempt.error_class == "timeout" and attempt.status_code is None
    queued = retry_row(ctx, dlv)
    assert queued is not None
    wait = (queued.next_retry_at - utcnow()).total_seconds()
    assert 0.8 * 3600 - 5 < wait <= 1.2 * 3600  # base 1h, jitter ±20 %


def test_410_is_dead_at_once_with_a_dead_letter_and_a_failed_event(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url)
    target.replies(Reply(410, body=b'{"error": "gone"}'))
    dlv = world.delivery("crm", {"name": "Ana"})

    assert deliver_batch(ctx, [dlv])["dead"] == 1

    row = delivery(ctx, dlv)
    assert row.status == DeliveryStatus.DEAD and row.attempts == 1
    [letter] = dead_letters(ctx)
    assert (letter.delivery_id, letter.event_id, letter.endpoint) == (dlv, row.event_id, "crm")
    assert letter.stage == DeadLetterStage.DELIVERY and letter.source == "site"
    assert letter.reason == "permanent: HTTP 410" and letter.attempts == 1
    assert retry_row(ctx, dlv) is None
    with ctx.sessions() as session:
        event = session.get(IntegrationEvent, row.event_id)
        assert event is not None and event.status == EventStatus.FAILED
        assert dlv in (event.error or "")
    assert attempts(ctx, dlv)[0].response_excerpt == '{"error": "gone"}'


def test_a_delivery_that_exhausts_its_attempts_is_dead(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, retry={"max_attempts": 2, **FAST})
    target.default = Reply(502)
    dlv = world.delivery("crm", {"name": "Ana"})
    deliver_batch(ctx, [dlv])

    run_until(sweep, lambda: delivery(ctx, dlv).status == DeliveryStatus.DEAD)

    [letter] = dead_letters(ctx)
    assert letter.reason == "gave up after 2 attempts: HTTP 502" and letter.attempts == 2
    assert len(target.seen) == 2


def test_429_waits_as_long_as_retry_after_says(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, retry=FAST)
    target.replies(Reply(429, headers={"Retry-After": "30"}))
    dlv = world.delivery("crm", {"name": "Ana"})

    deliver_batch(ctx, [dlv])

    queued = retry_row(ctx, dlv)
    assert queued is not None and queued.reason == "http_429"
    assert 28 < (queued.next_retry_at - utcnow()).total_seconds() <= 30


def test_the_circuit_opens_defers_without_using_attempts_half_opens_and_closes(
    ctx: WorkerContext, world: World, target: TargetServer, redis: Redis
) -> None:
    world.endpoint(
        "crm",
        kind="webhook",
        url=target.url,
        retry=FAST,
        circuit={"failures": 2, "recovery": "300ms"},
    )
    target.default = Reply(503)
    first = [world.delivery("crm", {"n": i}) for i in range(2)]
    assert deliver_batch(ctx, first)["retrying"] == 2
    breaker = CircuitBreaker(redis, "crm")
    assert breaker.state() == CircuitState.OPEN

    later = world.delivery("crm", {"n": 2})
    assert deliver_batch(ctx, [later]) == {"skipped": 0, "deferred": 1}
    assert len(target.seen) == 2  # nothing sent into the open circuit
    row = delivery(ctx, later)
    assert row.status == DeliveryStatus.RETRYING and row.attempts == 0
    assert attempts(ctx, later) == []
    queued = retry_row(ctx, later)
    assert queued is not None and queued.reason == "circuit_open" and queued.attempt == 0

    time.sleep(0.35)
    assert breaker.state() == CircuitState.HALF_OPEN
    target.default = Reply(200)
    both = [later, world.delivery("crm", {"n": 3})]
    assert deliver_batch(ctx, both) == {"skipped": 0, "delivered": 1, "deferred": 1}
    assert delivery(ctx, later).status == DeliveryStatus.DELIVERED  # the oldest is the probe
    queued = retry_row(ctx, both[1])
    assert queued is not None and queued.reason == "circuit_half_open"
    assert breaker.state() == CircuitState.CLOSED

    with ctx.engine.begin() as conn:  # the deferred one is due now
        conn.execute(update(WebhookDelivery).values(next_attempt_at=None))
    assert deliver_batch(ctx, [both[1]])["delivered"] == 1


def test_the_outgoing_rate_limit_defers_rather_than_fails(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, rate_limit="2/min")
    batch = [world.delivery("crm", {"n": i}) for i in range(5)]

    assert deliver_batch(ctx, batch) == {"skipped": 0, "delivered": 2, "deferred": 3}

    assert len(target.seen) == 2
    waiting = [d for d in batch if delivery(ctx, d).status != DeliveryStatus.DELIVERED]
    assert len(waiting) == 3
    for dlv in waiting:
        row = delivery(ctx, dlv)
        assert row.status == DeliveryStatus.RETRYING and row.attempts == 0
        queued = retry_row(ctx, dlv)
        assert queued is not None and queued.reason == "rate_limited"
        assert 0 < (queued.next_retry_at - utcnow()).total_seconds() <= 75


def test_a_redis_flush_in_the_middle_of_a_retry_schedule_loses_nothing(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext, redis: Redis
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, retry={"schedule": ["300ms"]})
    target.replies(Reply(500))
    dlv = world.delivery("crm", {"name": "Ana"})
    assert deliver_batch(ctx, [dlv])["retrying"] == 1

    redis.flushdb()  # the schedule lives in retry_queue, not in Redis
    time.sleep(0.4)
    assert enqueue_due_retries(sweep) == 1
    assert get_queue(redis, "retry").count == 1
    redis.flushdb()  # lost again, after the sweeper enqueued it
    assert enqueue_due_retries(sweep) == 0  # not due again before REENQUEUE_AFTER…
    with ctx.engine.begin() as conn:  # …which we let pass
        conn.execute(update(RetryQueue).values(next_retry_at=utcnow() - timedelta(seconds=1)))

    run_until(sweep, lambda: delivery(ctx, dlv).status == DeliveryStatus.DELIVERED)
    assert [a.status_code for a in attempts(ctx, dlv)] == [500, 200]


def test_a_delivery_leased_by_another_worker_is_left_alone(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url)
    dlv = world.delivery("crm", {"name": "Ana"})
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery).values(
                status=DeliveryStatus.DELIVERING, lease_expires_at=utcnow() + timedelta(seconds=30)
            )
        )
    assert deliver_batch(ctx, [dlv]) == {"skipped": 1}
    assert target.seen == []


def test_expired_leases_go_back_to_retry_and_are_delivered(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url)
    dlv = world.delivery("crm", {"name": "Ana"})
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery).values(
                status=DeliveryStatus.DELIVERING, lease_expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    assert expire_leases(sweep) == 1
    row = delivery(ctx, dlv)
    assert row.status == DeliveryStatus.RETRYING and "lease expired" in (row.last_error or "")
    assert [a.error_class for a in attempts(ctx, dlv)] == ["lease_expired"]
    assert expire_leases(sweep) == 0

    run_until(sweep, lambda: delivery(ctx, dlv).status == DeliveryStatus.DELIVERED)


def test_a_delayed_first_attempt_goes_to_its_own_queue_when_due(
    ctx: WorkerContext, world: World, sweep: SweepContext, redis: Redis
) -> None:
    world.endpoint("whatsapp", kind="zapi", url="http://127.0.0.1:9", instance="i", token="env:T")
    dlv = world.delivery("whatsapp", {"phone": "1", "message": "m"}, queue="notifications")
    with ctx.engine.begin() as conn:
        conn.execute(
            RetryQueue.__table__.insert().values(
                delivery_id=dlv, next_retry_at=utcnow(), attempt=0, created_at=utcnow()
            )
        )
    assert enqueue_due_retries(sweep) == 1
    assert get_queue(redis, "notifications").count == 1
    assert get_queue(redis, "retry").count == 0


def test_pending_deliveries_that_were_never_enqueued_are_relayed(
    ctx: WorkerContext, world: World, sweep: SweepContext, redis: Redis
) -> None:
    world.endpoint("crm", kind="webhook", url="http://127.0.0.1:9")
    fresh = world.delivery("crm", {"n": 1})
    stale = world.delivery("crm", {"n": 2})
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == stale)
            .values(updated_at=utcnow() - timedelta(minutes=5))
        )
    assert relay_pending(sweep) == 1
    [job] = get_queue(redis, "default").jobs
    assert job.args[0] == [stale] and fresh not in job.args[0]
    assert relay_pending(sweep) == 0


def test_an_undefined_endpoint_makes_a_dead_letter_that_says_so(
    ctx: WorkerContext, world: World
) -> None:
    dlv = world.delivery("nowhere", {"n": 1})
    assert deliver_batch(ctx, [dlv])["dead"] == 1
    [letter] = dead_letters(ctx)
    assert "nowhere is not defined" in letter.reason and letter.attempts == 0


def test_a_deactivated_tenants_deliveries_wait_without_using_attempts(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    from sqlalchemy.orm import Session

    from hub.ops.tenants import set_active

    world.endpoint("crm", kind="webhook", url=target.url)
    dlv = world.delivery("crm", {"name": "Ana"})
    with Session(ctx.engine) as session, session.begin():
        set_active(session, "clinic-1", False)

    assert deliver_batch(ctx, [dlv]) == {"skipped": 0, "deferred": 1}

    assert target.seen == [] and attempts(ctx, dlv) == []
    row = delivery(ctx, dlv)
    assert row.status == DeliveryStatus.RETRYING and row.attempts == 0
    queued = retry_row(ctx, dlv)
    assert queued is not None and queued.reason == "tenant_inactive" and queued.attempt == 0
    assert 25 < (queued.next_retry_at - utcnow()).total_seconds() <= 37

    with Session(ctx.engine) as session, session.begin():
        set_active(session, "clinic-1", True)
    with ctx.engine.begin() as conn:  # its next look is due now
        conn.execute(update(WebhookDelivery).values(next_attempt_at=None))
    assert deliver_batch(ctx, [dlv])["delivered"] == 1
    assert delivery(ctx, dlv).attempts == 1 and len(target.seen) == 1
