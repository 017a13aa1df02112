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
from rq.serializers import JSONSerializer

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
CALENDAR_TOKEN_KEY = KEY_PREFIX + "gcal:token:{endpoint}:{tenant}"  # an access token, until expiry
ALERTS_ACTIVE_KEY = KEY_PREFIX + "alerts:active"  # alert keys already posted, while they last
ALERTS_TURN_KEY = KEY_PREFIX + "alerts:turn"  # held by the sweeper that checks this interval
SWEEPER_LEADER_KEY = KEY_PREFIX + "sweeper:leader"  # the working sweeper's lock (hub.core.leader)
SWEEPER_FENCE_KEY = KEY_PREFIX + "sweeper:fence"  # its fencing counter: +1 per new leader
WORKER_PULSE_PREFIX = KEY_PREFIX + "worker:pulse:"  # + RQ worker name: alive (hub.core.inflight)
SUSPECTS_PREFIX = KEY_PREFIX + "suspects:"  # + kind: ids no job carried, since when (inflight)

# How RQ stores a job's function, arguments and meta in Redis, on every side (enqueue, worker,
# dashboard). JSON, not RQ's default pickle: with pickle, anyone who can write to Redis could
# run code on the workers. Jobs carry only ids, so JSON holds them. See hub.core.jobformat.
SERIALIZER = JSONSerializer

# RQ jobs, by the dotted name of the function in workers/jobs.py; each takes a list of ids
PROCESS_EVENTS = "workers.jobs.process_events"  # event ids -> deliveries (hub.mapping.routing)
DELIVER = "workers.jobs.deliver"  # delivery ids -> attempts (hub.delivery.jobs)
REPLAY = "workers.jobs.replay"  # dead letter ids -> one more attempt (hub.ops.replay)
REMAP = "workers.jobs.remap"  # event ids -> today's mappings again (hub.ops.replay)
RUN_SYNC = "workers.jobs.run_sync"  # sync_jobs ids -> one run each (hub.sync.run), on `low`


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
    """One of hub's queues; its jobs are stored as JSON (SERIALIZER), never pickled."""
    return Queue(QueueName(name).value, connection=redis, serializer=SERIALIZER)


REQUEUE_FAILED = (PROCESS_EVENTS, DELIVER)  # idempotent jobs: a failed one simply runs again
REQUEUE_FAILED_MAX = 5  # times one failed job is enqueued again before it stays failed


def requeue_failed_jobs(redis: Redis, queues: Sequence[QueueName] = PRIORITY) -> int:
    """Enqueue again the `process_events` and `deliver` jobs RQ holds as failed; returns how many.

    A job fails when its worker could not reach the database, or was cut from Redis mid-job:
    its ids are enqueued again (same arguments, `REQUEUE_FAILED_MAX` times at most, then the job
    stays in the failed registry for a person to see). The jobs are idempotent: ids already done
    or leased by another job are skipped.
    """
    moved = 0
    try:
        for name in queues:
            queue = get_queue(redis, name)
            registry = queue.failed_job_registry
            for job_id in registry.get_job_ids():
                job = queue.fetch_job(job_id)
                if job is None:
                    registry.remove(job_id)
                    continue
                requeues = int(job.meta.get("hub_requeues", 0))
                if job.func_name not in REQUEUE_FAILED or requeues >= REQUEUE_FAILED_MAX:
                    continue
                ids = list(job.args[0]) if job.args else []
                [new_id] = enqueue_ids(redis, job.func_name, name, ids, batch_size=len(ids) or 1)
                fresh = queue.fetch_job(new_id)
                if fresh is not None:
                    fresh.meta["hub_requeues"] = requeues + 1
                    fresh.save_meta()
                registry.remove(job, delete_job=True)
                moved += len(ids)
    except (RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot requeue failed jobs: {exc}") from exc
    return moved


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
