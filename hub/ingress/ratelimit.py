"""Incoming rate limits per (tenant, source), counted in Redis and shared by every web process.

The limit is the tenant's override in `rate_limits` (for that source, else for every source), else
the source's `rate_limit` in sources.yaml, else HUB_DEFAULT_RATE_LIMIT. Counting uses the `limits`
library's sliding-window counter (two small counters per key, whatever the limit). An exceeded
limit raises RateLimited with the seconds until the window lets the next request through.

A busy (tenant, source) does not cost a Redis round trip per request: a process reserves a
share of the limit at once (`RESERVE_SHARE` of it, at most `RESERVE_MAX` requests, for at most
`RESERVE_TTL` seconds) and lets that many requests through without asking Redis again. Reserved
requests count in Redis when they are reserved, so a limit is never exceeded; the error is the
other way: each web process may hold up to 1% of a limit unused, which Redis counts as spent
(with four web processes, a 1000/minute limit may refuse from 960 on). Limits under 100 per
window reserve nothing and stay exact.

Redis down does not stop ingress (events are still stored): the check is skipped, and not retried
for a pause that doubles from 0.5 s to 5 s while Redis stays away (`hub.core.outages`), so a dead
Redis costs no time per request; one line is logged when it goes and one when it is back. Any
failure of the counting lets the request through: a connection reset mid-command can surface from
the async client as something else than a Redis error (uvloop: RuntimeError on a closed
transport), and a waiter left unanswered would hold its request, and the web's shutdown, forever.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import DatabaseUnavailable, RateLimited, SettingError
from hub.core.models import RateLimit
from hub.core.outages import Outage
from hub.core.queues import RATELIMIT_PREFIX
from hub.core.units import parse_rate

log = logging.getLogger("hub.ingress.ratelimit")

OVERRIDES_TTL = 10.0  # seconds a tenant's overrides are trusted by a web process
REDIS_TIMEOUT = 0.5
RESERVE_SHARE = 0.01  # of a limit, taken from Redis at once by a busy process
RESERVE_MAX = 1000  # requests (a process at 7,000 webhooks/s: seven round trips a second)
RESERVE_TTL = 1.0  # seconds a reservation may be used

Overrides = dict[str | None, str]  # source (None: every source) -> limit
OverridesLoader = Callable[[int], Awaitable[Overrides]]


def load_overrides(engine: Engine, tenant_id: int) -> Overrides:
    """A tenant's rows in `rate_limits`, by source."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(RateLimit.source, RateLimit.limit).where(RateLimit.tenant_id == tenant_id)
            ).all()
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot read rate limits ({type(exc).__name__})") from exc
    return {row.source: row.limit for row in rows}


def choose_limit(overrides: Overrides, source: str, source_limit: str | None, default: str) -> str:
    """The limit in force: tenant+source override, tenant-wide override, source, default."""
    if source in overrides:
        return overrides[source]
    if None in overrides:
        return overrides[None]
    return source_limit or default


