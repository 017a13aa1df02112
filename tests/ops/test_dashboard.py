"""rq-dashboard at /rq: operator key only; its requeue ends in a correct state in our tables."""

from __future__ import annotations

import base64

from rq.registry import FailedJobRegistry
from starlette.testclient import TestClient

from hub.core.models import (
    DeadLetter,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    WebhookDelivery,
)
from hub.ops import replay
from tests.delivery.conftest import Reply, TargetServer, World
from tests.ops.conftest import Keys, auth, dead_delivery, work
from workers.context import WorkerContext


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{key}".encode()).decode()}


def test_the_dashboard_asks_browsers_for_the_operator_key(client: TestClient, keys: Keys) -> None:
    anonymous = client.get("/rq/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert client.get("/rq/", headers=basic(keys.admin)).status_code == 403
    assert client.get("/rq/", headers=auth(keys.ingest)).status_code == 403

    page = client.get("/rq/", headers=basic(keys.operator))
    assert page.status_code == 200
    assert "<title>RQ dashboard</title>" in page.text
    assert "/rq/static/css/main.css" in page.text  # links carry the mount prefix
    assert client.get("/rq/static/css/main.css", headers=basic(keys.operator)).status_code == 200
    queues = client.get("/rq/0/data/queues.json", headers=basic(keys.operator)).json()
    assert isinstance(queues["queues"], list)


def test_changes_from_another_origin_are_refused(client: TestClient, keys: Keys) -> None:
    headers = basic(keys.operator) | {"Origin": "https://evil.example"}
    response = client.post("/rq/requeue/retry", headers=headers)
    assert response.status_code == 403


def test_requeuing_a_failed_replay_from_the_dashboard_delivers_and_closes_the_dead_letter(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient, keys: Keys
) -> None:
    delivery_id = dead_delivery(ctx, world, target)
    with ctx.sessions() as session:
        letter_id = session.query(DeadLetter.id).filter_by(delivery_id=delivery_id).scalar()

    # the operator replays while the target is still down: the job fails, visibly
    target.replies(Reply(status=503))
    report = replay.request_dead_letter(ctx.engine, ctx.redis, letter_id, actor="cli:test")
    [job_id] = report.jobs
    work(ctx.redis)
    failed = FailedJobRegistry("retry", connection=ctx.redis)
    assert job_id in failed.get_job_ids()
    with ctx.sessions() as session:
        letters = session.query(DeadLetter).filter_by(delivery_id=delivery_id).all()
        assert [(dl.id, dl.status) for dl in letters] == [(letter_id, DeadLetterStatus.OPEN)]
        assert letters[0].attempts == 2
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == DeliveryStatus.DEAD

    # the target is fixed; the operator presses "requeue" in the dashboard
    response = client.post(f"/rq/job/{job_id}/requeue", headers=basic(keys.operator))
    assert response.status_code == 200 and response.json() == {"status": "OK"}
    assert job_id not in failed.get_job_ids()
    work(ctx.redis)

    with ctx.sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        letter = session.get(DeadLetter, letter_id)
        assert delivery is not None and letter is not None
        assert delivery.status == DeliveryStatus.DELIVERED
        assert letter.status == DeadLetterStatus.REPLAYED and letter.resolved_at is not None
        event = delivery.event_id
        from hub.core.models import IntegrationEvent

        assert session.get(IntegrationEvent, event).status == EventStatus.PROCESSED  # type: ignore[union-attr]
    webhook_ids = {seen.headers.get("webhook-id") for seen in target.seen}
    assert webhook_ids == {delivery_id}  # three sends, one webhook-id
    assert len(target.seen) == 3
