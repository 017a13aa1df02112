"""`hub worker`: an RQ worker on hub's queues, in priority order.

It does not fork per job (`SimpleWorker`): each process keeps its engine, Redis connection and
pooled HTTP clients across jobs. SIGTERM lets the job in hand finish, then the worker exits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rq import SimpleWorker

from hub.queues import PRIORITY, QueueName, check_redis, connect_redis, get_queue
from hub.settings import Settings
from workers import context

log = logging.getLogger("workers.worker")


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
    context.install(context.WorkerContext.from_settings(settings))
    worker = SimpleWorker(
        [get_queue(redis, q) for q in queues],
        connection=redis,
        name=name,
        log_job_description=False,  # descriptions would carry job arguments
    )
    log.info("worker.start", extra={"queue": ",".join(q.value for q in queues)})
    # rq logs every job at INFO; hub logs its own lines, so rq speaks only of problems
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    return worker.work(burst=burst, logging_level=rq_level)
