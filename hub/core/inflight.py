"""Which ids RQ's jobs carry right now: the evidence the sweeper re-enqueues on, instead of age.

Every hub job takes one list of ids (events, deliveries, dead letters). A row whose id no live
job carries has lost its job (a worker SIGKILLed, Redis flushed) and goes to its queue again
within seconds; a row whose job is only waiting behind a backlog is never enqueued twice.

    waiting   ids in jobs on a queue, or failed jobs that `requeue_failed_jobs` will enqueue
              again
    running   ids in started jobs whose worker's pulse is alive

A job between a queue and a worker (a single-queue worker moves it to RQ's intermediate list,
then into the started registry, in two steps a few milliseconds apart) counts for nothing: one
still there, not started, after `CONFIRM_AFTER` lost its worker between the two steps (a
SIGKILL), and RQ's own clean-up would find it only minutes later.

A worker proves it is alive with a pulse: `hub:worker:pulse:<worker name>`, set every
`PULSE_EVERY` seconds with an expiry of `PULSE_TTL` (`Pulse`, a thread of `hub worker`). A
started job whose worker's pulse expired is lost: RQ itself would keep it `started` until its
timeout, many minutes later.

Reading the queues and the database is not atomic: a job moves between two lists in between, a
row is written a moment before its job. So a suspect is only acted on once it has been one for
`CONFIRM_AFTER` seconds in a row (`Suspects`, kept in Redis so a new leader carries on).

The read is cheap enough to run every second beside busy workers (`InFlight`, one per sweeper):
a job's ids never change, so each job's `data` field is read and decoded once (HGET, not
whole jobs), and later reads fetch only the job ids in the lists, the worker of each started job
and the retry count of each failed one. The tasks of one round share one read (`REUSE`).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job

from hub.core.errors import RedisUnavailable
from hub.core.queues import (
    PRIORITY,
    REQUEUE_FAILED,
    REQUEUE_FAILED_MAX,
    SERIALIZER,
    SUSPECTS_PREFIX,
    WORKER_PULSE_PREFIX,
    get_queue,
)

log = logging.getLogger("hub.core.inflight")

PULSE_EVERY = 1.0  # seconds between two pulses of a worker
PULSE_TTL = 4.0  # seconds a pulse lasts: a killed worker's jobs count as lost this much later
CONFIRM_AFTER = 2.0  # seconds an id must stay uncarried before the sweeper acts on it
SUSPECTS_TTL = 60  # seconds the suspect list outlives the last sweep that wrote it
REUSE = 0.5  # seconds one read of the queues serves the tasks of a round (they run every 1 s)


@dataclass
class Carried:
    """The ids hub's jobs carry, read from RQ's queues and registries."""

    waiting: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    jobs: int = 0  # jobs read

    def __contains__(self, item: object) -> bool:
        return item in self.waiting or item in self.running


def carried(redis: Redis) -> Carried:
    """One read of every queue, its started and failed registries, and the jobs in them;
    raises RedisUnavailable. A sweeper keeps an `InFlight` instead."""
    return InFlight(reuse=0.0).carried(redis)


class InFlight:
    """What RQ's jobs carry, read again cheaply: each job's ids are decoded once and kept while
    the job is in a list; a read younger than `reuse` seconds is answered again."""

    def __init__(self, *, reuse: float = REUSE) -> None:
        self.reuse = reuse
        self._jobs: dict[str, tuple[str, list[str]]] = {}  # job id -> (function, ids)
        self._last: Carried | None = None
        self._read_at = 0.0  # time.monotonic()
        self._lock = threading.Lock()

    def carried(self, redis: Redis) -> Carried:
        """Raises RedisUnavailable."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._read_at < self.reuse:
                return self._last
            read_at = time.monotonic()
            try:
                self._last = self._read(redis)
            except (RedisError, OSError) as exc:
                self._last = None
                raise RedisUnavailable(f"cannot read RQ's queues: {exc}") from exc
            self._read_at = read_at
            return self._last

    def _read(self, redis: Redis) -> Carried:
        waiting, started, failed = _listed(redis)
        listed = waiting | started | failed
        self._jobs = {job_id: known for job_id, known in self._jobs.items() if job_id in listed}
        new = sorted(listed - self._jobs.keys())
        in_hand = sorted(started - waiting)
        to_requeue = sorted(failed - waiting - started)
        with redis.pipeline(transaction=False) as pipe:
            for job_id, name in [
                *((j, "data") for j in new),
                *((j, "worker_name") for j in in_hand),
                *((j, "meta") for j in to_requeue),
            ]:
                pipe.hget(Job.key_for(job_id), name)
            fields = iter(pipe.execute())
        for job_id in new:
            data = next(fields)
            if data is not None:  # a job gone in between: read again next time, if listed
                self._jobs[job_id] = _decode(data)
        workers = {job_id: next(fields) for job_id in in_hand}
        metas = {job_id: next(fields) for job_id in to_requeue}
        alive = _alive(redis, {_text(w) for w in workers.values() if w})
        out = Carried(jobs=len(listed))
        for job_id in listed:
            known = self._jobs.get(job_id)
            if known is None:
                continue
            func_name, ids = known
            if job_id in waiting:
                out.waiting.update(ids)
            elif job_id in started:
                worker = workers.get(job_id)
                if worker and _text(worker) in alive:
                    out.running.update(ids)
            elif job_id in metas and _will_requeue(func_name, metas[job_id]):
                out.waiting.update(ids)
            # else: spent, carried by nothing
        return out


