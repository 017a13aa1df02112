"""Pausing an endpoint: its deliveries wait untried, and resume releases them at its rate limit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from hub.core.models import DeliveryAttempt, DeliveryStatus, RetryQueue, WebhookDelivery
from hub.delivery import pauses
from hub.delivery.jobs import deliver_batch
from hub.delivery.sweeps import enqueue_due_retries
from tests.delivery.conftest import TargetServer, World
from workers.context import WorkerContext
from workers.sweeper import SweepContext


def rows(ctx: WorkerContext, ids: list[str]) -> list[WebhookDelivery]:
    with ctx.sessions() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
        return list(session.scalars(query.order_by(WebhookDelivery.id)))


def test_a_paused_endpoint_holds_its_deliveries_without_trying_them(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url)
    world.endpoint("erp", kind="webhook", url=target.url + "/erp")
    held = [world.delivery("crm", {"n": i}) for i in range(3)]
    other = world.delivery("erp", {"n": 9})
    assert pauses.pause(ctx.engine, "crm", by="ops") is True
    assert pauses.pause(ctx.engine, "crm", by="ops") is False  # already paused

    counts = deliver_batch(ctx, [*held, other])

    assert counts["paused"] == 3 and counts["delivered"] == 1
    assert [r.status for r in rows(ctx, held)] == [DeliveryStatus.PAUSED] * 3
    assert [r.attempts for r in rows(ctx, held)] == [0, 0, 0]  # no retry burned
    assert [s.path for s in target.seen] == ["/erp"]
    with ctx.sessions() as session:
        assert session.scalars(select(DeliveryAttempt.delivery_id)).all() == [other]
        assert session.scalars(select(RetryQueue)).all() == []  # nothing re-enqueues them
    assert pauses.waiting(ctx.engine, ["crm", "erp"]) == {"crm": 3}
    assert list(pauses.paused(ctx.engine)) == ["crm"]

    deliver_batch(ctx, held)  # picked up again (a requeued job): still parked, still untried
    assert target.seen[1:] == []


def test_resume_releases_them_spread_at_the_rate_limit_and_they_are_delivered(
    ctx: WorkerContext, world: World, target: TargetServer, sweep: SweepContext
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, rate_limit="10/s")
    pauses.pause(ctx.engine, "crm")
    held = [world.delivery("crm", {"n": i}) for i in range(4)]
    deliver_batch(ctx, held)

    released = pauses.resume(ctx.engine, "crm", rate_limit="10/s")

    assert released == 4 and pauses.paused(ctx.engine) == {}
    with ctx.sessions() as session:
        due = list(session.scalars(select(RetryQueue.next_retry_at).order_by("next_retry_at")))
    gaps = [later - earlier for earlier, later in zip(due, due[1:], strict=False)]
    assert gaps == [timedelta(milliseconds=100)] * 3  # one every 0.1 s: the endpoint's 10/s
    assert {r.status for r in rows(ctx, held)} == {DeliveryStatus.RETRYING}

    enqueue_due_retries(sweep)  # the first is due now
    deliver_batch(ctx, held)
    assert {r.status for r in rows(ctx, held)} <= {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.RETRYING,
    }
    assert rows(ctx, held)[0].status == DeliveryStatus.DELIVERED
    assert rows(ctx, held)[0].attempts == 1
    assert pauses.spacing(None) == 0.0 and pauses.spacing("600/minute") == 0.1
