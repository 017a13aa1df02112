"""API keys: random, shown once, stored only as a SHA-256 hash behind a short lookup prefix.

A key reads `hub_<prefix>_<secret>`; the prefix finds the row, the hash of the whole key must
match (compared in constant time). Keys carry 190 bits of randomness, so a fast hash is safe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import BadRequest, NotFound
from hub.models import ApiKey, KeyKind, Tenant, utcnow
from hub.tenants import get_or_create

KEY_PREFIX = "hub_"
PREFIX_LEN = 8


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
) -> CreatedKey:
    """Create a key (and its tenant if new). Operator keys have no tenant; others need one."""
    if not name.strip():
        raise BadRequest("a key needs a --name")
    tenant: Tenant | None = None
    if kind is KeyKind.OPERATOR:
        if tenant_slug is not None:
            raise BadRequest("an operator key spans every tenant: give --operator or --tenant")
    else:
        if tenant_slug is None:
            raise BadRequest("a tenant key needs --tenant SLUG (or use --operator)")
        tenant, _ = get_or_create(session, tenant_slug)
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