def _listed(redis: Redis) -> tuple[set[str], set[str], set[str]]:
    """The job ids on every queue, started, and failed (one pipeline). RQ's intermediate lists
    are not read: a job still there and not started lost its worker (see the module's doc)."""
    queues = [get_queue(redis, name) for name in PRIORITY]
    with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.lrange(queue.key, 0, -1)
            pipe.zrange(queue.started_job_registry.key, 0, -1)
            pipe.zrange(queue.failed_job_registry.key, 0, -1)
        lists = pipe.execute()
    waiting: set[str] = set()
    started: set[str] = set()
    failed: set[str] = set()
    for i in range(len(queues)):
        queued, in_started, in_failed = lists[3 * i : 3 * i + 3]
        waiting.update(_text(v) for v in queued)
        # started registry members are "<job id>:<execution id>"
        started.update(_text(v).split(":", 1)[0] for v in in_started)
        failed.update(_text(v) for v in in_failed)
    return waiting, started, failed


def _alive(redis: Redis, workers: set[str]) -> set[str]:
    """The workers whose pulse has not expired."""
    if not workers:
        return set()
    names = sorted(workers)
    pulses = redis.mget([WORKER_PULSE_PREFIX + n for n in names])
    return {n for n, v in zip(names, pulses, strict=True) if v is not None}


def _decode(data: bytes) -> tuple[str, list[str]]:
    """A job's function name and the ids it carries, from its `data` field (as rq stores it:
    zlib-compressed JSON `[function, instance, args, kwargs]`); a job hub did not write carries
    no ids of hub's."""
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        raw = data
    try:
        func_name, _instance, args, _kwargs = SERIALIZER.loads(raw)
    except Exception:  # noqa: BLE001 - not hub's job format
        return "", []
    if not isinstance(func_name, str) or not args or not isinstance(args[0], list):
        return str(func_name), []
    return func_name, [str(v) for v in args[0]]


def _will_requeue(func_name: str, meta: bytes | None) -> bool:
    if func_name not in REQUEUE_FAILED:
        return False
    try:
        fields = SERIALIZER.loads(meta) if meta else {}
    except Exception:  # noqa: BLE001 - unreadable meta: rq's requeue reads it the same way
        fields = {}
    requeues = fields.get("hub_requeues", 0) if isinstance(fields, dict) else 0
    return int(requeues) < REQUEUE_FAILED_MAX


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Suspects:
    """Ids seen uncarried, with when each was first seen so (a sorted set in Redis, `name`)."""

    def __init__(self, redis: Redis, name: str, *, confirm_after: float = CONFIRM_AFTER) -> None:
        self.redis = redis
        self.key = SUSPECTS_PREFIX + name
        self.confirm_after = confirm_after

    def confirm(self, suspects: Iterable[str]) -> set[str]:
        """Record this round's suspects; returns the ones suspect for `confirm_after` s.

        An id that is not a suspect this round is forgotten; a confirmed one too (the caller
        enqueues it, so it is carried next round)."""
        now = time.time()
        current = set(suspects)
        try:
            pairs: list[tuple[bytes, float]] = self.redis.zrange(  # type: ignore[assignment]
                self.key, 0, -1, withscores=True
            )
            seen = {_text(member): float(score) for member, score in pairs}
            confirmed = {i for i in current if now - seen.get(i, now) >= self.confirm_after}
            keep = {i: seen.get(i, now) for i in current - confirmed}
            with self.redis.pipeline() as pipe:
                pipe.delete(self.key)
                if keep:
                    pipe.zadd(self.key, keep)
                    pipe.expire(self.key, SUSPECTS_TTL)
                pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"cannot keep the sweeper's suspects: {exc}") from exc
        return confirmed


class Pulse:
    """A worker's proof of life: `WORKER_PULSE_PREFIX + name`, renewed from a daemon thread."""

    def __init__(self, redis: Redis, name: str, *, every: float = PULSE_EVERY) -> None:
        self.redis = redis
        self.key = WORKER_PULSE_PREFIX + name
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pulse-{name}", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.every + 1)
        try:
            self.redis.delete(self.key)
        except (RedisError, OSError):
            pass  # it expires on its own

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._beat()

    def _beat(self) -> None:
        try:
            self.redis.set(self.key, "1", px=int(PULSE_TTL * 1000))
        except (RedisError, OSError):
            pass  # Redis is away: the worker's own loop logs the outage
