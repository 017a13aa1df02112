"""API keys: random, shown once, stored only as a SHA-256 hash behind a short lookup prefix.

A key reads `hub_<prefix>_<secret>`; the prefix finds the row, the hash of the whole key must
match (compared in constant time). Keys carry 190 bits of randomness, so a fast hash is safe.

The web process checks keys through a `KeyCache`: rows are remembered by prefix for `CACHE_TTL`
seconds (so a revocation is honoured within that time, on every process), misses included, and
concurrent lookups of one prefix share one query. `UsageTracker` remembers when each key was last
used and writes `last_used_at` at most once per `USAGE_FLUSH_INTERVAL`, never per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub.core import tenants
from hub.core.errors import BadRequest, DatabaseUnavailable, NotFound, UnknownTenant
from hub.core.models import ApiKey, KeyKind, Tenant, utcnow

KEY_PREFIX = "hub_"
PREFIX_LEN = 8
CACHE_TTL = 5.0  # seconds a looked-up key (or its absence) is trusted by a web process
USAGE_FLUSH_INTERVAL = 60.0  # seconds between writes of last_used_at

log = logging.getLogger("hub.ingress.apikeys")


@dataclass(frozen=True)
class CreatedKey:
    """A key just made: `secret` exists only here, never in the database."""

    id: int
    secret: str
    prefix: str
    tenant: str | None
    kind: KeyKind
    name: str
    sources: list[str] | None
    expires_at: datetime | None


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not secret.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = secret[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != PREFIX_LEN or not rest:
        return None
    return prefix


def generate() -> tuple[str, str]:
    """(prefix, whole key)."""
    prefix = secrets.token_hex(PREFIX_LEN // 2)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"


def create_key(
    session: Session,
    *,
    name: str,
    tenant_slug: str | None,
    kind: KeyKind = KeyKind.INGEST,
    sources: list[str] | None = None,
    expires_at: datetime | None = None,
    create_tenant: bool = False,
) -> CreatedKey:
    """Create a key. Operator keys have no tenant; others need an existing one (UnknownTenant
    says how to create it), or `create_tenant` to create it if new (scripts of the old days)."""
    if not name.strip():
        raise BadRequest("a key needs a --name")
    tenant: Tenant | None = None
    if kind is KeyKind.OPERATOR:
        if tenant_slug is not None:
            raise BadRequest("an operator key spans every tenant: give --operator or --tenant")
    else:
        if tenant_slug is None:
            raise BadRequest("a tenant key needs --tenant SLUG (or use --operator)")
        tenants.validate_slug(tenant_slug)
        if create_tenant:
            tenant, _ = tenants.get_or_create(session, tenant_slug)
        else:
            tenant = tenants.by_slug(session, tenant_slug)
            if tenant is None:
                raise UnknownTenant(
                    f"{tenants.unknown_message(session, tenant_slug)}; create it first with: "
                    f"hub tenants create {tenant_slug} (or pass --create-tenant)"
                )
    prefix, secret = generate()
    row = ApiKey(
        tenant_id=tenant.id if tenant else None,
        name=name,
        kind=kind,
        prefix=prefix,
        key_hash=hash_key(secret),
        sources=sorted(set(sources)) if sources else None,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return CreatedKey(
        id=row.id,
        secret=secret,
        prefix=prefix,
        tenant=tenant.slug if tenant else None,
        kind=kind,
        name=name,
        sources=row.sources,
        expires_at=expires_at,
    )


def find_valid(session: Session, secret: str, now: datetime | None = None) -> ApiKey | None:
    """The active key row for `secret`, or None (unknown, wrong, revoked or expired)."""
    prefix = split_key(secret)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(secret)):
        return None
    now = now or utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


def revoke(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def list_keys(session: Session) -> list[tuple[ApiKey, str | None]]:
    """Every key with its tenant's slug (None for operator keys), oldest first."""
    rows = session.execute(
        select(ApiKey, Tenant.slug)
        .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
        .order_by(ApiKey.id)
    ).all()
    return [(key, slug) for key, slug in rows]


