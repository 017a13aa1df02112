"""How a long-running process lives through an outage of Redis or the database.

A worker, the sweeper and the web process never exit because a service they need went away:
they wait with a capped backoff and try again. `Outage` is that waiting, for one service seen by
one process: `failed(reason)` logs once when the service goes down and returns how long to wait
before the next try (doubling from `first` up to `cap`); `recovered()` logs once when it answers
again, with how long it was gone. Between those two lines nothing is logged, however many tries
fail: a 30-minute outage is two log lines, not 1,800.

    outage = Outage(log, "worker", "redis")
    while not stop.is_set():
        try:
            redis.ping()
        except RedisError as exc:
            stop.wait(outage.failed(str(exc)))
            continue
        outage.recovered()
        ...
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

BACKOFF_FIRST = 0.5  # seconds before the first retry
BACKOFF_CAP = 5.0  # seconds between retries, at most: a restored service is seen within this


@dataclass
class Outage:
    """The state (up or down) of one service as one process sees it."""

    log: logging.Logger
    process: str  # "worker", "sweeper", "web"
    service: str  # "redis", "database", or a sweep task's name
    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    since: float | None = None  # monotonic time of the first failure; None while up
    failures: int = 0
    delay: float = 0.0  # the current wait between tries

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, reason: str) -> float:
        """Record a failed try; log if the service was up until now. Returns the wait (s)."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            self.delay = self.first
            self.log.warning(
                f"{self.process}.{self.service}_down",
                extra={"service": self.service, "reason": reason[:300]},
            )
        else:
            self.delay = min(self.delay * 2, self.cap)
        return self.delay

    def recovered(self) -> None:
        """Record a successful try; log if the service was down until now."""
        if self.since is None:
            return
        seconds = time.monotonic() - self.since
        self.log.warning(
            f"{self.process}.{self.service}_back",
            extra={
                "service": self.service,
                "down_s": round(seconds, 1),
                "count": self.failures,
            },
        )
        self.since = None
        self.failures = 0
        self.delay = 0.0
