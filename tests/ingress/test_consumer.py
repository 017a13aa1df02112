"""`hub consume`: a real RabbitMQ queue into events; ack after commit, poison to the DLX with the
reason, messages the database could not take are redelivered to the next consumer."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pika
import pytest
from ingress_support import event_count, events
from sqlalchemy import Engine, insert, text

from hub.core.crypto import Cipher
from hub.core.models import EventStatus, Tenant, utcnow
from hub.core.settings import Settings
from hub.ingress.consumer import REASON_HEADER, Consumer
from hub.ingress.sources import SourceConfig
from tests.conftest import Broker


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def queues(broker: Broker, engine: Engine) -> tuple[str, str, str]:
    """(exchange, queue, dead-letter queue), the queue dead-lettering to its DLX."""
    with engine.begin() as conn:
        conn.execute(insert(Tenant).values(slug="clinic-1", name="Clinic 1", created_at=utcnow()))
    exchange = broker.exchange("agenda")
    dlx = broker.exchange("agenda.dlx", "fanout")
    queue = broker.queue("agenda", **{"x-dead-letter-exchange": dlx})
    broker.bind(queue, exchange)
    dead = broker.queue("agenda.dead")
    broker.bind(dead, dlx, "")
    return exchange, queue, dead


def source(broker: Broker, queue: str, **extra: object) -> SourceConfig:
    return SourceConfig.model_validate(
        {
            "amqp": {
                "url": "env:HUBTEST_AMQP_URL",
                "queue": queue,
                "tenant": "clinic-1",
                "dead_letter_exchange": broker.name("agenda.dlx"),
                "prefetch": 10,
            },
            **extra,
        }
    )


def publish(broker: Broker, exchange: str, body: bytes, **headers: object) -> None:
    props = pika.BasicProperties(delivery_mode=2, headers=headers or None)
    broker.channel.basic_publish(exchange, "appointment.created", body, props)


def envelope(event_id: str, kind: str = "appointment.created") -> bytes:
    return orjson.dumps(
        {"eventId": event_id, "eventType": kind, "occurredAt": "2026-11-27T13:05:00Z",
         "sourceService": "agenda", "payload": {"id": event_id}}
    )  # fmt: skip


@contextmanager
def running(consumer: Consumer) -> Iterator[Consumer]:
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture
def make(
    broker: Broker, settings: Settings, engine: Engine, redis: object, amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Consumer]:  # fmt: skip
    monkeypatch.setenv("HUBTEST_AMQP_URL", amqp_url)

    def build(queue: str, **extra: object) -> Consumer:
        return Consumer(
            "agenda", source(broker, queue, **extra), engine, redis, Cipher.from_settings(settings)
        )  # type: ignore[arg-type]

    return build


def queue_depth(broker: Broker, queue: str) -> int:
    return broker.channel.queue_declare(queue, passive=True).method.message_count


def test_messages_become_events_acked_after_commit_duplicates_once(
    broker: Broker, queues: tuple[str, str, str], make: Callable[..., Consumer], engine: Engine
) -> None:
    exchange, queue, _ = queues
    for n in range(3):
        publish(broker, exchange, envelope(f"apt-{n}"), **{"x-correlation-id": f"cor-{n}"})
    publish(broker, exchange, envelope("apt-0"))  # the same eventId again
    with running(make(queue)) as consumer:
        wait_for(lambda: consumer.counts["stored"] + consumer.counts["duplicate"] == 4)
    stored = events(engine)
    assert sorted(e.external_id for e in stored) == ["apt-0", "apt-1", "apt-2"]
    assert {e.event_type for e in stored} == {"appointment.created"}
    assert {e.correlation_id for e in stored} == {"cor-0", "cor-1", "cor-2"}
    assert {e.status for e in stored} == {EventStatus.QUEUED}  # process_events is enqueued
    assert queue_depth(broker, queue) == 0


def test_a_poison_message_goes_to_the_dlx_with_the_reason(
    broker: Broker, queues: tuple[str, str, str], make: Callable[..., Consumer], engine: Engine
) -> None:
    exchange, queue, dead = queues
    publish(broker, exchange, b"{not json")
    publish(broker, exchange, orjson.dumps({"eventId": "x", "payload": {}}))
    publish(broker, exchange, envelope("good"))
    with running(make(queue)) as consumer:
        wait_for(lambda: consumer.counts["rejected"] == 2 and consumer.counts["stored"] == 1)
    reasons = []
    for _ in range(2):
        got = broker.get(dead)
        assert got is not None
        reasons.append(got[1].headers[REASON_HEADER])  # type: ignore[attr-defined]
    assert reasons[0].startswith("invalid JSON") and "event type not found" in reasons[1]
    assert [e.external_id for e in events(engine)] == ["good"]
    assert queue_depth(broker, queue) == 0


def test_what_the_database_refused_is_redelivered_to_the_next_consumer(
    broker: Broker, queues: tuple[str, str, str], make: Callable[..., Consumer], engine: Engine
) -> None:
    exchange, queue, _ = queues
    for n in range(3):
        publish(broker, exchange, envelope(f"apt-{n}"))
    with engine.begin() as conn:  # the event table is gone: every store fails
        conn.execute(text("ALTER TABLE integration_events RENAME TO integration_events_away"))
    try:
        first = make(queue)
        with running(first):
            wait_for(lambda: first.backoff.failures > 0)
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE integration_events_away RENAME TO integration_events"))
    assert event_count(engine) == 0
    assert queue_depth(broker, queue) == 3  # nacked back, none lost
    with running(make(queue)) as second:
        wait_for(lambda: second.counts["stored"] == 3)
    assert queue_depth(broker, queue) == 0


def test_hub_consume_needs_an_amqp_source_and_names_an_unset_url(
    settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "sources.yaml").write_text(
        "sources:\n  site: {}\n  agenda:\n"
        "    amqp: {url: 'env:HUBTEST_UNSET_AMQP', queue: q, tenant: clinic-1,"
        " dead_letter_exchange: q.dlx}\n"
    )
    env = {
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": str(settings.redis_url),
        "HUB_MAPPINGS_DIR": str(mappings),
        "HUB_DATA_DIR": str(tmp_path / ".hub"),
        "PATH": str(Path(sys.executable).parent),
    }
    hub = [sys.executable, "-m", "hub", "consume"]
    for args, message in (
        (["site"], "not an amqp source"),
        (["agenda"], "HUBTEST_UNSET_AMQP is not set (source agenda.amqp.url)"),
    ):
        done = subprocess.run(hub + args, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    every = subprocess.run(hub + ["--all"], env=env, capture_output=True, text=True, timeout=60)
    assert every.returncode == 0 and "skipping agenda" in every.stderr
