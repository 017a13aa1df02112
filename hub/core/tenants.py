"""Tenants: the businesses whose systems talk through hub, named by a slug."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core.errors import BadRequest
from hub.core.models import Tenant

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug):
        raise BadRequest(
            f"tenant slug {slug!r} must be 1-64 lower-case letters, digits and '-' "
            "(not at either end)"
        )
    return slug


def env_name(slug: str) -> str:
    """`{TENANT}` in env references: the slug upper-cased, '-' as '_' (clinic-1 -> CLINIC_1)."""
    return slug.upper().replace("-", "_")


def get_or_create(session: Session, slug: str, name: str | None = None) -> tuple[Tenant, bool]:
    """The tenant with `slug`, created if new; returns (tenant, created)."""
    validate_slug(slug)
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is not None:
        return tenant, False
    tenant = Tenant(slug=slug, name=name or slug)
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:  # created concurrently
        session.rollback()
        existing = session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert existing is not None
        return existing, False
    return tenant, True


def by_slug(session: Session, slug: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.slug == slug))
