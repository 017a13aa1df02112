"""The web process's group commit.

Concurrent requests put their event on an asyncio queue; a writer takes whatever is waiting (up
to `MAX_BATCH` rows or `MAX_BATCH_BYTES`; while another commit is under way, only once `FEW`
wait: under a moderate load what arrives during a commit goes in the next one, instead of a
second commit of one or two events), commits it in one transaction in a worker thread
(`hub.ingress.events.store_events`; on MySQL one round trip, over the engine `serving` builds
with `multi_statements`), and answers each request only after that commit. Committed
new events go to an enqueuer that sends one `process_events` job per batch of ids to each queue
(while the queue still holds a job no worker has taken, at most one enqueue per `ENQUEUE_LINGER`:
under load a job carries more events, and a worker's cost is mostly per job; idle workers get
each batch at once);
a group commit marks them `queued` in its own transaction once they have been enqueued for
`MARK_AFTER` (or the enqueuer does, `MARK_DELAY` after that without a commit), so a busy web
process spends one transaction per batch, not two. The mark waits because a worker takes most
events within milliseconds: marked at once, the mark found them in the worker's routing
transaction (whose deliveries' foreign keys hold the rows), waited for it, and now and then the
two deadlocked (at a steady 500 webhooks/s, once a run, the routing stage's p99 tail); a second
later they are `processed` and the mark passes over them. If Redis is down they stay `received`,
and the sweeper's relay (`hub.ingress.relay`, after `RELAY_AFTER`, well after `MARK_AFTER`)
enqueues them once it is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine

from hub.core.errors import DatabaseUnavailable, HubError, RedisUnavailable
from hub.core.outages import Outage
from hub.core.queues import get_queue
from hub.ingress.events import NewEvent, Stored, enqueue_events, mark_queued, store_events

log = logging.getLogger("hub.ingress.writer")

MAX_BATCH = 200  # rows per group commit
# payload bytes per group commit: blobs travel as hex (hub.core.inserts, as PyMySQL's own
# escaping does), twice that in the statement, under max_allowed_packet (16 MiB by default)
MAX_BATCH_BYTES = 4 * 1024 * 1024
WRITERS = 2  # group commits in flight at once, at most
FEW = 3  # events waiting that start a commit while another is under way
MARK_AFTER = 1.0  # seconds after their enqueue that ids are marked `queued` (see above)
MARK_DELAY = 0.05  # seconds due marks wait for a group commit before the enqueuer marks them
ENQUEUE_LINGER = 0.1  # seconds at least between two enqueues: under load, jobs of more events


class EventWriter:
    """Group commit: concurrent `store` calls share transactions; each returns after its commit."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis | None,
        *,
        max_batch: int = MAX_BATCH,
        writers: int = WRITERS,
        linger: float = ENQUEUE_LINGER,
        few: int = FEW,
        mark_after: float = MARK_AFTER,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.max_batch = max_batch
        self.writers = writers
        self.linger = linger
        self.few = few
        self.mark_after = mark_after
        self._pending: asyncio.Queue[tuple[NewEvent, asyncio.Future[Stored]]] = asyncio.Queue()
        self._to_enqueue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(writers + 1, thread_name_prefix="hub-events")
        self._tasks: list[asyncio.Task[None]] = []
        self._redis_paused_until = 0.0  # Redis failed: left alone until then (Outage's backoff)
        self.redis_outage = Outage(log, "events", "redis")  # one line down, one line back
        # enqueued, to be marked `queued` by a commit: (when enqueued, ids), oldest first
        self._marks: deque[tuple[float, list[str]]] = deque()
        self._last_enqueue = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committing = 0  # group commits under way
        self._wake = asyncio.Event()  # a commit ended, or `few` events wait

    async def start(self) -> EventWriter:
        self._loop = asyncio.get_running_loop()  # once: each lookup costs a getpid() on 3.11
        self._tasks = [asyncio.create_task(self._write_loop()) for _ in range(self.writers)]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._enqueue_loop()))
        return self

    async def stop(self) -> None:
        """Finish what was accepted (commits and enqueues), then stop."""
        await self._pending.join()
        await self._to_enqueue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._mark_alone()
        self._executor.shutdown(wait=True)

    async def store(self, event: NewEvent) -> Stored:
        assert self._loop is not None, "EventWriter.start() first"
        future: asyncio.Future[Stored] = self._loop.create_future()
        self._pending.put_nowait((event, future))
        if self._pending.qsize() >= self.few:
            self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._pending.get()]
            while self._committing and self._pending.qsize() < self.few:
                self._wake.clear()
                await self._wake.wait()
            size = len(batch[0][0].payload)
            while (
                len(batch) < self.max_batch and size < MAX_BATCH_BYTES and not self._pending.empty()
            ):
                item = self._pending.get_nowait()
                batch.append(item)
                size += len(item[0].payload)
            marks = self._due_marks()
            store = functools.partial(store_events, self.engine, [e for e, _ in batch], mark=marks)
            self._committing += 1
            try:
                results = await loop.run_in_executor(self._executor, store)
            except Exception as exc:  # noqa: BLE001 - every waiter must get an answer
                if marks:  # not marked: the next commit tries again
                    self._marks.appendleft((0.0, marks))
                error = exc if isinstance(exc, HubError) else DatabaseUnavailable(str(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (event, future), stored in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(stored)
                    if stored.created and self.redis is not None:
                        self._to_enqueue.put_nowait((stored.event_id, event.queue))
            finally:
                self._committing -= 1
                self._wake.set()
                for _ in batch:
                    self._pending.task_done()

    async def _enqueue_loop(self) -> None:
        assert self.redis is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._marks:  # marks fall due: mark them alone if no commit comes to carry them
                due = self._marks[0][0] + self.mark_after + MARK_DELAY - time.monotonic()
                try:
                    first = await asyncio.wait_for(self._to_enqueue.get(), max(due, 0.001))
                except TimeoutError:
                    await self._mark_alone(self._due_marks())
                    continue
            else:
                first = await self._to_enqueue.get()
            # right after an enqueue, while the workers have not taken that job yet, wait out
            # the linger: the next job carries more events (a worker's cost is per job); when
            # they are idle, or after a quiet spell, the events go at once
            linger = self._last_enqueue + self.linger - time.monotonic()
            if linger > 0 and await loop.run_in_executor(self._executor, self._backlog, first[1]):
                await asyncio.sleep(linger)
            batch = [first]
            while not self._to_enqueue.empty():
                batch.append(self._to_enqueue.get_nowait())
            try:
                if time.monotonic() < self._redis_paused_until:
                    continue  # left `received`: the sweeper's relay enqueues them
                await loop.run_in_executor(self._executor, enqueue_events, None, self.redis, batch)
                self._last_enqueue = time.monotonic()
                self.redis_outage.recovered()
                self._marks.append((time.monotonic(), [event_id for event_id, _ in batch]))
            except RedisUnavailable as exc:
                self._redis_paused_until = time.monotonic() + self.redis_outage.failed(str(exc))
            except HubError as exc:
                log.warning(
                    "events.enqueue_failed",
                    extra={"count": len(batch), "error_class": type(exc).__name__},
                )
            finally:
                for _ in batch:
                    self._to_enqueue.task_done()

    def _backlog(self, queue: str) -> bool:
        """Whether `queue` holds a job no worker has taken yet (and if Redis cannot say)."""
        assert self.redis is not None
        try:
            return bool(self.redis.llen(get_queue(self.redis, queue).key))
        except RedisError:
            return True  # the enqueue that follows finds the outage

    def _due_marks(self) -> list[str]:
        """The ids enqueued `mark_after` ago or more, taken off the marks to make."""
        due: list[str] = []
        until = time.monotonic() - self.mark_after
        while self._marks and self._marks[0][0] <= until:
            due += self._marks.popleft()[1]
        return due

    async def _mark_alone(self, marks: list[str] | None = None) -> None:
        """Mark `marks` in a transaction of their own (None: every mark left, at the stop)."""
        if marks is None:
            marks = [event_id for _, ids in self._marks for event_id in ids]
            self._marks.clear()
        if not marks:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, mark_queued, self.engine, marks)
        except HubError as exc:  # they stay `received`: the relay enqueues them again
            log.warning(
                "events.mark_failed",
                extra={"count": len(marks), "error_class": type(exc).__name__},
            )
