"""Endpoint lanes: each endpoint's sends run on its own threads, at its own concurrency.

A worker process keeps one lane per endpoint. A slow target fills its own lane and never the
threads another endpoint's deliveries need: the deliver job hands each endpoint's group to its
lane and finishes the group (attempts, statuses, retries) as soon as its last send returns.

An endpoint's concurrency is `concurrency:` in endpoints.yaml, or else derived from its
timeout and rate limit: enough sends in flight to keep up with the rate when every answer takes
the whole timeout (rate x timeout, Little's law), between 1 and DERIVED_MAX; DEFAULT without a
rate limit. A lane holds at most LANE_ROUNDS rounds of sends (queued or in flight). When it is
full, a deliver job waits for room only if the lane, at the speed its sends have shown, frees it
within ROOM_WAIT (a fast endpoint under a burst: deferring would cost more than waiting; a new
lane, whose speed is not known yet, is given ROOM_WAIT to show it); otherwise the rest of a
batch waits in the database (deferred, no attempt used) for about the time the lane needs to
drain, so one process never hoards a slow endpoint's backlog under long leases and a slow
endpoint never holds the job.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import limits

from hub.delivery.endpoints import EndpointConfig

DEFAULT_CONCURRENCY = 32  # sends in flight per endpoint and process without a rate limit
DERIVED_MAX = 32  # the most a rate limit makes it (`concurrency:` may say up to MAX_CONCURRENCY)
MAX_CONCURRENCY = 64  # EndpointConfig's bound, and each endpoint client's connection pool
LANE_ROUNDS = 4  # rounds of sends a lane takes on before the rest of a batch is deferred
LEASE_MIN_MARGIN = 2.0  # seconds added to a lease, at least (the timeout when longer)
EWMA = 0.2  # weight of the latest send in the lane's average send time
ROOM_WAIT = 0.5  # seconds a job may wait for room in a full lane that drains that fast


def concurrency_of(config: EndpointConfig) -> int:
    """The endpoint's sends in flight per process: configured, or from timeout and rate limit."""
    if config.concurrency is not None:
        return config.concurrency
    if config.rate_limit is None:
        return DEFAULT_CONCURRENCY
    item = limits.parse(config.rate_limit)
    per_second = item.amount / max(item.get_expiry(), 1)
    return max(1, min(DERIVED_MAX, math.ceil(per_second * config.timeout)))


def margin(timeout: float) -> float:
    return max(LEASE_MIN_MARGIN, timeout)


@dataclass(frozen=True)
class Reservation:
    """Room taken in a lane: how many sends, their lease, and the wait for the ones left out."""

    taken: int
    lease: float  # seconds: the sends' rounds, each up to the timeout, plus the margin
    wait: float  # seconds the left-out ones wait before they are tried again


class Lane:
    """One endpoint's threads and the count of its sends queued or in flight."""

    def __init__(self, name: str, concurrency: int) -> None:
        self.name = name
        self.concurrency = concurrency
        self.capacity = concurrency * LANE_ROUNDS
        self.executor = ThreadPoolExecutor(concurrency, thread_name_prefix=f"send-{name}"[:15])
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._busy = 0
        self._average: float | None = None  # seconds per send, as recently seen

    @property
    def busy(self) -> int:
        return self._busy

    def reserve(self, count: int, timeout: float, *, wait: float = 0.0) -> Reservation:
        """Take room for up to `count` sends; `release` gives back what is not used. With
        `wait`, first wait up to that long for the room, if the lane frees it that fast."""
        with self._lock:
            deadline = time.monotonic() + wait
            need = min(count, self.capacity)
            while need > self.capacity - self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._average is not None:  # unknown (a new lane): wait and see
                    short = need - (self.capacity - self._busy)  # sends that must finish first
                    if math.ceil(short / self.concurrency) * self._average > left:
                        break
                self._room.wait(left)
            taken = max(0, min(count, self.capacity - self._busy))
            self._busy += taken
            rounds = math.ceil(self._busy / self.concurrency)
            per_send = self._average if self._average is not None else timeout
            return Reservation(
                taken=taken,
                lease=timeout * max(rounds, 1) + margin(timeout),
                wait=max(1.0, per_send * rounds),
            )

    def release(self, count: int) -> None:
        with self._lock:
            self._busy = max(0, self._busy - count)
            self._room.notify_all()

    def observe(self, seconds: float) -> None:
        with self._lock:
            old = self._average
            self._average = seconds if old is None else old + EWMA * (seconds - old)

    def submit(self, fn: Callable[[], None]) -> Future[None]:
        return self.executor.submit(fn)

    def close(self, wait: bool = True) -> None:
        self.executor.shutdown(wait=wait)


class Lanes:
    """The process's lanes by endpoint; a lane is rebuilt when its concurrency changes."""

    def __init__(self) -> None:
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()

    def get(self, name: str, config: EndpointConfig) -> Lane:
        concurrency = concurrency_of(config)
        with self._lock:
            lane = self._lanes.get(name)
            if lane is None or lane.concurrency != concurrency:
                if lane is not None:
                    lane.close(wait=False)  # its sends in flight finish on their threads
                lane = self._lanes[name] = Lane(name, concurrency)
            return lane

    def close(self) -> None:
        with self._lock:
            lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            lane.close()
