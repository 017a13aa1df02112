"""The applied mappings as running processes see them, reloaded when a new version is applied.

Workers and the web process never read mappings/ at run time: they compile what `apply` stored in
the database. `LiveMappings.get` looks at the Redis key `hub:config:version` at most once a second
and recompiles when it changed; when Redis has no key (flushed, or down during the apply) it asks
the database for the latest version every few seconds instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.core.models import EndpointKind, EventMapping, WebhookEndpoint
from hub.ingress.applied import published_version
from hub.mapping.apply import current_version
from hub.mapping.config import ruleset_from_definitions
from hub.mapping.engine import RuleSet

log = logging.getLogger("hub.mapping.live")

CACHE_KEY = "mappings"


@dataclass(frozen=True)
class Applied:
    version: int
    ruleset: RuleSet
    endpoint_ids: dict[str, int] = field(default_factory=dict)  # name -> active row id


def load_applied(engine: Engine) -> Applied:
    """Compile the active rules and endpoints stored in the database."""
    with Session(engine) as session:
        version = current_version(session)
        rules = session.scalars(select(EventMapping).where(EventMapping.active.is_(True))).all()
        endpoints = session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True))
        ).all()
        signatures = {
            row.name: (EndpointKind(row.kind), str(row.definition.get("method") or "POST"))
            for row in endpoints
        }
        ruleset = ruleset_from_definitions([r.definition for r in rules], signatures, version)
        return Applied(version, ruleset, {row.name: row.id for row in endpoints})


class LiveMappings:
    """A per-process cache of the applied mappings (keep one in a WorkerContext or app.state)."""

    def __init__(self, interval: float = 1.0, db_interval: float = 5.0) -> None:
        self.interval = interval
        self.db_interval = db_interval
        self._applied: Applied | None = None
        self._next_check = 0.0
        self._next_db_check = 0.0

    def get(self, engine: Engine, redis: Redis | None) -> Applied:
        now = time.monotonic()
        if self._applied is not None and now < self._next_check:
            return self._applied
        self._next_check = now + self.interval
        wanted = published_version(redis)
        if wanted is None and (self._applied is None or now >= self._next_db_check):
            self._next_db_check = now + self.db_interval
            with Session(engine) as session:
                wanted = current_version(session)
        if self._applied is None or (wanted is not None and wanted != self._applied.version):
            self._applied = load_applied(engine)
            log.info("mappings.loaded", extra={"version": self._applied.version})
        return self._applied


def live_mappings(cache: dict[str, Any]) -> LiveMappings:
    """The process's LiveMappings kept in `cache` (WorkerContext.cache)."""
    found = cache.get(CACHE_KEY)
    if not isinstance(found, LiveMappings):
        found = LiveMappings()
        cache[CACHE_KEY] = found
    return found
