"""amqp endpoints on the real RabbitMQ: the envelope reaches a bound queue, confirms decide what
is delivered, a cut connection is a retry and the next send reconnects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import select

from hub.core.models import DeliveryStatus, WebhookDelivery
from hub.delivery.adapters import DeliveryRef, OutgoingRequest, Target, Verdict
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.jobs import deliver_batch
from hub.delivery.kinds import Adapters
from tests.conftest import Broker
from tests.delivery.conftest import World
from tests.ingress_support import TcpProxy
from workers.context import WorkerContext


@pytest.fixture
def adapters() -> Iterator[Adapters]:
    pool = Adapters()
    yield pool
    pool.close()


def endpoint(exchange: str, **extra: Any) -> EndpointConfig:
    return EndpointConfig.model_validate(
        {"kind": "amqp", "url": "env:HUBTEST_AMQP_URL", "exchange": exchange, **extra}
    )


def publish(
    adapters: Adapters,
    config: EndpointConfig,
    body: Any = None,
    *,
    routing_key: str | None = None,
    attempt: int = 1,
) -> Any:
    options = {"event_type": "appointment.created", "occurred_at": "2026-11-27T13:05:00.000Z"}
    if routing_key:
        options["routing_key"] = routing_key
    request = OutgoingRequest(body={"id": 7} if body is None else body, options=options)
    ref = DeliveryRef("dlv_01AMQP", attempt, "cor-9")
    return adapters.for_kind(config.kind).send(request, Target("broker", config), ref)


@pytest.fixture
def env(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HUBTEST_AMQP_URL", amqp_url)
    return amqp_url


def test_a_bound_queue_receives_the_seed_004_envelope(
    broker: Broker, adapters: Adapters, env: str
) -> None:
    exchange = broker.exchange("events")
    queue = broker.queue("agenda")
    broker.bind(queue, exchange, "appointment.*")
    outcome = publish(adapters, endpoint(exchange), {"id": 7, "when": "amanhã"}, attempt=3)
    assert outcome.verdict == Verdict.DELIVERED, outcome
    got = broker.get(queue)
    assert got is not None
    method, properties, body = got
    assert method.routing_key == "appointment.created"  # type: ignore[attr-defined]
    assert orjson.loads(body) == {
        "eventId": "dlv_01AMQP",
        "eventType": "appointment.created",
        "occurredAt": "2026-11-27T13:05:00.000Z",
        "sourceService": "hub",
        "payload": {"id": 7, "when": "amanhã"},
    }
    assert properties.delivery_mode == 2 and properties.message_id == "dlv_01AMQP"  # type: ignore[attr-defined]
    assert properties.headers == {"x-correlation-id": "cor-9", "x-retry-count": 2}  # type: ignore[attr-defined]


def test_the_routes_routing_key_wins_and_declare_creates_the_exchange(
    broker: Broker, adapters: Adapters, env: str
) -> None:
    exchange = broker.name("declared")
    broker.exchanges.append(exchange)  # deleted after the test
    config = endpoint(exchange, declare=True)
    first = publish(adapters, config, routing_key="clinic.agenda.changed")
    assert first.verdict == Verdict.RETRY and first.error_class == "amqp_unroutable"
    queue = broker.queue("changed")
    broker.bind(queue, exchange, "clinic.agenda.*")
    assert publish(adapters, config, routing_key="clinic.agenda.changed").verdict == "delivered"
    got = broker.get(queue)
    assert got is not None and got[0].routing_key == "clinic.agenda.changed"  # type: ignore[attr-defined]


def test_an_exchange_that_does_not_exist_is_permanent_and_the_channel_recovers(
    broker: Broker, adapters: Adapters, env: str
) -> None:
    missing = publish(adapters, endpoint(broker.name("missing")))
    assert (missing.verdict, missing.status_code) == (Verdict.DEAD, 404)
    assert "NOT_FOUND" in missing.error and "guest:guest" not in missing.error
    exchange = broker.exchange("after")
    queue = broker.queue("after")
    broker.bind(queue, exchange)
    assert publish(adapters, endpoint(exchange)).verdict == Verdict.DELIVERED


def test_a_cut_connection_is_a_retry_and_the_next_send_reconnects(
    broker: Broker, adapters: Adapters, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange = broker.exchange("cut")
    queue = broker.queue("cut")
    broker.bind(queue, exchange)
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    via_proxy = amqp_url.replace(
        f"{parts.hostname}:{parts.port or 5672}", f"127.0.0.1:{proxy.port}"
    )
    monkeypatch.setenv("HUBTEST_AMQP_URL", via_proxy)
    assert publish(adapters, endpoint(exchange)).verdict == Verdict.DELIVERED
    proxy.cut()
    lost = publish(adapters, endpoint(exchange))
    assert lost.verdict == Verdict.RETRY and lost.error_class == "connection_error"
    monkeypatch.setenv("HUBTEST_AMQP_URL", amqp_url)
    assert publish(adapters, endpoint(exchange)).verdict == Verdict.DELIVERED
    assert broker.get(queue) is not None and broker.get(queue) is not None


def test_a_delivery_job_publishes_once_per_process_connection(
    broker: Broker, env: str, ctx: WorkerContext, world: World
) -> None:
    exchange = broker.exchange("jobs")
    queue = broker.queue("jobs")
    broker.bind(queue, exchange)
    world.endpoint("broker", kind="amqp", url="env:HUBTEST_AMQP_URL", exchange=exchange)
    ids = [world.delivery("broker", {"n": n}) for n in range(5)]
    assert deliver_batch(ctx, ids)["delivered"] == 5
    bodies = [orjson.loads(broker.get(queue)[2]) for _ in ids]  # type: ignore[index]
    assert sorted(b["payload"]["n"] for b in bodies) == list(range(5))
    assert {b["eventId"] for b in bodies} == set(ids)
    with ctx.engine.connect() as conn:
        statuses = set(conn.scalars(select(WebhookDelivery.status)))
    assert statuses == {DeliveryStatus.DELIVERED}
    links = ctx.cache["delivery"].adapters.amqp._links
    assert len(links) == 1


def test_an_amqp_endpoint_without_exchange_or_with_a_plain_url_names_the_key() -> None:
    with pytest.raises(ValueError, match="amqp endpoint needs exchange"):
        EndpointConfig.model_validate({"kind": "amqp", "url": "env:AMQP_URL"})
    with pytest.raises(ValueError, match="amqp url"):
        EndpointConfig.model_validate(
            {"kind": "amqp", "url": "amqp://guest:guest@localhost/", "exchange": "x"}
        )
