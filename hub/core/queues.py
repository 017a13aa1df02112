"""Queue names, job names, Redis keys and the Redis connection, defined once.

Redis is transport and shared counters; the database stays the source of truth. Every key hub
writes starts with `KEY_PREFIX`; RQ's own keys start with `rq:`.
"""

from __future__ import annotations

import enum
import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue

from hub.core.errors import RedisUnavailable, SettingError
from hub.core.settings import Settings

KEY_PREFIX = "hub:"
REDIS_TIMEOUT = 2.0  # seconds, for connect and each command

# Redis keys (and key prefixes) of hub's own
CONFIG_VERSION_KEY = KEY_PREFIX + "config:version"  # the applied mappings' version; set by apply
SECRETS_VERSION_KEY = KEY_PREFIX + "secrets:version"  # INCR on every tenant secret set or removed
SENTINEL_KEY = KEY_PREFIX + "sentinel"  # absent: Redis is new or lost its data
CIRCUIT_PREFIX = KEY_PREFIX + "circuit:"  # + endpoint + ":" + field: the breaker's state
THROTTLE_PREFIX = KEY_PREFIX + "limits"  # outgoing rate limits per endpoint (limits' keys)
RATELIMIT_PREFIX = KEY_PREFIX + "ratelimit"  # incoming rate limits per tenant and source
ALERTS_ACTIVE_KEY = KEY_PREFIX + "alerts:active"  # alert keys already posted, while they last
ALERTS_TURN_KEY = KEY_PREFIX + "alerts:turn"  # held by the sweeper that checks this interval

# RQ jobs, by the dotted name of the function in workers/jobs.py; each takes a list of ids
PROCESS_EVENTS = "workers.jobs.process_events"  # event ids -> deliveries (hub.mapping.routing)
DELIVER = "workers.jobs.deliver"  # delivery ids -> attempts (hub.delivery.jobs)
REPLAY = "workers.jobs.replay"  # dead letter ids -> one more attempt (hub.ops.replay)
REMAP = "workers.jobs.remap"  # event ids -> today's mappings again (hub.ops.replay)


class QueueName(enum.StrEnum):
    HIGH = "high"
    DEFAULT = "default"
    NOTIFICATIONS = "notifications"
    LOW = "low"
    RETRY = "retry"


PRIORITY: tuple[QueueName, ...] = (
    QueueName.HIGH,
    QueueName.DEFAULT,
    QueueName.NOTIFICATIONS,
    QueueName.LOW,
    QueueName.RETRY,
)


def embedded_socket_path(settings: Settings) -> Path:
    """Where the embedded Redis listens: in data_dir, or in /tmp when that path is too long."""
    path = (settings.data_dir / "redis.sock").resolve()
    if len(str(path)) <= 100:  # AF_UNIX paths are limited to 108 bytes
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hub-redis-{digest}.sock"


def redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's unix socket."""
    if settings.redis_url is not None:
        return settings.redis_url
    return f"unix://{embedded_socket_path(settings)}"


def connect_redis(settings: Settings, *, timeout: float = REDIS_TIMEOUT) -> Redis:
    """A Redis client for `settings` (not yet connected: redis-py connects lazily)."""
    url = redis_url(settings)
    try:
        # one quick retry: redis-py's default (10 with backoff) makes a dead Redis cost seconds
        return Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError as exc:
        raise SettingError("HUB_REDIS_URL", f"not a Redis URL ({exc})") from exc


def check_redis(redis: Redis, settings: Settings) -> None:
    """PING; raise RedisUnavailable naming the setting and the reason."""
    try:
        redis.ping()
    except (RedisError, OSError) as exc:
        if settings.embedded_redis:
            where = f"HUB_REDIS_URL unset and the embedded Redis at {redis_url(settings)}"
            raise RedisUnavailable(
                f"{where} is not reachable ({exc}); is `hub up` running?"
            ) from exc
        raise RedisUnavailable(f"HUB_REDIS_URL: cannot connect ({exc})") from exc


def get_queue(redis: Redis, name: QueueName | str) -> Queue:
    return Queue(QueueName(name).value, connection=redis)


def enqueue_ids(
    redis: Redis,
    func: str,
    queue: QueueName | str,
    ids: Sequence[str],
    *,
    batch_size: int = 50,
    job_timeout: int | None = None,
) -> list[str]:
    """Enqueue `func(ids_batch)` for each batch of `ids` in one Redis pipeline; returns job ids.

    Jobs carry ids, never payloads. Raises RedisUnavailable when Redis cannot take them (the
    database still holds the work; the sweeper enqueues it later).
    """
    if not ids:
        return []
    q = get_queue(redis, queue)
    datas = [
        Queue.prepare_data(
            func,
            args=(list(ids[i : i + batch_size]),),
            timeout=job_timeout,
            result_ttl=0,
            failure_ttl=7 * 24 * 3600,
        )
        for i in range(0, len(ids), batch_size)
    ]
    try:
        with redis.pipeline() as pipe:
            jobs = q.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot enqueue {func} on {QueueName(queue).value}: {exc}") from exc
    return [job.id for job in jobs]
