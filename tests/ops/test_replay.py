"""Replay: the same delivery again through `retry` (bulk through `low`), from CLI and admin API."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from starlette.testclient import TestClient

from hub.cli import cli
from hub.core.dead_letters import DeadLetterFilter
from hub.core.errors import NotFound
from hub.core.models import DeadLetter, DeadLetterStatus, DeliveryStatus, WebhookDelivery
from hub.core.queues import get_queue
from hub.core.settings import Settings
from hub.delivery.jobs import deliver_batch
from hub.ops import replay
from tests.delivery.conftest import Reply, TargetServer, World
from tests.ops.conftest import Keys, auth, dead_delivery, work
from workers.context import WorkerContext


def letter_of(ctx: WorkerContext, delivery_id: str) -> DeadLetter:
    with ctx.sessions() as session:
        found = session.scalar(select(DeadLetter).where(DeadLetter.delivery_id == delivery_id))
        assert found is not None
        return found


def status_of(ctx: WorkerContext, delivery_id: str) -> DeliveryStatus:
    with ctx.sessions() as session:
        found = session.get(WebhookDelivery, delivery_id)
        assert found is not None
        return found.status


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "HUB_DATABASE_URL": str(settings.database_url),
        "HUB_REDIS_URL": str(settings.redis_url),
        "HUB_DATA_DIR": str(settings.data_dir),
    }


def test_a_replay_resends_the_same_delivery_and_closes_the_letter_on_success(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    delivery_id = dead_delivery(ctx, world, target)
    letter = letter_of(ctx, delivery_id)

    report = replay.request_dead_letter(ctx.engine, ctx.redis, letter.id, actor="cli:test")
    assert (report.queue, report.count("replay"), len(report.jobs)) == ("retry", 1, 1)
    assert get_queue(ctx.redis, "retry").count == 1
    assert letter_of(ctx, delivery_id).status == DeadLetterStatus.OPEN  # asking changes nothing
    work(ctx.redis)

    assert status_of(ctx, delivery_id) == DeliveryStatus.DELIVERED
    closed = letter_of(ctx, delivery_id)
    assert closed.status == DeadLetterStatus.REPLAYED
    assert [s.headers["webhook-id"] for s in target.seen] == [delivery_id, delivery_id]

    again = replay.request_dead_letter(ctx.engine, ctx.redis, letter.id, actor="cli:test")
    assert again.count("skip") == 1 and again.jobs == []
    assert again.items[0].reason == "dead letter already replayed"


def test_replaying_an_event_already_delivered_does_nothing_and_says_so(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url)
    delivery_id = world.delivery("crm", {"n": 1})
    deliver_batch(ctx, [delivery_id])
    with ctx.sessions() as session:
        event_id = session.get(WebhookDelivery, delivery_id).event_id  # type: ignore[union-attr]
    report = replay.request_event(ctx.engine, ctx.redis, event_id, actor="cli:test")
    assert report.jobs == [] and report.count("skip") == 1
    assert report.items[0].reason == "all 1 deliveries already delivered"
    assert get_queue(ctx.redis, "retry").count == 0
    with pytest.raises(NotFound):
        replay.request_event(ctx.engine, ctx.redis, "evt_nope", actor="cli:test")


def test_bulk_replay_filters_dry_runs_and_goes_through_low(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    dead = [dead_delivery(ctx, world, target) for _ in range(3)]
    nothing = replay.request_bulk(
        ctx.engine, ctx.redis, DeadLetterFilter(endpoint="erp"), actor="cli:test"
    )
    assert nothing.items == [] and nothing.jobs == []

    dry = replay.request_bulk(
        ctx.engine, ctx.redis, DeadLetterFilter(endpoint="crm"), dry_run=True, actor="cli:test"
    )
    assert dry.count("replay") == 3 and dry.jobs == []
    assert get_queue(ctx.redis, "low").count == 0

    seen: list[int] = []
    bulk = replay.request_bulk(
        ctx.engine,
        ctx.redis,
        DeadLetterFilter(source="site"),
        limit=2,
        progress=seen.append,
        actor="cli:test",
    )
    assert bulk.queue == "low" and bulk.count("replay") == 2 and sum(seen) == 2
    work(ctx.redis)
    statuses = [status_of(ctx, d) for d in dead]
    assert statuses.count(DeliveryStatus.DELIVERED) == 2
    assert statuses.count(DeliveryStatus.DEAD) == 1


def test_the_cli_replays_lists_shows_and_discards(
    ctx: WorkerContext, world: World, target: TargetServer, settings: Settings
) -> None:
    runner, env = CliRunner(), cli_env(settings)
    first, second = dead_delivery(ctx, world, target), dead_delivery(ctx, world, target)
    one, two = letter_of(ctx, first), letter_of(ctx, second)

    listed = runner.invoke(cli, ["dead-letters", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert {d["id"] for d in orjson.loads(listed.output)["dead_letters"]} == {one.id, two.id}
    shown = runner.invoke(cli, ["dead-letters", "show", one.id], env=env)
    assert shown.exit_code == 0 and orjson.loads(shown.output)["deliveries"][0]["id"] == first

    dry = runner.invoke(cli, ["replay", "--dead-letter", one.id, "--dry-run"], env=env)
    assert dry.exit_code == 0 and f"would resend (delivery {first})" in dry.output
    assert get_queue(ctx.redis, "retry").count == 0

    discarded = runner.invoke(cli, ["dead-letters", "discard", two.id], env=env)
    assert discarded.exit_code == 0 and f"{two.id}: discarded" in discarded.output
    bulk = runner.invoke(cli, ["replay", "--all", "--endpoint", "crm"], env=env)
    assert bulk.exit_code == 0, bulk.output
    assert "replaying 1, skipped 0 (jobs on the low queue)" in bulk.output
    work(ctx.redis)
    assert status_of(ctx, first) == DeliveryStatus.DELIVERED
    assert status_of(ctx, second) == DeliveryStatus.DEAD


def test_cli_bad_input_exits_2_and_empty_filters_exit_0(world: World, settings: Settings) -> None:
    runner, env = CliRunner(), cli_env(settings)
    unknown = runner.invoke(cli, ["replay", "--dead-letter", "dlq_nope"], env=env)
    assert unknown.exit_code == 2 and "dead letter dlq_nope not found" in unknown.output
    event = runner.invoke(cli, ["replay", "--event", "evt_nope"], env=env)
    assert event.exit_code == 2 and "event evt_nope not found" in event.output
    both = runner.invoke(cli, ["replay", "--all", "--event", "evt_x"], env=env)
    assert both.exit_code == 2
    stray = runner.invoke(cli, ["replay", "--event", "evt_x", "--source", "site"], env=env)
    assert stray.exit_code == 2 and "go with --all" in stray.output
    when = runner.invoke(cli, ["replay", "--all", "--since", "yesterday"], env=env)
    assert when.exit_code == 2 and "not a time" in when.output
    empty = runner.invoke(cli, ["replay", "--all", "--source", "nowhere"], env=env)
    assert empty.exit_code == 0
    assert "no open dead letter matches these filters" in empty.output
    show = runner.invoke(cli, ["dead-letters", "show", "dlq_nope"], env=env)
    assert show.exit_code == 2


def test_the_admin_api_replays_within_the_keys_tenant(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient, keys: Keys
) -> None:
    delivery_id = dead_delivery(ctx, world, target)
    letter = letter_of(ctx, delivery_id)

    hidden = client.post(f"/admin/dead-letters/{letter.id}/replay", headers=auth(keys.other_admin))
    assert hidden.status_code == 404
    listed = client.get("/admin/dead-letters", headers=auth(keys.other_admin)).json()
    assert listed == {"dead_letters": [], "total": 0}

    dry = client.post(
        "/admin/dead-letters/replay",
        headers=auth(keys.admin),
        json={"endpoint": "crm", "dry_run": True},
    )
    assert dry.status_code == 200 and dry.json()["replay"] == 1
    bad = client.post("/admin/dead-letters/replay", headers=auth(keys.admin), json={"x": 1})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    none = client.post(
        "/admin/dead-letters/replay", headers=auth(keys.admin), json={"source": "nowhere"}
    )
    assert none.status_code == 200
    assert none.json()["summary"] == "no open dead letter matches these filters"

    answer = client.post(f"/admin/dead-letters/{letter.id}/replay", headers=auth(keys.admin))
    assert answer.status_code == 202 and answer.json()["queue"] == "retry"
    target.replies(Reply(status=200))
    work(ctx.redis)
    assert letter_of(ctx, delivery_id).status == DeadLetterStatus.REPLAYED
    shown = client.get(f"/admin/dead-letters/{letter.id}", headers=auth(keys.operator)).json()
    assert shown["status"] == "replayed" and shown["tenant"] == "clinic-1"


def test_a_retrying_replay_is_closed_once_a_later_attempt_delivers(
    ctx: WorkerContext, world: World, target: TargetServer
) -> None:
    """A permanent 4xx leaves attempts unused: the replay's failure retries, and the sweeper
    closes the dead letter when the retry delivers."""
    world.endpoint("erp", kind="webhook", url=target.url, retry={"max_attempts": 5})
    delivery_id = world.delivery("erp", {"n": 1})
    target.replies(Reply(status=400))
    deliver_batch(ctx, [delivery_id])
    letter = letter_of(ctx, delivery_id)
    target.replies(Reply(status=500))
    replay.request_dead_letter(ctx.engine, ctx.redis, letter.id, actor="cli:test")
    work(ctx.redis)
    assert status_of(ctx, delivery_id) == DeliveryStatus.RETRYING
    assert letter_of(ctx, delivery_id).status == DeadLetterStatus.OPEN

    with ctx.engine.begin() as conn:  # the retry is due later: make it due now
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=None)
        )
    deliver_batch(ctx, [delivery_id])
    assert status_of(ctx, delivery_id) == DeliveryStatus.DELIVERED
    assert replay.close_delivered_dead_letters(ctx) == 1
    assert letter_of(ctx, delivery_id).status == DeadLetterStatus.REPLAYED
