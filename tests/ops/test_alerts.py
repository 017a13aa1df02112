"""Alerts posted to a webhook endpoint by the sweeper: once while they last, again on return."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks import Webhook

from hub.core.queues import DELIVER, enqueue_ids, get_queue
from hub.core.settings import Settings
from hub.ops.alerts import post_alerts
from tests.delivery.conftest import TargetServer, World
from workers.context import WorkerContext
from workers.sweeper import SweepContext

SECRET = "whsec_" + base64.b64encode(b"alerts-signing-secret-of-32-byte").decode()


def test_each_alert_is_posted_once_signed_and_again_when_it_returns(
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAGER_SECRET", SECRET)
    world.endpoint("pager", kind="webhook", url=target.url, signing_secret="env:PAGER_SECRET")
    sweep = SweepContext(
        settings.model_copy(update={"alert_endpoint": "pager", "alert_interval": 0}),
        ctx.engine,
        ctx.redis,
    )
    assert post_alerts(sweep) == 0  # all calm

    enqueue_ids(ctx.redis, DELIVER, "default", ["dlv_a"])  # no worker alive
    assert post_alerts(sweep) == 1
    assert post_alerts(sweep) == 0  # still the same alert: not posted twice
    [seen] = target.seen
    payload = Webhook(SECRET).verify(seen.body, seen.headers)
    assert payload["type"] == "hub.alert" and payload["alert"]["key"] == "workers"

    get_queue(ctx.redis, "default").empty()
    assert post_alerts(sweep) == 0  # cleared, and forgotten
    enqueue_ids(ctx.redis, DELIVER, "default", ["dlv_b"])
    assert post_alerts(sweep) == 1
    assert len(target.seen) == 2


def test_without_an_alert_endpoint_nothing_is_posted(
    ctx: WorkerContext, world: World, settings: Settings
) -> None:
    enqueue_ids(ctx.redis, DELIVER, "default", ["dlv_a"])
    assert post_alerts(SweepContext(settings, ctx.engine, ctx.redis)) == 0
