"""`hub up`'s boot step: apply the mappings directory before the children start."""

from __future__ import annotations

from sqlalchemy import Engine

from hub.core.queues import connect_redis
from hub.core.settings import Settings
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings


def apply_at_boot(settings: Settings, engine: Engine) -> str:
    """Validate and apply settings.mappings_dir; a problem stops `hub up` with every problem."""
    directory = settings.mappings_dir
    if not directory.is_dir():
        return f"none applied (no directory {directory}; events will have no route)"
    config = load_mappings(directory)
    redis = connect_redis(settings)
    try:
        result = apply_mappings(engine, redis, config)
    finally:
        redis.close()
    note = "" if result.changed else ", unchanged"
    return (
        f"{len(config.rules)} rules, {len(config.endpoints)} endpoints, "
        f"{len(config.sources)} sources, version {result.version}{note}"
    )
