"""Running processes pick a new applied version up through the Redis key, or the database."""

from __future__ import annotations

import shutil
from pathlib import Path

from redis import Redis
from sqlalchemy import Engine

from hub.core.queues import CONFIG_VERSION_KEY
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from hub.mapping.live import LiveMappings, live_mappings

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


def test_nothing_applied_yet_means_no_rules(engine: Engine, redis: Redis) -> None:
    applied = LiveMappings().get(engine, redis)
    assert applied.version == 0
    assert applied.ruleset.rules == ()


def test_a_new_version_is_loaded_when_the_key_changes(
    engine: Engine, redis: Redis, tmp_path: Path
) -> None:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    first = apply_mappings(engine, redis, load_mappings(target))
    live = LiveMappings(interval=0.0)
    applied = live.get(engine, redis)
    assert applied.version == first.version
    assert sorted(applied.ruleset.by_name) == [
        "appointment", "client-registered", "lead-created", "service-completed",
    ]  # fmt: skip
    assert set(applied.endpoint_ids) == {
        "agenda",
        "broker",
        "crm",
        "email",
        "financeiro",
        "marketing",
        "whatsapp",
        "whatsapp_cloud",
    }
    assert live.get(engine, redis) is applied  # same version: the same compiled rules

    (target / "rules" / "client_registered.yaml").unlink()
    second = apply_mappings(engine, redis, load_mappings(target))
    reloaded = live.get(engine, redis)
    assert reloaded.version == second.version
    assert "client-registered" not in reloaded.ruleset.by_name


def test_without_the_redis_key_the_database_version_is_used(engine: Engine, redis: Redis) -> None:
    live = LiveMappings(interval=0.0, db_interval=0.0)
    assert live.get(engine, redis).version == 0
    result = apply_mappings(engine, None, load_mappings(SHIPPED))  # Redis was not told
    assert redis.get(CONFIG_VERSION_KEY) is None
    assert live.get(engine, redis).version == result.version
    assert live.get(engine, None).version == result.version


def test_the_cache_lives_in_the_worker_context_cache() -> None:
    cache: dict[str, object] = {}
    assert live_mappings(cache) is live_mappings(cache)