def limits_url(redis_url: str) -> str:
    """Our Redis URL in the `limits` library's async notation."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    if redis_url.startswith(("redis://", "rediss://")):
        return "async+" + redis_url
    raise SettingError("HUB_REDIS_URL", f"unsupported Redis URL for rate limits: {redis_url}")


class RateLimiter:
    """`check(tenant_id, source, source_limit)`: count one request or raise RateLimited."""

    def __init__(
        self,
        redis_url: str,
        default_limit: str,
        load: OverridesLoader,
        *,
        overrides_ttl: float = OVERRIDES_TTL,
        counter: SlidingWindowCounterRateLimiter | None = None,
    ) -> None:
        """`counter` counts the hits (default: the `limits` sliding window in Redis)."""
        try:
            self.default = parse_rate(default_limit)
        except ValueError as exc:
            raise SettingError("HUB_DEFAULT_RATE_LIMIT", str(exc)) from exc
        storage = RedisStorage(
            limits_url(redis_url),
            implementation="redispy",
            key_prefix=RATELIMIT_PREFIX,
            wrap_exceptions=True,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        self._strategy = counter or SlidingWindowCounterRateLimiter(storage)
        self._load = load
        self._ttl = overrides_ttl
        self._overrides: dict[int, tuple[float, Overrides]] = {}
        self._items: dict[str, RateLimitItem] = {}
        self._paused_until = 0.0  # no checks until then: Redis failed (Outage's backoff)
        self.outage = Outage(log, "ratelimit", "redis")
        self._waiting: dict[tuple[str, str, str], list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # looked up once (3.11: a getpid each)
        self._reserved: dict[tuple[int, str, str], list[float]] = {}  # key -> [left, until]

    @classmethod
    def for_engine(cls, engine: Engine, redis_url: str, default_limit: str) -> RateLimiter:
        async def load(tenant_id: int) -> Overrides:
            return await asyncio.to_thread(load_overrides, engine, tenant_id)

        return cls(redis_url, default_limit, load)

    def _take_reserved(self, key: tuple[int, str, str], now: float) -> bool:
        reserve = self._reserved.get(key)
        if reserve is None or reserve[0] < 1 or reserve[1] <= now:
            return False
        reserve[0] -= 1
        return True

    async def check(self, tenant_id: int, source: str, source_limit: str | None) -> None:
        """Count one request; RateLimited when over the limit (Redis down: let through).

        Concurrent requests for one (tenant, source) share Redis round trips: while one hit is
        in flight, later requests wait and are counted together (`cost=n`); only when that
        batch does not fit are they counted one by one, so the limit stays exact.
        """
        now = time.monotonic()
        if now < self._paused_until:
            return
        cached = self._overrides.get(tenant_id)
        if cached is None or cached[0] <= now:  # the tenant's overrides, read again
            cached = self._overrides[tenant_id] = (now + self._ttl, await self._load(tenant_id))
        limit = choose_limit(cached[1], source, source_limit, self.default)
        if self._take_reserved((tenant_id, source, limit), now):
            return
        item = self._item(limit)
        key = (str(tenant_id), source, limit)
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = []
            task = loop.create_task(self._drain(item, key, [future]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            waiting.append(future)
        await future

    async def _drain(
        self, item: RateLimitItem, key: tuple[str, str, str], batch: list[asyncio.Future[None]]
    ) -> None:
        try:
            await asyncio.sleep(0)  # let requests already read in this loop turn join the batch
            batch += self._waiting[key]
            self._waiting[key] = []
            while batch:
                await self._settle(item, key, batch)
                batch, self._waiting[key] = self._waiting[key], []
        finally:  # every waiter gets an answer, however this ends (only a cancellation leaves any)
            for future in [*batch, *self._waiting.pop(key, [])]:
                if not future.done():
                    future.set_result(None)

    async def _settle(
        self, item: RateLimitItem, key: tuple[str, str, str], batch: list[asyncio.Future[None]]
    ) -> None:
        ids = key[:2]
        try:
            extra = min(RESERVE_MAX, int(item.amount * RESERVE_SHARE))
            if extra:
                fits = await self._strategy.hit(item, *ids, cost=len(batch) + extra)
                self.outage.recovered()
                if fits:
                    self._reserved[(int(key[0]), key[1], key[2])] = [
                        float(extra),
                        time.monotonic() + RESERVE_TTL,
                    ]
                    _answer(batch, None)
                    return
            fits = await self._strategy.hit(item, *ids, cost=len(batch))
            self.outage.recovered()
            if fits:
                _answer(batch, None)
                return
            for index, future in enumerate(batch):
                if len(batch) > 1 and await self._strategy.hit(item, *ids):
                    _answer([future], None)
                    continue
                stats = await self._strategy.get_window_stats(item, *ids)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                limited = RateLimited(
                    f"more than {item} for this source; retry in {retry_after}s",
                    retry_after=retry_after,
                )
                _answer(batch[index:], limited)
                return
        except Exception as exc:  # noqa: BLE001 - see the module docstring: let them through
            self._paused_until = time.monotonic() + self.outage.failed(_reason(exc))
            _answer(batch, None)

    def _item(self, limit: str) -> RateLimitItem:
        """The parsed limit; a malformed override row is logged and the default used instead."""
        item = self._items.get(limit)
        if item is None:
            try:
                item = parse(parse_rate(limit))
            except ValueError:
                log.error("ratelimit.bad_limit", extra={"reason": f"not a rate: {limit[:64]!r}"})
                item = parse(self.default)
            self._items[limit] = item
        return item


def _reason(exc: Exception) -> str:
    known = isinstance(exc, (StorageError, RedisError, OSError))
    return f"{type(exc).__name__}: {exc}" if known else f"unexpected {type(exc).__name__}: {exc}"


def _answer(futures: list[asyncio.Future[None]], error: RateLimited | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
