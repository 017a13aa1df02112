"""amqp endpoints: publish to a RabbitMQ exchange with publisher confirms (seed 004).

Each delivery is one persistent message in seed 004's envelope:

    {"eventId": "<delivery id>", "eventType": "<event type>", "occurredAt": "<ISO-8601 UTC>",
     "sourceService": "hub", "payload": <the route's body>}

with properties `message_id` = the delivery id (the same on every retry, so consumers
deduplicate), `correlation_id`, `type`, and headers `x-correlation-id` and `x-retry-count`
(attempts before this one). The routing key is the route's `routing_key`, else the event type.

Delivered means the broker acked the message (publisher confirms) and, published `mandatory`, it
reached at least one queue. A nack, a message no queue took, a lost connection or a broker that
does not answer are retries; an exchange that does not exist (and `declare: false`), exists with
another type, or that the user may not write to is permanent. One connection and one channel
per broker URL per worker process, reused by every job and guarded by a lock (pika's blocking
connection is not thread-safe); the exchange is declared (durable) once per channel when the
endpoint says `declare: true`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pika
import pika.exceptions as amqp_errors
from pika.adapters.blocking_connection import BlockingChannel

from hub.core import amqp
from hub.core.errors import ConfigError
from hub.delivery.adapters import DeliveryRef, Outcome, OutgoingRequest, Target, Verdict
from hub.delivery.endpoints import EndpointConfig

log = logging.getLogger("hub.delivery.amqp")

PERMANENT = frozenset({403, 404, 406})  # access refused, no such exchange, declared otherwise


@dataclass
class Link:
    """One broker connection and its confirming channel."""

    url: str
    connection: pika.BlockingConnection | None = None
    channel: BlockingChannel | None = None
    declared: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, timeout: float) -> BlockingChannel:
        """The live channel, reconnecting if the connection or channel has gone."""
        if self.connection is not None and self.connection.is_open:
            try:
                self.connection.process_data_events(0)  # heartbeats; notices a dead socket
            except amqp_errors.AMQPError:
                self.drop()
        if self.connection is None or not self.connection.is_open:
            self.drop()
            self.connection = amqp.connect(self.url, timeout)
        if self.channel is None or not self.channel.is_open:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            self.declared.clear()
        return self.channel

    def drop(self) -> None:
        connection, self.connection, self.channel = self.connection, None, None
        self.declared.clear()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except amqp_errors.AMQPError:
                pass


class AmqpAdapter:
    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()

    def link(self, url: str) -> Link:
        with self._lock:
            found = self._links.get(url)
            if found is None:
                found = self._links[url] = Link(url)
            return found

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        config = endpoint.config
        try:
            url = endpoint.value("url", config.url) or ""
        except ConfigError as exc:
            return Outcome(Verdict.DEAD, error_class="config", error=exc.message[:200])
        options = request.options
        event_type = str(options.get("event_type") or "")
        routing_key = str(options.get("routing_key") or event_type)
        body = orjson.dumps(envelope(request, config, delivery))
        headers: dict[str, Any] = {"x-retry-count": delivery.attempt - 1}
        if delivery.correlation_id:
            headers["x-correlation-id"] = delivery.correlation_id
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=delivery.id,
            correlation_id=delivery.correlation_id,
            type=event_type or None,
            timestamp=int(time.time()),
            app_id=config.source_service,
            headers=headers,
        )
        link = self.link(url)
        with link.lock:
            return self._publish(link, config, routing_key, body, properties)

    def _publish(
        self,
        link: Link,
        config: EndpointConfig,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
    ) -> Outcome:
        exchange = config.exchange or ""
        where = f"{amqp.redact(link.url)} exchange {exchange!r}"
        try:
            channel = link.open(config.timeout)
            if config.declare and exchange not in link.declared:
                channel.exchange_declare(exchange, config.exchange_type, durable=True)
                link.declared.add(exchange)
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except amqp_errors.UnroutableError:
            return Outcome(
                Verdict.RETRY,
                error_class="amqp_unroutable",
                error=f"no queue is bound to {where} for routing key {routing_key!r}",
            )
        except amqp_errors.NackError:
            return Outcome(Verdict.RETRY, error_class="amqp_nack", error=f"{where}: broker nack")
        except amqp_errors.ChannelClosedByBroker as exc:
            link.channel = None
            verdict = Verdict.DEAD if exc.reply_code in PERMANENT else Verdict.RETRY
            return Outcome(
                verdict,
                exc.reply_code,
                f"amqp_{exc.reply_code}",
                f"{where}: {exc.reply_text}"[:200],
            )
        except (amqp_errors.AMQPError, OSError, ValueError) as exc:
            link.drop()
            return Outcome(
                Verdict.RETRY,
                error_class="connection_error",
                error=f"{type(exc).__name__} talking to {where}"[:200],
            )
        return Outcome(Verdict.DELIVERED, excerpt=f"confirmed by the broker ({routing_key})")

    def close(self) -> None:
        with self._lock:
            for link in self._links.values():
                with link.lock:
                    link.drop()
            self._links.clear()


def envelope(
    request: OutgoingRequest, config: EndpointConfig, delivery: DeliveryRef
) -> dict[str, Any]:
    """Seed 004's envelope around the route's body."""
    return {
        "eventId": delivery.id,
        "eventType": request.options.get("event_type"),
        "occurredAt": request.options.get("occurred_at"),
        "sourceService": config.source_service,
        "payload": request.body,
    }
