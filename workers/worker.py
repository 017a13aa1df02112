"""`hub worker`: an RQ worker on hub's queues, in priority order, that outlives Redis outages.

It does not fork per job (`SimpleWorker`): each process keeps its engine, Redis connection and
pooled HTTP clients across jobs. SIGTERM lets the job in hand finish, then the worker exits.
Every job gets a timeout longer than any delivery lease (the adapter timeout plus a margin): a job
killed while its request is still in flight is how duplicate deliveries happen.

RQ's own loop quits on a Redis error outside its dequeue (the heartbeat after a job, the
bookkeeping of a finished job, `register_death`). `run_worker` does not: it waits for Redis with
a capped backoff (`hub.core.outages`), logging once when Redis goes and once when it is back,
and starts a fresh RQ worker. A job whose bookkeeping was cut keeps what it wrote to the
database; the leases decide what happens to the rest (the sweeper hands expired ones on).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job

from hub.core import collector
from hub.core.inflight import Pulse
from hub.core.jobformat import convert_pickled_jobs
from hub.core.outages import BACKOFF_CAP, Outage
from hub.core.queues import (
    PRIORITY,
    SERIALIZER,
    QueueName,
    check_redis,
    connect_redis,
    get_queue,
)
from hub.core.settings import Settings
from hub.delivery.jobs import job_timeout_floor
from workers import context

log = logging.getLogger("workers.worker")

RQ_CONNECTION_MESSAGE = "could not connect to Redis"  # RQ's line for each failed dequeue


class HubWorker(SimpleWorker):
    """SimpleWorker whose jobs never get a timeout shorter than `min_job_timeout` seconds, whose
    stop request never needs Redis, and whose Redis failures go to one `Outage`."""

    min_job_timeout = 0
    settled = False  # the process's collector settled (hub.core.collector), after a first job

    def __init__(
        self,
        *args: Any,
        outage: Outage | None = None,
        stop: threading.Event | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("serializer", SERIALIZER)  # hub's jobs are JSON, never pickles
        super().__init__(*args, **kwargs)
        self.outage = outage or Outage(log, "worker", "redis")
        self.stop = stop or threading.Event()
        self.busy = False
        self.max_connection_wait_time = BACKOFF_CAP

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.timeout is None or 0 <= job.timeout < self.min_job_timeout:
            job.timeout = self.min_job_timeout
        self.busy = True
        try:
            super().execute_job(job, queue)
        finally:
            self.busy = False
            if not HubWorker.settled:  # the job code is loaded now: out of the collector's way
                HubWorker.settled = True
                collector.settle()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's loop; with `burst`, it returns once the sends its jobs handed to endpoint lanes
        are finished too (the deliver job does not wait for them). A pulse in Redis says the
        worker is alive meanwhile: the sweeper re-enqueues a started job whose pulse stopped."""
        pulse = Pulse(self.connection, self.name)
        pulse.start()
        try:
            worked = super().work(*args, **kwargs)
        finally:
            pulse.stop()
        if kwargs.get("burst"):
            ctx = context.current_or_none()
            for value in list(ctx.cache.values()) if ctx is not None else []:
                drain = getattr(value, "drain", None)
                if callable(drain):
                    drain()
        return bool(worked)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        super().heartbeat(*args, **kwargs)
        self.outage.recovered()  # the heartbeat reached Redis

    def request_stop(self, signum: Any, frame: Any) -> None:
        """Warm shutdown without asking Redis (RQ's reads the worker's state there)."""
        self.stop.set()
        self._stop_requested = True
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)
        if not self.busy:
            raise StopRequested()


class _OutageFilter(logging.Filter):
    """Turns RQ's "could not connect to Redis" line (one per retry) into the worker's Outage."""

    def __init__(self) -> None:
        super().__init__()
        self.outage: Outage | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.outage is not None and RQ_CONNECTION_MESSAGE in str(record.msg):
            reason = record.args[1] if isinstance(record.args, tuple) else record.getMessage()
            self.outage.failed(str(reason))
            return False
        return True


def run_worker(
    settings: Settings,
    queues: Sequence[QueueName] = PRIORITY,
    *,
    burst: bool = False,
    name: str | None = None,
) -> bool:
    """Work the queues until stopped (or, with `burst`, until they are empty).

    Without `burst` it waits for Redis however long it is gone, at start too: a process that
    exits while Redis restarts is one a supervisor may give up on. With `burst` an unreachable
    Redis is an error (RedisUnavailable), as for any command.
    """
    stop = threading.Event()
    redis = connect_redis(settings, timeout=30)
    if burst:
        check_redis(redis, settings)
    ctx = context.WorkerContext.from_settings(settings)
    context.install(ctx)
    outage = Outage(log, "worker", "redis")
    rq_filter = _OutageFilter()
    rq_filter.outage = outage
    rq_log = logging.getLogger("rq.worker")
    rq_log.addFilter(rq_filter)
    # rq logs every job at INFO; hub logs its own lines, so rq speaks only of problems
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    log.info("worker.start", extra={"queue": ",".join(q.value for q in queues)})
    worked = False
    try:
        generation = 0
        while not stop.is_set():
            _install_stop(stop)
            if not _wait_for_redis(redis, outage, stop):
                break
            if generation == 0:
                try:
                    convert_pickled_jobs(redis)  # jobs an older hub pickled, before any is taken
                except (RedisError, OSError):
                    continue  # Redis went again: wait for it once more
            worker = HubWorker(
                [get_queue(redis, q) for q in queues],
                connection=redis,
                name=f"{name}.{generation}" if name and generation else name,
                log_job_description=False,  # descriptions would carry job arguments
                outage=outage,
                stop=stop,
            )
            worker.min_job_timeout = job_timeout_floor(settings)
            generation += 1
            reason = "the RQ loop stopped"
            try:
                worked = worker.work(burst=burst, logging_level=rq_level) or worked
            except (RedisError, OSError) as exc:  # raised by RQ's teardown, after its loop
                reason = f"{type(exc).__name__}: {exc}"
            if stop.is_set() or worker._stop_requested:
                break
            if burst and not outage.down and reason == "the RQ loop stopped":
                break
            stop.wait(outage.failed(reason) if _redis_down(redis) else 1.0)
    finally:  # pooled clients and send threads close with the worker
        rq_log.removeFilter(rq_filter)
        context.install(None)
        ctx.close()
        redis.close()
    return worked


def _redis_down(redis: Redis) -> bool:
    try:
        redis.ping()
    except (RedisError, OSError):
        return True
    return False


def _wait_for_redis(redis: Redis, outage: Outage, stop: threading.Event) -> bool:
    """Until Redis answers a PING (True) or the worker is asked to stop (False)."""
    while not stop.is_set():
        try:
            redis.ping()
        except (RedisError, OSError) as exc:
            stop.wait(outage.failed(f"{type(exc).__name__}: {exc}"))
            continue
        outage.recovered()
        return True
    return False


def _install_stop(stop: threading.Event) -> None:
    """SIGTERM/SIGINT between two RQ loops (RQ installs its own while one runs)."""

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
