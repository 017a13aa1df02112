"""Rate limits per (tenant, source) in Redis: override, source, default; 429 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest
from ingress_support import free_port
from redis import Redis
from sqlalchemy import Engine, insert

from hub.core.errors import RateLimited, SettingError
from hub.core.models import RateLimit, Tenant
from hub.ingress.ratelimit import RateLimiter, choose_limit, limits_url, load_overrides


def test_precedence_source_override_tenant_override_source_default() -> None:
    both = {"site": "5/minute", None: "7/minute"}
    assert choose_limit(both, "site", "9/minute", "100/minute") == "5/minute"
    assert choose_limit(both, "zapi", "9/minute", "100/minute") == "7/minute"
    assert choose_limit({}, "zapi", "9/minute", "100/minute") == "9/minute"
    assert choose_limit({}, "zapi", None, "100/minute") == "100/minute"


def test_overrides_are_read_per_tenant(engine: Engine) -> None:
    with engine.begin() as conn:
        a = conn.execute(
            insert(Tenant).values(slug="a", name="a", active=True)
        ).inserted_primary_key
        b = conn.execute(
            insert(Tenant).values(slug="b", name="b", active=True)
        ).inserted_primary_key
        conn.execute(insert(RateLimit).values(tenant_id=a[0], source="site", limit="5/minute"))
        conn.execute(insert(RateLimit).values(tenant_id=a[0], source=None, limit="50/minute"))
        conn.execute(insert(RateLimit).values(tenant_id=b[0], source="site", limit="1/second"))
    assert load_overrides(engine, a[0]) == {"site": "5/minute", None: "50/minute"}
    assert load_overrides(engine, b[0]) == {"site": "1/second"}


def test_limits_url_translates_our_redis_urls() -> None:
    assert limits_url("redis://127.0.0.1:6379/14") == "async+redis://127.0.0.1:6379/14"
    assert limits_url("unix:///tmp/r.sock") == "async+redis+unix:///tmp/r.sock"
    with pytest.raises(SettingError):
        limits_url("memcached://x")


async def _none(_tenant_id: int) -> dict[str | None, str]:
    return {}


def test_requests_are_counted_per_tenant_and_source_in_redis(redis_url: str, redis: Redis) -> None:
    async def scenario() -> tuple[list[bool], int, list[bool]]:
        limiter = RateLimiter(redis_url, "100/minute", _none)
        outcomes = []
        retry_after = 0
        for _ in range(4):
            try:
                await limiter.check(1, "site", "3/minute")
                outcomes.append(True)
            except RateLimited as exc:
                outcomes.append(False)
                retry_after = exc.retry_after
        others = []
        for tenant, source in ((2, "site"), (1, "zapi")):
            await limiter.check(tenant, source, "3/minute")
            others.append(True)
        return outcomes, retry_after, others

    outcomes, retry_after, others = asyncio.run(scenario())
    assert outcomes == [True, True, True, False]
    assert 1 <= retry_after <= 60
    assert others == [True, True]
    assert any(k.startswith(b"hub:ratelimit") for k in redis.keys("*"))


def test_a_second_limiter_shares_the_count(redis_url: str, redis: Redis) -> None:
    async def scenario() -> list[bool]:
        web1 = RateLimiter(redis_url, "2/minute", _none)
        web2 = RateLimiter(redis_url, "2/minute", _none)
        results = []
        for limiter in (web1, web2, web1):
            try:
                await limiter.check(1, "site", None)
                results.append(True)
            except RateLimited:
                results.append(False)
        return results

    assert asyncio.run(scenario()) == [True, True, False]


def test_redis_down_lets_requests_through() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(f"redis://127.0.0.1:{free_port()}/0", "1/minute", _none)
        for _ in range(3):
            await limiter.check(1, "site", None)

    asyncio.run(scenario())  # no RateLimited, no exception: ingress keeps storing events


def test_a_bad_default_names_the_setting(redis_url: str) -> None:
    with pytest.raises(SettingError, match="HUB_DEFAULT_RATE_LIMIT"):
        RateLimiter(redis_url, "lots", _none)


def test_concurrent_requests_are_counted_together_yet_exactly(redis_url: str, redis: Redis) -> None:
    async def scenario() -> list[bool]:
        limiter = RateLimiter(redis_url, "100/minute", _none)

        async def one() -> bool:
            try:
                await limiter.check(1, "site", "7/minute")
            except RateLimited:
                return False
            return True

        first = await asyncio.gather(*(one() for _ in range(5)))
        second = await asyncio.gather(*(one() for _ in range(5)))  # 2 fit, 3 do not
        return first + second

    results = asyncio.run(scenario())
    assert results.count(True) == 7
    assert results[:5] == [True] * 5


def test_override_rows_may_use_the_short_units_and_a_bad_one_falls_back_to_the_default(
    redis_url: str, redis: Redis
) -> None:
    async def overrides(_tenant_id: int) -> dict[str | None, str]:
        return {"site": "1/min", "zapi": "no limit at all"}

    async def scenario() -> tuple[list[bool], list[bool]]:
        limiter = RateLimiter(redis_url, "2/minute", overrides)

        async def outcomes(source: str, n: int) -> list[bool]:
            out = []
            for _ in range(n):
                try:
                    await limiter.check(1, source, None)
                    out.append(True)
                except RateLimited:
                    out.append(False)
            return out

        return await outcomes("site", 2), await outcomes("zapi", 3)

    site, zapi = asyncio.run(scenario())
    assert site == [True, False]  # "1/min"
    assert zapi == [True, True, False]  # unreadable row: the default, 2/minute


def test_a_busy_source_reserves_a_share_of_a_large_limit_and_never_exceeds_it(
    redis_url: str, redis: Redis
) -> None:
    """1000/minute: a process takes 10 more than it needs from Redis at once and lets the next
    10 through without asking again; two processes together stay within the limit, and refuse
    early by at most their unused reservations."""

    async def scenario() -> tuple[int, int, int]:
        web1 = RateLimiter(redis_url, "100/minute", _none)
        web2 = RateLimiter(redis_url, "100/minute", _none)
        await web1.check(1, "site", "1000/minute")
        item = web1._item("1000/minute")
        counted_after_one = (await web1._strategy.get_window_stats(item, "1", "site")).remaining
        for _ in range(10):  # served from the reservation: Redis's count does not move
            await web1.check(1, "site", "1000/minute")
        counted_after_eleven = (await web1._strategy.get_window_stats(item, "1", "site")).remaining
        allowed = 11
        for n in range(1100):
            try:
                await (web1 if n % 2 else web2).check(1, "site", "1000/minute")
                allowed += 1
            except RateLimited:
                pass
        return counted_after_one, counted_after_eleven, allowed

    after_one, after_eleven, allowed = asyncio.run(scenario())
    assert after_one == 1000 - 11, f"one request reserved 10 more: {1000 - after_one} counted"
    assert after_eleven == after_one, "the next 10 requests were served without Redis"
    assert 1000 - 2 * 10 <= allowed <= 1000, f"{allowed} of 1111 let through by two processes"


def test_a_reservation_is_at_most_a_thousand_requests(redis_url: str, redis: Redis) -> None:
    """1,000,000/minute: 1% would be 10,000; a process reserves RESERVE_MAX (1,000) at most."""

    async def scenario() -> int:
        web = RateLimiter(redis_url, "100/minute", _none)
        await web.check(1, "site", "1000000/minute")
        item = web._item("1000000/minute")
        return (await web._strategy.get_window_stats(item, "1", "site")).remaining

    assert asyncio.run(scenario()) == 1_000_000 - 1 - 1000


class ClosedTransport:
    """A counter whose connection was reset in the middle of a command, as the async Redis
    client reports it under uvloop: a RuntimeError, not a Redis error."""

    def __init__(self) -> None:
        self.hits = 0

    async def hit(self, *_args: object, **_kwargs: object) -> bool:
        self.hits += 1
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")


def test_a_counter_that_fails_in_any_way_lets_every_request_through_and_holds_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = ClosedTransport()

    async def scenario() -> None:
        limiter = RateLimiter("redis://127.0.0.1:9/0", "1/minute", _none, counter=counter)  # type: ignore[arg-type]
        checks = [limiter.check(1, "site", None) for _ in range(5)]
        await asyncio.wait_for(asyncio.gather(*checks), 2)  # a waiter left unanswered hangs here

    with caplog.at_level("WARNING", logger="hub.ingress.ratelimit"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records]
    assert counter.hits == 1, f"the five were counted together, then Redis left alone: {said}"
    assert said == ["ratelimit.redis_down"], said
