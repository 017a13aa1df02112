"""`hub worker`: an RQ worker on hub's queues, in priority order.

It does not fork per job (`SimpleWorker`): each process keeps its engine, Redis connection and
pooled HTTP clients across jobs. SIGTERM lets the job in hand finish, then the worker exits.
Every job gets a timeout longer than any delivery lease (the adapter timeout plus a margin): a job
killed while its request is still in flight is how duplicate deliveries happen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rq import Queue, SimpleWorker
from rq.job import Job

from hub.core.jobformat import convert_pickled_jobs
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


class HubWorker(SimpleWorker):
    """SimpleWorker whose jobs never get a timeout shorter than `min_job_timeout` seconds."""

    min_job_timeout = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", SERIALIZER)  # hub's jobs are JSON, never pickles
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.timeout is None or 0 <= job.timeout < self.min_job_timeout:
            job.timeout = self.min_job_timeout
        super().execute_job(job, queue)


def run_worker(
    settings: Settings,
    queues: Sequence[QueueName] = PRIORITY,
    *,
    burst: bool = False,
    name: str | None = None,
) -> bool:
    """Work the queues until stopped (or, with `burst`, until they are empty)."""
    redis = connect_redis(settings, timeout=30)
    check_redis(redis, settings)
    ctx = context.WorkerContext.from_settings(settings)
    context.install(ctx)
    convert_pickled_jobs(redis)  # jobs an older hub pickled, before any is taken
    worker = HubWorker(
        [get_queue(redis, q) for q in queues],
        connection=redis,
        name=name,
        log_job_description=False,  # descriptions would carry job arguments
    )
    worker.min_job_timeout = job_timeout_floor(settings)
    log.info("worker.start", extra={"queue": ",".join(q.value for q in queues)})
    # rq logs every job at INFO; hub logs its own lines, so rq speaks only of problems
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    try:
        return worker.work(burst=burst, logging_level=rq_level)
    finally:  # pooled clients and send threads close with the worker
        context.install(None)
        ctx.close()
