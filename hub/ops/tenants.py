"""Tenants as the operator's object: create, list, show, deactivate, activate, rename, limits.

`hub tenants …`, `/admin/tenants` and the console list and change tenants through these same
functions; each takes a Session the caller commits. A deactivated tenant keeps every row: its keys
are refused (within the key cache's few seconds) and its deliveries wait without using attempts
(hub.delivery.groups) until it is activated again. Rate-limit overrides are the `rate_limits` rows
that ingress already reads (within its overrides cache's seconds). Erasing a tenant is
hub.ops.offboarding's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hub.core import tenants
from hub.core.errors import BadRequest, TenantExists
from hub.core.models import (
    ApiKey,
    DeadLetter,
    DeadLetterStatus,
    IntegrationEvent,
    KeyKind,
    RateLimit,
    Tenant,
    WebhookEndpoint,
    utcnow,
)
from hub.core.units import parse_rate
from hub.delivery.endpoints import EndpointConfig, unset_references

RATE_FORMS = "e.g. 600/min, 10/s, 1000/hour, 100/5minutes (units: s, min, hour, day)"
ALL_SOURCES = "*"  # how lists and the API show a tenant-wide override (source NULL)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def settings_dict(tenant: Tenant) -> dict[str, Any]:
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "active": bool(tenant.active),
        "timezone": tenant.timezone,
        "locale": tenant.locale,
        "env_prefix": tenants.env_name(tenant.slug) + "_",
        "created_at": _iso(tenant.created_at),
    }


# -- lifecycle ------------------------------------------------------------------------------------


def create(
    session: Session,
    slug: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    locale: str | None = None,
) -> Tenant:
    """A new tenant; TenantExists when the slug is taken, BadRequest on a bad slug or setting."""
    tenants.validate_slug(slug)
    if timezone is not None:
        tenants.validate_timezone(timezone)
    if locale is not None:
        tenants.validate_locale(locale)
    if name is not None and not name.strip():
        raise BadRequest("a tenant's name cannot be blank")
    if tenants.by_slug(session, slug) is not None:
        raise TenantExists(f"tenant '{slug}' already exists (hub tenants show {slug})")
    tenant, created = tenants.get_or_create(session, slug, name.strip() if name else None)
    if not created:  # created concurrently
        raise TenantExists(f"tenant '{slug}' already exists (hub tenants show {slug})")
    tenant.timezone = timezone or tenant.timezone
    tenant.locale = locale or tenant.locale
    session.flush()
    return tenant


def set_active(session: Session, slug: str, active: bool) -> tuple[Tenant, bool]:
    """(tenant, changed): deactivate or activate; nothing else of the tenant changes."""
    tenant = tenants.require(session, slug)
    changed = bool(tenant.active) != active
    tenant.active = active
    session.flush()
    return tenant, changed


def update(
    session: Session,
    slug: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    locale: str | None = None,
) -> Tenant:
    """Rename a tenant (its display name: the slug names its keys' and env vars' tenant for
    good) or change its time zone or locale. Validates everything before changing anything."""
    tenant = tenants.require(session, slug)
    if name is not None and not name.strip():
        raise BadRequest("a tenant's name cannot be blank")
    if timezone is not None:
        tenants.validate_timezone(timezone)
    if locale is not None:
        tenants.validate_locale(locale)
    if name is not None:
        tenant.name = name.strip()
    if timezone is not None:
        tenant.timezone = timezone
    if locale is not None:
        tenant.locale = locale
    session.flush()
    return tenant


# -- reading --------------------------------------------------------------------------------------


def list_tenants(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every tenant with its usable keys, events of the last 24 h and open dead letters."""
    now = now or utcnow()
    usable_keys = dict(
        session.execute(
            select(ApiKey.tenant_id, func.count())
            .where(
                ApiKey.tenant_id.is_not(None),
                ApiKey.revoked_at.is_(None),
                (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
            )
            .group_by(ApiKey.tenant_id)
        ).all()
    )
    events = dict(
        session.execute(
            select(IntegrationEvent.tenant_id, func.count())
            .where(IntegrationEvent.created_at >= now - timedelta(days=1))
            .group_by(IntegrationEvent.tenant_id)
        ).all()
    )
    letters = dict(
        session.execute(
            select(DeadLetter.tenant_id, func.count())
            .where(DeadLetter.status == DeadLetterStatus.OPEN)
            .group_by(DeadLetter.tenant_id)
        ).all()
    )
    return [
        settings_dict(tenant)
        | {
            "keys": usable_keys.get(tenant.id, 0),
            "events_24h": events.get(tenant.id, 0),
            "open_dead_letters": letters.get(tenant.id, 0),
        }
        for tenant in session.scalars(select(Tenant).order_by(Tenant.slug))
    ]


def applied_endpoints(session: Session) -> dict[str, EndpointConfig]:
    """The endpoints of the applied configuration (the highest active version of each)."""
    rows = session.execute(
        select(WebhookEndpoint.name, WebhookEndpoint.definition)
        .where(WebhookEndpoint.active.is_(True))
        .order_by(WebhookEndpoint.name, WebhookEndpoint.version)
    )
    endpoints: dict[str, EndpointConfig] = {}
    for name, definition in rows:
        try:
            endpoints[name] = EndpointConfig.model_validate(definition)
        except ValidationError:  # delivery reports it; show is about this tenant's variables
            endpoints.pop(name, None)
    return endpoints


def show(
    session: Session,
    slug: str,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One tenant: settings, counts, keys (prefixes only), limits, and each endpoint `env:`
    reference unset for it in this environment."""
    tenant = tenants.require(session, slug)
    summary = next(row for row in list_tenants(session, now) if row["slug"] == slug)
    keys = session.scalars(
        select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.id)
    ).all()
    return summary | {
        "key_list": [
            {
                "id": key.id,
                "name": key.name,
                "kind": KeyKind(key.kind).value,
                "prefix": key.prefix,
                "sources": key.sources,
                "expires_at": _iso(key.expires_at),
                "revoked_at": _iso(key.revoked_at),
                "last_used_at": _iso(key.last_used_at),
            }
            for key in keys
        ],
        "limits": list_limits(session, slug),
        "unset_env": unset_references(applied_endpoints(session), [slug], environ),
    }


# -- rate-limit overrides -------------------------------------------------------------------------


def _source_key(source: str | None) -> str | None:
    if source is None or source == ALL_SOURCES:
        return None
    if not source.strip():
        raise BadRequest(f"--source needs a source name (or {ALL_SOURCES} for every source)")
    return source.strip()


def normalise_rate(rate: str) -> str:
    """The rate as `limits` reads it; BadRequest naming the accepted forms."""
    try:
        return parse_rate(rate)
    except ValueError:
        raise BadRequest(f"not a rate: {rate!r}; use {RATE_FORMS}") from None


def set_limit(session: Session, slug: str, source: str | None, rate: str) -> dict[str, Any]:
    """Create or replace the override for (tenant, source); source None: every source."""
    limit = normalise_rate(rate)
    key = _source_key(source)
    tenant = tenants.require(session, slug)
    row = session.scalar(
        select(RateLimit).where(
            RateLimit.tenant_id == tenant.id,
            RateLimit.source.is_(None) if key is None else RateLimit.source == key,
        )
    )
    if row is None:
        row = RateLimit(tenant_id=tenant.id, source=key, limit=limit)
        session.add(row)
    else:
        row.limit = limit
    session.flush()
    return {"source": key or ALL_SOURCES, "limit": limit}


def unset_limit(session: Session, slug: str, source: str | None) -> bool:
    """Remove the override for (tenant, source); whether there was one."""
    key = _source_key(source)
    tenant = tenants.require(session, slug)
    result = session.execute(
        delete(RateLimit).where(
            RateLimit.tenant_id == tenant.id,
            RateLimit.source.is_(None) if key is None else RateLimit.source == key,
        )
    )
    return bool(getattr(result, "rowcount", 0))


def list_limits(session: Session, slug: str) -> list[dict[str, Any]]:
    """A tenant's overrides, the tenant-wide one (`*`) first."""
    tenant = tenants.require(session, slug)
    rows = session.execute(
        select(RateLimit.source, RateLimit.limit).where(RateLimit.tenant_id == tenant.id)
    )
    out = [{"source": source or ALL_SOURCES, "limit": limit} for source, limit in rows]
    return sorted(out, key=lambda row: (row["source"] != ALL_SOURCES, row["source"]))
