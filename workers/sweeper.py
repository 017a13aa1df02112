"""`hub sweeper`: the process that turns the database's schedule into queued jobs.

Each task is a function `(SweepContext) -> int` returning how many rows it moved; the sweeper runs
them all every `interval` seconds. The tasks (outbox relay of events left `received`, due
`retry_queue` rows, expired leases, due sync jobs) live beside the code they serve and are listed
in `TASKS`.

Any number of sweepers may run (one per host): a leader lock in Redis (`hub.core.leader`) lets
exactly one work at a time, checked before every task, and another takes over within seconds of
the leader's death. Nothing stops the loop: a task that raises anything is logged (once when it
starts failing, once when it works again) and runs again next round; while Redis or the database
is away the rounds slow down to a capped backoff.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine

from hub.core import collector
from hub.core.db import create_db_engine
from hub.core.errors import HubError
from hub.core.inflight import InFlight
from hub.core.leader import LeaderLock
from hub.core.outages import Outage
from hub.core.queues import (
    SWEEPER_FENCE_KEY,
    SWEEPER_LEADER_KEY,
    connect_redis,
    requeue_failed_jobs,
)
from hub.core.settings import Settings
from hub.delivery import sweeps as delivery_sweeps
from hub.ingress.relay import relay_events
from hub.mapping import routing
from hub.ops.alerts import post_alerts
from hub.ops.replay import close_delivered_dead_letters
from hub.sync.schedule import claim_due_syncs

log = logging.getLogger("workers.sweeper")


@dataclass(frozen=True)
class SweepContext:
    settings: Settings
    engine: Engine
    redis: Redis
    inflight: InFlight = field(default_factory=InFlight)


SweepTask = Callable[[SweepContext], int]


def requeue_failed(ctx: SweepContext) -> int:
    """Sweeper task: failed `process_events` / `deliver` jobs run again (hub.core.queues)."""
    moved = requeue_failed_jobs(ctx.redis)
    if moved:
        log.warning("sweeper.failed_jobs_requeued", extra={"count": moved})
    return moved


TASKS: list[SweepTask] = [
    relay_events,  # outbox relay: events left `received` (Redis was down at ingest)
    routing.expire_event_leases,  # events whose mapping job died: queued again
    requeue_failed,  # process_events / deliver jobs RQ holds as failed: enqueued again
    delivery_sweeps.expire_leases,
    delivery_sweeps.enqueue_due_retries,
    delivery_sweeps.relay_retries,  # due retries whose job was lost
    delivery_sweeps.relay_pending,
    close_delivered_dead_letters,  # a replayed delivery that a later retry delivered
    post_alerts,  # /status alerts to HUB_ALERT_ENDPOINT, once each
    claim_due_syncs,  # due sync jobs -> workers.jobs.run_sync on `low`, once each
]


def task_name(task: SweepTask) -> str:
    return getattr(task, "__name__", repr(task))


def sweep_once(
    ctx: SweepContext,
    tasks: list[SweepTask] | None = None,
    *,
    outages: dict[str, Outage] | None = None,
    leading: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Run every task once; a task that fails, however, is logged and the others still run.

    With `outages` (one per task name, kept across rounds) a failing task is logged when it
    starts failing and when it works again, not every round. With `leading`, each task runs only
    while it returns True (the leader lock, checked before every task).
    """
    moved: dict[str, int] = {}
    for task in TASKS if tasks is None else tasks:
        name = task_name(task)
        if leading is not None and not leading():
            break
        outage = None if outages is None else outages.setdefault(name, _task_outage(name))
        try:
            moved[name] = task(ctx)
        except Exception as exc:  # noqa: BLE001 - a task never stops the sweeper
            moved[name] = 0
            reason = exc.message if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
            if outage is None:
                log.warning("sweeper.task_failed", extra={"reason": f"{name}: {reason}"})
            else:
                outage.failed(reason)
        else:
            if outage is not None:
                outage.recovered()
    return moved


def _task_outage(name: str) -> Outage:
    return Outage(log, "sweeper", f"task_{name}")


class Sweeper:
    """The loop: lead (or wait to), run the tasks, wait `interval`; until `stop` is set."""

    def __init__(
        self,
        ctx: SweepContext,
        *,
        tasks: list[SweepTask] | None = None,
        interval: float = 1.0,
        lock: LeaderLock | None = None,
    ) -> None:
        self.ctx = ctx
        self.tasks = TASKS if tasks is None else tasks
        self.interval = interval
        self.lock = lock or LeaderLock(ctx.redis, SWEEPER_LEADER_KEY, SWEEPER_FENCE_KEY)
        self.outages: dict[str, Outage] = {}
        self.redis_outage = Outage(log, "sweeper", "redis")
        self.stop = threading.Event()

    def lead(self) -> bool:
        """Whether this sweeper is the leader now (taking the lock if it is free)."""
        try:
            leading = self.lock.acquire()
        except RedisError as exc:
            self.redis_outage.failed(f"{type(exc).__name__}: {exc}")
            return False
        self.redis_outage.recovered()
        return leading

    def round(self) -> float:
        """One round; returns how long to wait before the next."""
        if not self.lead():
            if self.redis_outage.down:
                return self.redis_outage.delay
            return self.interval
        sweep_once(self.ctx, self.tasks, outages=self.outages, leading=self.lock.held)
        failing = [o for o in self.outages.values() if o.down]
        if failing:  # a service is away: back off, capped, instead of hammering it
            return max(self.interval, min(o.delay for o in failing))
        return self.interval

    def run(self) -> None:
        log.info("sweeper.start", extra={"count": len(self.tasks)})
        try:
            while not self.stop.is_set():
                try:
                    wait = self.round()
                except Exception:  # noqa: BLE001 - the loop outlives anything a round raises
                    log.exception("sweeper.round_failed")
                    wait = self.interval
                self.stop.wait(wait)
        finally:
            self.lock.release()
            log.info("sweeper.stop")


def run_sweeper(settings: Settings, interval: float = 1.0) -> None:
    """Sweep every `interval` seconds until SIGTERM or SIGINT."""
    ctx = SweepContext(settings, create_db_engine(settings), connect_redis(settings))
    sweeper = Sweeper(ctx, interval=interval)
    collector.settle()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        sweeper.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        sweeper.run()
    finally:
        ctx.engine.dispose()
        ctx.redis.close()
