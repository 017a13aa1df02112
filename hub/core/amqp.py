"""RabbitMQ connections (pika), as the amqp endpoints and `hub consume` open them.

pika's `BlockingConnection` is synchronous like rq's workers: a publish with publisher confirms
returns when the broker has acked it, with no event loop to run beside the worker. A blocking
connection is not thread-safe: whoever shares one holds a lock around it.

`connect(url, timeout)` opens one with bounded socket and handshake timeouts and heartbeats;
`Backoff` spaces reconnection attempts (1 s doubling to 30 s, with jitter); `redact` keeps the
password of an amqp URL out of messages and logs.
"""

from __future__ import annotations

import random
from urllib.parse import urlsplit, urlunsplit

import pika

HEARTBEAT = 30  # seconds: a dead broker or a cut network is noticed within about twice this


def parameters(url: str, timeout: float = 10.0) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.socket_timeout = timeout
    params.stack_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.connection_attempts = 1
    params.heartbeat = HEARTBEAT
    params.client_properties = {"connection_name": "hub"}
    return params


def connect(url: str, timeout: float = 10.0) -> pika.BlockingConnection:
    """A new connection; raises pika.exceptions.AMQPError (or ValueError for a bad URL)."""
    return pika.BlockingConnection(parameters(url, timeout))


def redact(url: str) -> str:
    """`amqp://user:***@host:5672/vhost`: the URL without its password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable amqp URL)"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Backoff:
    """Delays between reconnection attempts: base doubling up to cap, ±20 % jitter; `reset`
    after a success."""

    def __init__(self, base: float = 1.0, cap: float = 30.0) -> None:
        self.base, self.cap = base, cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0
