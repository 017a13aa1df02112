"""Tenant secrets in the database: a clinic's CRM token without a restart or a new variable.

`hub secrets set --tenant T NAME` stores the value encrypted (hub.core.crypto) with a version that
grows on every set; endpoints and sources name it `secret:NAME` (hub.core.envrefs). Every set and
removal is audited (never the value) and increments the Redis key `SECRETS_VERSION_KEY`.

Each process holds a `SecretCache`: every tenant's secrets, decrypted in memory, reloaded when that
key changes (a worker looks once per batch of deliveries, a web process every 2 seconds), and every
`MAX_AGE` seconds regardless (a Redis flush or outage cannot keep an old value for long).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub.core import audit, envrefs
from hub.core.crypto import Cipher
from hub.core.errors import BadRequest, HubError, UnknownSecret, UnknownTenant
from hub.core.models import Tenant, TenantSecret, utcnow
from hub.core.outages import Outage
from hub.core.queues import SECRETS_VERSION_KEY
from hub.core.tenants import by_slug

log = logging.getLogger("hub.core.secrets")

MAX_VALUE_BYTES = 16 * 1024
MAX_AGE = 30.0  # seconds: reload regardless


@dataclass(frozen=True)
class SecretInfo:
    tenant: str
    name: str
    version: int
    updated_by: str
    updated_at: datetime


def validate_name(name: str) -> str:
    if not envrefs.SECRET_NAME.match(name):
        raise BadRequest(
            f"secret name {name!r} must be letters, digits and '_' (not starting with a digit), "
            "at most 128"
        )
    return name


def _tenant(session: Session, slug: str) -> Tenant:
    tenant = by_slug(session, slug)
    if tenant is None:
        raise UnknownTenant(f"no tenant {slug!r}")
    return tenant


def set_secret(
    engine: Engine,
    cipher: Cipher,
    redis: Redis | None,
    tenant_slug: str,
    name: str,
    value: str,
    actor: str,
) -> int:
    """Store (or replace) a secret; returns its new version."""
    validate_name(name)
    if not value:
        raise BadRequest("the secret's value is empty")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise BadRequest(f"the secret's value is longer than {MAX_VALUE_BYTES} bytes")
    sealed = cipher.encrypt(value.encode())
    now = utcnow()
    with Session(engine) as session, session.begin():
        tenant = _tenant(session, tenant_slug)
        row = session.scalar(
            select(TenantSecret)
            .where(TenantSecret.tenant_id == tenant.id, TenantSecret.name == name)
            .with_for_update()
        )
        if row is None:
            row = TenantSecret(tenant_id=tenant.id, name=name, version=1, created_at=now)
            session.add(row)
        else:
            row.version += 1
        row.value, row.updated_by, row.updated_at = sealed, actor[:64], now
        session.flush()
        version = row.version
        action = "secret.set" if version == 1 else "secret.rotate"
        detail = {"version": version, "key_id": cipher.key_id}
        audit.record(session, actor, action, tenant_id=tenant.id, target=name, detail=detail)
    announce(redis)
    return version


def remove_secret(
    engine: Engine, redis: Redis | None, tenant_slug: str, name: str, actor: str
) -> None:
    with Session(engine) as session, session.begin():
        tenant = _tenant(session, tenant_slug)
        row = session.scalar(
            select(TenantSecret).where(
                TenantSecret.tenant_id == tenant.id, TenantSecret.name == name
            )
        )
        if row is None:
            raise UnknownSecret(f"tenant {tenant_slug} has no secret {name!r}")
        session.delete(row)
        audit.record(
            session,
            actor,
            "secret.remove",
            tenant_id=tenant.id,
            target=name,
            detail={"version": row.version},
        )
    announce(redis)


def list_secrets(engine: Engine, tenant_slug: str | None = None) -> list[SecretInfo]:
    """Names, versions, who and when; never values."""
    stmt = (
        select(
            Tenant.slug,
            TenantSecret.name,
            TenantSecret.version,
            TenantSecret.updated_by,
            TenantSecret.updated_at,
        )
        .join(Tenant, Tenant.id == TenantSecret.tenant_id)
        .order_by(Tenant.slug, TenantSecret.name)
    )
    with Session(engine) as session:
        if tenant_slug is not None:
            stmt = stmt.where(Tenant.id == _tenant(session, tenant_slug).id)
        return [SecretInfo(*row) for row in session.execute(stmt).all()]


def announce(redis: Redis | None) -> None:
    """Tell every process to reload (best effort: they reload within MAX_AGE anyway)."""
    if redis is None:
        return
    try:
        redis.incr(SECRETS_VERSION_KEY)
    except (RedisError, OSError) as exc:
        log.warning("secrets.announce_failed", extra={"error_class": type(exc).__name__})


class SecretCache:
    """Every tenant's secrets in this process; `get` never touches the network."""

    def __init__(self, engine: Engine, cipher: Cipher, redis: Redis | None) -> None:
        self.engine = engine
        self.cipher = cipher
        self.redis = redis
        self._values: dict[tuple[str, str], str] = {}
        self._version: object = None
        self._loaded_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # a reload that fails keeps the values it had: one line when the database goes, one back
        self.outage = Outage(log, "secrets", "database")

    def watch(self, interval: float) -> None:
        """Refresh every `interval` seconds in a daemon thread (web processes), until `stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - the thread outlives any failure
                    log.warning("secrets.not_reloaded", extra={"error_class": type(exc).__name__})
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, name="hub-secrets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the watcher, and wait for it: the caller closes Redis and the engine next."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def get(self, tenant_slug: str, name: str) -> str | None:
        return self._values.get((tenant_slug, name))

    def refresh(self) -> bool:
        """Reload when announced or stale (one Redis GET); whether it reloaded."""
        now = time.monotonic()
        version: object = self._version
        if self.redis is not None:
            try:
                version = self.redis.get(SECRETS_VERSION_KEY)
            except (RedisError, OSError):
                pass
        if version == self._version and self._loaded_at and now - self._loaded_at < MAX_AGE:
            return False
        try:
            self.load()
        except (SQLAlchemyError, HubError) as exc:  # keep what we had; try again next time
            self.outage.failed(f"{type(exc).__name__}: {exc}")
            return False
        self.outage.recovered()
        self._version = version
        return True

    def load(self) -> None:
        stmt = select(Tenant.slug, TenantSecret.name, TenantSecret.value).join(
            Tenant, Tenant.id == TenantSecret.tenant_id
        )
        values: dict[tuple[str, str], str] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        for slug, name, sealed in rows:
            values[(slug, name)] = self.cipher.decrypt(sealed).decode()
        self._values = values
        self._loaded_at = time.monotonic()
