"""`hub consume SOURCE`: a RabbitMQ queue in, durable events out (an `amqp:` source).

    connect → qos(prefetch) → take up to `prefetch` messages → parse each (JSON, event id and
    type) → store the good ones in one transaction (the same exactly-once store as webhooks)
    → enqueue process_events → ack them → dead-letter the poison ones → again

A message is acked only after its event row is committed (a duplicate `eventId` is acked: it is
already stored). A message that cannot be parsed is published to the source's dead-letter
exchange with the reason in the header `x-hub-reject-reason` (publisher confirms), and only then
acked: never acked and lost. If the database is down the batch is nacked back to the queue and
the consumer waits; a lost connection is retried with backoff (1 s doubling to 30 s); unacked
messages are redelivered by the broker. SIGTERM finishes the batch in hand, then stops.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import orjson
import pika
import pika.exceptions as amqp_errors
from pika.adapters.blocking_connection import BlockingChannel
from redis import Redis
from sqlalchemy import Engine, select
from starlette.datastructures import Headers

from hub.core import amqp, envrefs
from hub.core.crypto import Cipher
from hub.core.errors import ConfigError, DatabaseUnavailable, HubError, RedisUnavailable
from hub.core.models import Tenant
from hub.ingress.events import NewEvent, enqueue_events, store_events
from hub.ingress.route import ValueGetter, compile_extractor
from hub.ingress.sources import SourceConfig

log = logging.getLogger("hub.ingress.consumer")

REASON_HEADER = "x-hub-reject-reason"
POLL = 0.5  # seconds waiting for the first message of a batch (and between stop checks)
GATHER = 0.02  # seconds waiting for more once the batch has one
MAX_ID = 255


class Poison(ValueError):
    """The message cannot become an event; the text is the reason sent to the DLX."""


@dataclass(frozen=True)
class Message:
    tag: int
    routing_key: str
    properties: pika.BasicProperties
    body: bytes


class Consumer:
    """One amqp source's consumer; `run()` until `stop()`."""

    def __init__(
        self,
        name: str,
        config: SourceConfig,
        engine: Engine,
        redis: Redis,
        cipher: Cipher,
    ) -> None:
        if config.amqp is None:
            raise ConfigError(f"source {name!r} is not an amqp source (it has no amqp: block)")
        self.name = name
        self.config = config
        self.amqp = config.amqp
        self.engine, self.redis, self.cipher = engine, redis, cipher
        self.url = envrefs.resolve(self.amqp.url, where=f"source {name}.amqp.url")
        self.tenant_id = self._tenant_id()
        self.event_type: ValueGetter = compile_extractor(config.effective_event_type)
        extractor = config.effective_event_id
        self.event_id: ValueGetter | None = compile_extractor(extractor) if extractor else None
        self.queue = config.effective_queue.value
        self.stopping = threading.Event()
        self.backoff = amqp.Backoff()
        self.counts = {"stored": 0, "duplicate": 0, "rejected": 0}

    def _tenant_id(self) -> int:
        with self.engine.connect() as conn:
            found = conn.scalar(select(Tenant.id).where(Tenant.slug == self.amqp.tenant))
        if found is None:
            raise ConfigError(
                f"source {self.name}.amqp.tenant: no tenant {self.amqp.tenant!r} (hub tenants)"
            )
        return int(found)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff."""
        where = f"{amqp.redact(self.url)} queue {self.amqp.queue!r}"
        while not self.stopping.is_set():
            connection = None
            try:
                connection = amqp.connect(self.url)
                channel = connection.channel()
                channel.confirm_delivery()
                channel.basic_qos(prefetch_count=self.amqp.prefetch)
                log.info("consume.connected", extra={"source": self.name, "reason": where})
                self.backoff.reset()
                self._consume(channel)
            except (amqp_errors.AMQPError, OSError) as exc:
                delay = self.backoff.next()
                log.warning(
                    "consume.disconnected",
                    extra={"source": self.name, "reason": f"{type(exc).__name__}: {str(exc)[:200]}",
                           "delay_s": round(delay, 2)},
                )  # fmt: skip
                self.stopping.wait(delay)
            finally:
                if connection is not None and connection.is_open:
                    try:
                        connection.close()
                    except amqp_errors.AMQPError:
                        pass

    def _consume(self, channel: BlockingChannel) -> None:
        messages = channel.consume(self.amqp.queue, inactivity_timeout=POLL)
        try:
            while not self.stopping.is_set():
                batch: list[Message] = []
                for method, properties, body in messages:
                    if method is None:  # inactivity: a batch is complete, or nothing came
                        break
                    batch.append(Message(method.delivery_tag, method.routing_key, properties, body))
                    if len(batch) >= self.amqp.prefetch:
                        break
                    # the rest already prefetched arrives at once; then the batch is complete
                    if channel.get_waiting_message_count() == 0:
                        channel.connection.process_data_events(GATHER)
                        if channel.get_waiting_message_count() == 0:
                            break
                if batch:
                    self.handle(channel, batch)
        finally:
            if channel.is_open:
                channel.cancel()  # unacked prefetched messages go back to the queue

    def handle(self, channel: BlockingChannel, batch: list[Message]) -> None:
        good: list[tuple[Message, NewEvent]] = []
        for message in batch:
            try:
                good.append((message, self.parse(message)))
            except Poison as exc:
                self.dead_letter(channel, message, str(exc))
        if not good:
            return
        try:
            stored = store_events(self.engine, [event for _, event in good])
        except (DatabaseUnavailable, HubError) as exc:
            log.error("consume.store_failed", extra={"source": self.name, "reason": exc.message})
            for message, _ in good:
                channel.basic_nack(message.tag, requeue=True)
            self.stopping.wait(self.backoff.next())
            return
        self.backoff.reset()
        created = [(s.event_id, self.queue) for s in stored if s.created]
        if created:
            try:
                enqueue_events(self.engine, self.redis, created)
            except (RedisUnavailable, DatabaseUnavailable):  # stored: the relay enqueues them
                log.warning("consume.enqueue_failed", extra={"count": len(created)})
        for message, _ in good:
            channel.basic_ack(message.tag)
        self.counts["stored"] += len(created)
        self.counts["duplicate"] += len(stored) - len(created)
        duplicates = len(stored) - len(created)
        log.info(
            "consume.stored",
            extra={"source": self.name, "count": len(created), "duplicates": duplicates},
        )

    def parse(self, message: Message) -> NewEvent:
        try:
            payload = orjson.loads(message.body)
        except orjson.JSONDecodeError as exc:
            raise Poison(f"invalid JSON at char {exc.pos}: {exc.msg}") from exc
        raw = message.properties.headers or {}
        headers = Headers({str(k).lower(): str(v) for k, v in raw.items()})
        event_type = _text(self.event_type(headers, payload))
        if not event_type:
            raise Poison(f"event type not found ({self.config.effective_event_type.jsonpath})")
        if self.event_id is None:
            external_id = hashlib.sha256(message.body).hexdigest()
        else:
            external_id = _text(self.event_id(headers, payload)) or ""
            if not external_id:
                raise Poison("event id not found (eventId or the source's event_id)")
        if len(event_type) > MAX_ID or len(external_id) > MAX_ID:
            raise Poison("event id and type are at most 255 characters")
        correlation = headers.get("x-correlation-id") or message.properties.correlation_id
        return NewEvent(
            tenant_id=self.tenant_id,
            source=self.name,
            external_id=external_id,
            event_type=event_type,
            queue=self.queue,
            payload=self.cipher.encrypt(message.body),
            sealed_headers=self.cipher.encrypt(
                orjson.dumps({k: v for k, v in headers.items() if not k.startswith("x-death")})
            ),
            correlation_id=(correlation or "")[:64] or None,
        )

    def dead_letter(self, channel: BlockingChannel, message: Message, reason: str) -> None:
        """Publish to the DLX with the reason (confirmed), then ack; a failure leaves it unacked
        (redelivered) and breaks the connection, so the loop reconnects with backoff."""
        properties = message.properties
        headers: dict[str, Any] = dict(properties.headers or {})
        headers[REASON_HEADER] = reason[:500]
        headers["x-hub-source"] = self.name
        copy = pika.BasicProperties(
            content_type=properties.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
            type=properties.type,
            headers=headers,
        )
        channel.basic_publish(
            self.amqp.dead_letter_exchange, message.routing_key, message.body, copy, mandatory=True
        )
        channel.basic_ack(message.tag)
        self.counts["rejected"] += 1
        log.warning("consume.rejected", extra={"source": self.name, "reason": reason[:200]})


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).strip() or None
