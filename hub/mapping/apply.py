"""`hub mappings apply`: publish a valid mappings directory to the database, all or nothing.

Each rule becomes an `event_mappings` row, each endpoint a `webhook_endpoints` row and each source
an `event_sources` row, with a per-name `version` and the SHA-256 `checksum` of its definition
(secrets stay the `env:` / `secret:` references the files wrote). A changed definition gets a new
version (older ones are deactivated); a name gone from the files is deactivated; an unchanged one
is left alone, so applying the same files twice changes nothing. Every apply that changes
something records a `config_versions` row whose id is the config version, and the Redis key
`hub:config:version` is set to it so running workers (rules, endpoints) and web processes
(sources, hub.ingress.applied) reload within seconds; no process reads mappings/ at run time.
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
from hub.core.models import ConfigVersion, EventMapping, EventSource, WebhookEndpoint
from hub.core.queues import CONFIG_VERSION_KEY
from hub.ingress.applied import applied_version
from hub.ingress.sources import SourceConfig
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
    sources: Changes = field(default_factory=Changes)
    redis_notified: bool = True

    @property
    def changed(self) -> bool:
        return self.rules.changed or self.endpoints.changed or self.sources.changed


def _sync(session: Session, model: Any, wanted: dict[str, dict[str, Any]]) -> Changes:
    """Make the active rows of `model` (EventMapping, WebhookEndpoint, EventSource) match
    `wanted`."""
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
        row = model(kind=definition["kind"]) if model is WebhookEndpoint else model()
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
    return applied_version(session)


def apply_mappings(engine: Engine, redis: Redis | None, config: MappingsConfig) -> ApplyResult:
    """Write `config` (already validated) to the database; idempotent; notifies Redis."""
    rules = {name: rule.definition() for name, rule in config.rules.items()}
    endpoints = {name: ep.model_dump(mode="json") for name, ep in config.endpoints.items()}
    sources = {name: source_definition(src) for name, src in config.sources.items()}
    try:
        with Session(engine) as session, session.begin():
            rule_changes = _sync(session, EventMapping, rules)
            endpoint_changes = _sync(session, WebhookEndpoint, endpoints)
            source_changes = _sync(session, EventSource, sources)
            if rule_changes.changed or endpoint_changes.changed or source_changes.changed:
                record = ConfigVersion(
                    checksum=checksum({"rules": rules, "endpoints": endpoints, "sources": sources}),
                    rules=len(rules),
                    endpoints=len(endpoints),
                    sources=len(sources),
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
    result = ApplyResult(version, rule_changes, endpoint_changes, source_changes)
    if redis is not None:
        result.redis_notified = publish_version(redis, version)
    log.info("mappings.applied", extra={"version": version, "count": len(rules)})
    return result


def source_definition(source: SourceConfig) -> dict[str, Any]:
    """What is stored of a source: the keys the file set (defaults and presets are applied when
    it is read back, as from the file), values normalised (sizes in bytes, rates, networks)."""
    return source.model_dump(mode="json", exclude_unset=True)


def publish_version(redis: Redis, version: int) -> bool:
    """Set the version key; False when Redis is down (processes then poll the database)."""
    try:
        redis.set(CONFIG_VERSION_KEY, version)
    except (RedisError, OSError):
        log.warning("mappings.version_not_published", extra={"version": version})
        return False
    return True
