"""Outgoing rate limit per endpoint (`rate_limit: 10/s`), shared by every worker through Redis.

A delivery over the limit is deferred to when the window lets it through, never failed and never
charged an attempt. Uses the `limits` library's moving window on the process's Redis pool.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from hub.core.queues import THROTTLE_PREFIX

NAMESPACE = "outgoing"


class Throttle:
    def __init__(self, redis: Redis) -> None:
        storage = RedisStorage(
            "redis://", connection_pool=redis.connection_pool, key_prefix=THROTTLE_PREFIX
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, rate: str) -> RateLimitItem:
        item = self._items.get(rate)
        if item is None:
            item = self._items[rate] = parse(rate)
        return item

    def admit(self, endpoint: str, rate: str, count: int) -> tuple[int, float]:
        """Take up to `count` slots now; returns (admitted, seconds until the next free slot)."""
        item = self._item(rate)
        admitted = 0
        while admitted < count and self._limiter.hit(item, NAMESPACE, endpoint):
            admitted += 1
        if admitted == count:
            return admitted, 0.0
        stats = self._limiter.get_window_stats(item, NAMESPACE, endpoint)
        return admitted, max(stats.reset_time - time.time(), 0.05)
