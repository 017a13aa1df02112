"""`hub sweeper`: one process that turns the database's schedule into queued jobs.

Each task is a function `(SweepContext) -> int` returning how many rows it moved; the sweeper runs
them all every `interval` seconds. The tasks (outbox relay of events left `received`, due
`retry_queue` rows, expired delivery leases, due sync jobs) live beside the code they serve and
are listed in `TASKS`.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from redis import Redis
from sqlalchemy import Engine

from hub.core.db import create_db_engine
from hub.core.errors import HubError
from hub.core.queues import connect_redis
from hub.core.settings import Settings
from hub.delivery import sweeps as delivery_sweeps
from hub.ingress.relay import relay_events
from hub.ops.alerts import post_alerts
from hub.ops.replay import close_delivered_dead_letters
from hub.sync.schedule import claim_due_syncs

log = logging.getLogger("workers.sweeper")


@dataclass(frozen=True)
class SweepContext:
    settings: Settings
    engine: Engine
    redis: Redis


SweepTask = Callable[[SweepContext], int]

TASKS: list[SweepTask] = [
    relay_events,  # outbox relay: events left `received` (Redis was down at ingest)
    delivery_sweeps.expire_leases,
    delivery_sweeps.enqueue_due_retries,
    delivery_sweeps.relay_pending,
    close_delivered_dead_letters,  # a replayed delivery that a later retry delivered
    post_alerts,  # /status alerts to HUB_ALERT_ENDPOINT, once each
    claim_due_syncs,  # due sync jobs -> workers.jobs.run_sync on `low`, once each
]


def sweep_once(ctx: SweepContext, tasks: list[SweepTask] | None = None) -> dict[str, int]:
    """Run every task once; a task that fails is logged and the others still run."""
    moved: dict[str, int] = {}
    for task in TASKS if tasks is None else tasks:
        name = getattr(task, "__name__", repr(task))
        try:
            moved[name] = task(ctx)
        except HubError as exc:
            log.warning("sweeper.task_failed", extra={"reason": f"{name}: {exc.message}"})
            moved[name] = 0
    return moved


def run_sweeper(settings: Settings, interval: float = 1.0) -> None:
    """Sweep every `interval` seconds until SIGTERM or SIGINT."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ctx = SweepContext(settings, create_db_engine(settings), connect_redis(settings))
    log.info("sweeper.start", extra={"count": len(TASKS)})
    try:
        while not stop.is_set():
            sweep_once(ctx)
            stop.wait(interval)
    finally:
        ctx.engine.dispose()
        ctx.redis.close()
        log.info("sweeper.stop")
