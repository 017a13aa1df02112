"""Keys as the web process sees them: cached briefly, revoked within seconds, last use kept."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ingress_support import make_key
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.core.models import ApiKey, Tenant, utcnow
from hub.ingress.apikeys import KeyCache, KeyRecord, UsageTracker, load_record, revoke, split_key


def key_id(engine: Engine) -> int:
    with Session(engine) as session:
        value = session.scalar(select(ApiKey.id))
        assert value is not None
        return value


def test_a_cached_key_is_refused_within_the_ttl_after_revocation(engine: Engine) -> None:
    secret = make_key(engine, sources=["site"])
    cache = KeyCache.for_engine(engine, ttl=0.2)

    async def scenario() -> tuple[KeyRecord | None, KeyRecord | None, KeyRecord | None]:
        before = await cache.authenticate(secret)
        with Session(engine) as session, session.begin():
            revoke(session, key_id(engine))
        cached = await cache.authenticate(secret)  # still trusted: within the TTL
        await asyncio.sleep(0.25)
        after = await cache.authenticate(secret)
        return before, cached, after

    before, cached, after = asyncio.run(scenario())
    assert before is not None and before.tenant_slug == "clinic-1"
    assert before.allows("site") and not before.allows("zapi")
    assert cached is not None
    assert after is None


def test_a_wrong_secret_with_a_known_prefix_is_refused(engine: Engine) -> None:
    secret = make_key(engine)
    cache = KeyCache.for_engine(engine)
    forged = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    assert asyncio.run(cache.authenticate(forged)) is None
    assert asyncio.run(cache.authenticate("hub_short_x")) is None


def test_an_expired_key_is_refused(engine: Engine) -> None:
    secret = make_key(engine, expires_at=utcnow() + timedelta(seconds=60))
    cache = KeyCache.for_engine(engine)
    assert asyncio.run(cache.authenticate(secret)) is not None
    later = utcnow() + timedelta(seconds=61)
    assert asyncio.run(cache.authenticate(secret, now=later)) is None


def test_concurrent_lookups_of_one_prefix_share_one_query(engine: Engine) -> None:
    secret = make_key(engine)
    prefix = split_key(secret)
    assert prefix is not None
    queries: list[str] = []

    async def load(p: str) -> KeyRecord | None:
        queries.append(p)
        await asyncio.sleep(0.05)
        return await asyncio.to_thread(load_record, engine, p)

    cache = KeyCache(load)

    async def many() -> list[KeyRecord | None]:
        return await asyncio.gather(*(cache.authenticate(secret) for _ in range(20)))

    results = asyncio.run(many())
    assert all(r is not None for r in results)
    assert queries == [prefix]


def test_usage_is_written_in_one_flush_and_never_backwards(engine: Engine) -> None:
    make_key(engine)
    kid = key_id(engine)
    tracker = UsageTracker()
    first = utcnow()
    tracker.note(kid, first)
    tracker.note(kid, first + timedelta(seconds=5))
    assert tracker.flush(engine) == 1
    assert tracker.flush(engine) == 0  # nothing new
    tracker.note(kid, first)  # an older time from a slower process
    tracker.flush(engine)
    with Session(engine) as session:
        stored = session.scalar(select(ApiKey.last_used_at))
    assert (
        stored is not None and abs((stored - (first + timedelta(seconds=5))).total_seconds()) < 1e-3
    )


def test_repeated_requests_hit_the_cache_not_the_database(engine: Engine) -> None:
    secret = make_key(engine)
    loads = 0

    async def load(prefix: str) -> KeyRecord | None:
        nonlocal loads
        loads += 1
        return await asyncio.to_thread(load_record, engine, prefix)

    cache = KeyCache(load)

    async def run() -> list[KeyRecord | None]:
        return [await cache.authenticate(secret) for _ in range(200)]

    assert all(r is not None for r in asyncio.run(run()))
    assert loads == 1


def test_a_disabled_tenants_keys_are_refused(engine: Engine) -> None:
    secret = make_key(engine)
    with Session(engine) as session, session.begin():
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "clinic-1"))
        assert tenant is not None
        tenant.active = False
    assert asyncio.run(KeyCache.for_engine(engine).authenticate(secret)) is None
