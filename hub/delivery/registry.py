"""What a worker knows about endpoints and tenants, cached per process.

Endpoints come from `webhook_endpoints` (written by `hub mappings apply`): for each name, the
highest `version` that is `active`. The cache reloads when the Redis key `hub:config:version`
changes, when a name is missing (at most every few seconds), and every minute regardless (a Redis
flush resets the key).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, select

from hub.core.models import Tenant, WebhookEndpoint
from hub.core.queues import CONFIG_VERSION_KEY
from hub.delivery.endpoints import EndpointConfig

log = logging.getLogger("hub.delivery.registry")

MAX_AGE = 60.0
MISSING_RELOAD_AFTER = 5.0


class EndpointRegistry:
    def __init__(self, engine: Engine, redis: Redis) -> None:
        self.engine = engine
        self.redis = redis
        self._endpoints: dict[str, EndpointConfig] = {}
        self._invalid: dict[str, str] = {}
        self._tenants: dict[int, str] = {}
        self._version: Any = None
        self._loaded_at = 0.0

    def refresh(self) -> None:
        """Reload when the applied configuration changed (one GET per batch)."""
        try:
            version = self.redis.get(CONFIG_VERSION_KEY)
        except RedisError:
            version = self._version
        stale = time.monotonic() - self._loaded_at > MAX_AGE
        if version != self._version or stale or not self._loaded_at:
            self._load()
            self._version = version

    def _load(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(WebhookEndpoint.name, WebhookEndpoint.version, WebhookEndpoint.definition)
                .where(WebhookEndpoint.active.is_(True))
                .order_by(WebhookEndpoint.name, WebhookEndpoint.version)
            ).all()
            tenants = conn.execute(select(Tenant.id, Tenant.slug)).all()
        endpoints: dict[str, EndpointConfig] = {}
        invalid: dict[str, str] = {}
        for name, version, definition in rows:  # ascending: the highest version wins
            try:
                endpoints[name] = EndpointConfig.model_validate(definition)
                invalid.pop(name, None)
            except ValidationError as exc:
                invalid[name] = f"endpoint {name} v{version} is invalid: {exc.errors()[0]['msg']}"
                endpoints.pop(name, None)
        self._endpoints, self._invalid = endpoints, invalid
        self._tenants = {tenant_id: slug for tenant_id, slug in tenants}
        self._loaded_at = time.monotonic()
        log.info("delivery.endpoints_loaded", extra={"count": len(endpoints)})

    def endpoint(self, name: str) -> EndpointConfig | None:
        found = self._endpoints.get(name)
        if found is None and time.monotonic() - self._loaded_at > MISSING_RELOAD_AFTER:
            self._load()
            found = self._endpoints.get(name)
        return found

    def problem(self, name: str) -> str:
        """Why `name` has no usable configuration."""
        return self._invalid.get(name) or f"endpoint {name} is not defined (hub mappings apply)"

    def tenant_slug(self, tenant_id: int) -> str | None:
        slug = self._tenants.get(tenant_id)
        if slug is None:
            with self.engine.connect() as conn:
                slug = conn.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
            if slug is not None:
                self._tenants[tenant_id] = slug
        return slug
