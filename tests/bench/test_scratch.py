"""`hub bench` flushes the Redis DB it runs in: it refuses one that holds keys of someone else."""

from __future__ import annotations

import pytest
from redis import Redis

from hub.bench.scratch import SCRATCH_MARK, claim_redis_db
from hub.core.errors import SettingError
from hub.core.settings import Settings


def test_a_db_with_foreign_keys_is_refused_and_left_alone(redis: Redis) -> None:
    elsewhere = Settings(redis_url="redis://127.0.0.1:6379/0", _env_file=None)  # type: ignore[call-arg]
    claim_redis_db(redis, elsewhere, 9)  # empty: the bench may take it

    redis.set("someone:else", "precious")
    with pytest.raises(SettingError, match=r"holds 1 keys that are not hub bench's.*--redis-db"):
        claim_redis_db(redis, elsewhere, 9)
    assert redis.get("someone:else") == b"precious"

    redis.delete("someone:else")
    redis.set(SCRATCH_MARK, "1")
    redis.set("hub:leftover", "from an earlier bench")
    claim_redis_db(redis, elsewhere, 9)  # the bench's own leftovers: taken


def test_the_db_hub_itself_uses_is_refused(redis: Redis) -> None:
    same = Settings(redis_url="redis://127.0.0.1:6379/14", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(SettingError, match="the one HUB_REDIS_URL uses"):
        claim_redis_db(redis, same, 14)
