"""`hub mappings apply`: publish a valid mappings directory to the database, all or nothing.

Each rule becomes an `event_mappings` row and each endpoint a `webhook_endpoints` row, with a
per-name `version` and the SHA-256 `checksum` of its definition. A changed definition gets a new
version (older ones are deactivated); a name gone from the files is deactivated; an unchanged one
is left alone, so applying the same files twice changes nothing. Every apply that changes
something records a `config_versions` row whose id is the config version, and the Redis key
`hub:config:version` is set to it so running workers and web processes reload within seconds.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from hub.core.errors import ConfigError, DatabaseUnavailable
from hub.core.models import ConfigVersion, EventMapping, WebhookEndpoint
from hub.core.queues import CONFIG_VERSION_KEY
from hub.mapping.config import MappingsConfig

log = logging.getLogger("hub.mapping.apply")


def checksum(definition: Any) -> str:
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        parts = [f"{len(getattr(self, n))} {n}" for n in ("added", "updated", "removed")]
        return ", ".join(parts) + f", {len(self.unchanged)} unchanged"


@dataclass
class ApplyResult:
    version: int
    rules: Changes
    endpoints: Changes
    redis_notified: bool = True

    @property
    def changed(self) -> bool:
        return self.rules.changed or self.endpoints.changed


def _sync(session: Session, model: Any, wanted: dict[str, dict[str, Any]]) -> Changes:
    """Make the active rows of `model` (EventMapping or WebhookEndpoint) match `wanted`."""
    changes = Changes()
    active = {row.name: row for row in session.scalars(select(model).where(model.active.is_(True)))}
    latest: dict[str, int] = dict(
        session.execute(select(model.name, func.max(model.version)).group_by(model.name)).all()
    )
    for name, definition in sorted(wanted.items()):
        digest = checksum(definition)
        current = active.get(name)
        if current is not None and current.checksum == digest:
            changes.unchanged.append(name)
            continue
        session.execute(update(model).where(model.name == name).values(active=False))
        row: Any
        if model is WebhookEndpoint:
            row = WebhookEndpoint(kind=definition["kind"])
        else:
            row = EventMapping()
        row.name = name
        row.version = int(latest.get(name) or 0) + 1
        row.checksum = digest
        row.definition = definition
        row.active = True
        session.add(row)
        (changes.updated if current is not None else changes.added).append(name)
    for name in sorted(set(active) - set(wanted)):
        session.execute(update(model).where(model.name == name).values(active=False))
        changes.removed.append(name)
    return changes


def current_version(session: Session) -> int:
    return int(session.scalar(select(func.max(ConfigVersion.id))) or 0)


def apply_mappings(engine: Engine, redis: Redis | None, config: MappingsConfig) -> ApplyResult:
    """Write `config` (already validated) to the database; idempotent; notifies Redis."""
    rules = {name: rule.definition() for name, rule in config.rules.items()}
    endpoints = {name: ep.model_dump(mode="json") for name, ep in config.endpoints.items()}
    try:
        with Session(engine) as session, session.begin():
            rule_changes = _sync(session, EventMapping, rules)
            endpoint_changes = _sync(session, WebhookEndpoint, endpoints)
            if rule_changes.changed or endpoint_changes.changed:
                record = ConfigVersion(
                    checksum=checksum({"rules": rules, "endpoints": endpoints}),
                    rules=len(rules),
                    endpoints=len(endpoints),
                )
                session.add(record)
                session.flush()
                version = record.id
            else:
                version = current_version(session)
    except IntegrityError as exc:
        raise ConfigError(
            "another `hub mappings apply` wrote the same versions at the same time; run it again"
        ) from exc
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig) if exc.orig is not None else str(exc)
        raise DatabaseUnavailable(
            f"cannot write the mappings ({reason}); is the schema migrated (`hub migrate`)?"
        ) from exc
    result = ApplyResult(version, rule_changes, endpoint_changes)
    if redis is not None:
        result.redis_notified = publish_version(redis, version)
    log.info("mappings.applied", extra={"version": version, "count": len(rules)})
    return result


def publish_version(redis: Redis, version: int) -> bool:
    """Set the version key; False when Redis is down (processes then poll the database)."""
    try:
        redis.set(CONFIG_VERSION_KEY, version)
    except (RedisError, OSError):
        log.warning("mappings.version_not_published", extra={"version": version})
        return False
    return True
