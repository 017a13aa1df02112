"""GET /status and `hub status`: one snapshot of queues, workers, traffic, endpoints, alerts."""

from __future__ import annotations

from datetime import timedelta

import orjson
from click.testing import CliRunner
from redis import Redis
from starlette.testclient import TestClient

from hub.cli import cli
from hub.core.models import utcnow
from hub.core.queues import DELIVER, enqueue_ids
from hub.core.settings import Settings
from hub.delivery.breaker import CircuitBreaker
from hub.ops.status import collect
from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import Keys, auth, dead_delivery
from workers.context import WorkerContext


def test_a_queue_waiting_too_long_raises_a_backlog_alert(
    ctx: WorkerContext, world: World, settings: Settings
) -> None:
    ids = ["dlv_x", "dlv_y"]
    enqueue_ids(ctx.redis, DELIVER, "notifications", ids, batch_size=1)
    now = utcnow()
    calm = collect(ctx.engine, ctx.redis, settings, now=now)
    assert calm["queues"]["notifications"]["depth"] == 2
    assert calm["queues"]["high"] == {"depth": 0, "oldest_age_s": None}
    assert [a["key"] for a in calm["alerts"]] == ["workers"]  # jobs waiting, nobody working

    later = now + timedelta(seconds=settings.alert_backlog_age + 60)
    late = collect(ctx.engine, ctx.redis, settings, now=later)
    assert late["queues"]["notifications"]["oldest_age_s"] > settings.alert_backlog_age
    assert {"backlog:notifications", "workers"} == {a["key"] for a in late["alerts"]}


def test_failures_dead_letters_and_open_circuits_show_per_endpoint(
    ctx: WorkerContext, world: World, target: TargetServer, settings: Settings
) -> None:
    strict = settings.model_copy(
        update={"alert_failure_min_attempts": 2, "alert_dead_letter_growth": 2}
    )
    for _ in range(3):
        dead_delivery(ctx, world, target)
    CircuitBreaker(ctx.redis, "crm", failures=1).record_failure()

    snapshot = collect(ctx.engine, ctx.redis, strict)

    crm = snapshot["endpoints"]["crm"]
    assert (crm["attempts"], crm["delivered"], crm["failed"]) == (3, 0, 3)
    assert crm["success_rate"] == 0.0
    assert crm["circuit"] == "open"
    assert snapshot["deliveries"]["last_hour"] == {"dead": 3}
    assert snapshot["events"]["last_day"] == {"failed": 3}
    assert snapshot["dead_letters"]["open"] == 3
    assert snapshot["dead_letters"]["open_by_stage"] == {"delivery": 3}
    kinds = {a["key"] for a in snapshot["alerts"]}
    assert {"failure_rate:crm", "circuit:crm", "dead_letters"} <= kinds


def test_status_over_http_is_the_same_snapshot(client: TestClient, keys: Keys) -> None:
    body = client.get("/status", headers=auth(keys.operator)).json()
    assert set(body) >= {"queues", "workers", "events", "deliveries", "endpoints", "retries"}
    assert body["alerts"] == []
    assert body["workers"] == {"alive": 0, "list": []}


def test_hub_status_prints_tables_and_json(
    world: World, settings: Settings, redis: Redis, monkeypatch: object
) -> None:
    env = {
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_REDIS_URL": settings.redis_url,
        "HUB_DATA_DIR": str(settings.data_dir),
    }
    runner = CliRunner()
    table = runner.invoke(cli, ["status"], env=env)
    assert table.exit_code == 0, table.output
    assert "queue" in table.output and "retry" in table.output and "no alerts" in table.output

    enqueue_ids(redis, DELIVER, "low", ["dlv_z"])
    as_json = runner.invoke(cli, ["status", "--json"], env=env)
    assert as_json.exit_code == 1  # an alert: a job waits and no worker is alive
    snapshot = orjson.loads(as_json.output)
    assert snapshot["queues"]["low"]["depth"] == 1
    assert snapshot["alerts"][0]["kind"] == "workers"