# -- the web process's view of keys ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyRecord:
    """What a request needs to know about its key; immutable, shared through the cache."""

    id: int
    tenant_id: int | None
    tenant_slug: str | None
    tenant_active: bool
    kind: KeyKind
    key_hash: str
    sources: frozenset[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_key(secret))

    def usable(self, now: datetime | None = None) -> bool:
        if self.revoked_at is not None or not self.tenant_active:
            return False
        return self.expires_at is None or self.expires_at > (now or utcnow())

    def allows(self, source: str) -> bool:
        return self.sources is None or source in self.sources


def load_record(engine: Engine, prefix: str) -> KeyRecord | None:
    """The key row behind `prefix` with its tenant, or None; DatabaseUnavailable when down."""
    query = (
        select(
            ApiKey.id,
            ApiKey.tenant_id,
            Tenant.slug,
            Tenant.active,
            ApiKey.kind,
            ApiKey.key_hash,
            ApiKey.sources,
            ApiKey.expires_at,
            ApiKey.revoked_at,
        )
        .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.prefix == prefix)
    )
    try:
        with engine.connect() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot look up the API key ({type(exc).__name__})") from exc
    if row is None:
        return None
    return KeyRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        tenant_slug=row.slug,
        tenant_active=bool(row.active) if row.tenant_id is not None else True,
        kind=KeyKind(row.kind),
        key_hash=row.key_hash,
        sources=frozenset(row.sources) if row.sources else None,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


Loader = Callable[[str], Awaitable["KeyRecord | None"]]


class KeyCache:
    """Key records by prefix for `ttl` seconds (misses too); one query per prefix at a time."""

    def __init__(self, load: Loader, ttl: float = CACHE_TTL) -> None:
        self._load = load
        self._ttl = ttl
        self._entries: dict[str, tuple[float, KeyRecord | None]] = {}
        self._pending: dict[str, asyncio.Future[KeyRecord | None]] = {}

    @classmethod
    def for_engine(cls, engine: Engine, ttl: float = CACHE_TTL) -> KeyCache:
        async def load(prefix: str) -> KeyRecord | None:
            return await asyncio.to_thread(load_record, engine, prefix)

        return cls(load, ttl)

    async def authenticate(self, secret: str, now: datetime | None = None) -> KeyRecord | None:
        """The usable key for `secret`, or None (malformed, unknown, wrong, revoked, expired)."""
        prefix = split_key(secret)
        if prefix is None:
            return None
        record = await self.get(prefix)
        if record is None or not record.matches(secret):
            return None
        return record if record.usable(now) else None

    async def get(self, prefix: str) -> KeyRecord | None:
        entry = self._entries.get(prefix)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._pending.get(prefix)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._pending[prefix] = future
        try:
            record = await self._load(prefix)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._pending[prefix]
        if len(self._entries) > 10_000:  # brute force with random prefixes: forget, don't grow
            self._entries.clear()
        self._entries[prefix] = (time.monotonic() + self._ttl, record)
        future.set_result(record)
        return record


class UsageTracker:
    """Remembers when each key was last used; `flush` writes them in one statement."""

    def __init__(self) -> None:
        self._seen: dict[int, datetime | float] = {}

    def note(self, key_id: int, when: datetime | None = None) -> None:
        """Remember a use (a float timestamp per request: no datetime built on the hot path)."""
        self._seen[key_id] = when or time.time()

    def flush(self, engine: Engine) -> int:
        """Write every remembered time (never moving last_used_at backwards); returns how many."""
        noted, self._seen = self._seen, {}
        if not noted:
            return 0
        seen = {
            key_id: when if isinstance(when, datetime) else _naive_utc(when)
            for key_id, when in noted.items()
        }
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == bindparam("key_id"))
            .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < bindparam("used")))
            .values(last_used_at=bindparam("used"))
        )
        try:
            with engine.begin() as conn:
                conn.execute(stmt, [{"key_id": k, "used": t} for k, t in seen.items()])
        except SQLAlchemyError as exc:
            for key_id, when in seen.items():  # keep them for the next flush
                self._seen.setdefault(key_id, when)
            log.warning("apikeys.usage_flush_failed", extra={"error_class": type(exc).__name__})
            return 0
        return len(seen)


def _naive_utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)
