"""Tenants: the businesses whose systems talk through hub, named by a slug.

What every stage needs to know about one: its slug rules, its `{TENANT}` env name, how to find it
(an unknown slug names the closest existing one), and its settings: the time zone the mapping
engine reads local times in (default America/Sao_Paulo) and the locale it writes money and reads
dates in. The operator's verbs (create, deactivate, limits, erase) are hub.ops.tenants'.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core.errors import BadRequest, UnknownTenant
from hub.core.models import DEFAULT_LOCALE, DEFAULT_TIMEZONE, Tenant

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
SLUG_RULE = "1-64 lower-case letters, digits and '-' (not at either end), e.g. clinic-1"


@dataclass(frozen=True)
class Locale:
    """How a locale writes money and reads dates such as 03/04/2026."""

    tag: str
    decimal: str
    thousands: str
    money: str  # where `money_text` puts the amount: "R$ {}"
    day_first: bool  # 03/04/2026 is 3 April (True) or March 4 (False)


LOCALES: dict[str, Locale] = {
    locale.tag: locale
    for locale in (
        Locale("pt-BR", ",", ".", "R$ {}", day_first=True),
        Locale("pt-PT", ",", " ", "{} €", day_first=True),
        Locale("es-ES", ",", ".", "{} €", day_first=True),
        Locale("es-AR", ",", ".", "$ {}", day_first=True),
        Locale("en-GB", ".", ",", "£{}", day_first=True),
        Locale("en-US", ".", ",", "${}", day_first=False),
    )
}


@dataclass(frozen=True)
class TenantSettings:
    """What the mapping engine and the adapters use of a tenant: its zone and locale."""

    timezone: str = DEFAULT_TIMEZONE
    locale: str = DEFAULT_LOCALE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def conventions(self) -> Locale:
        return LOCALES.get(self.locale, LOCALES[DEFAULT_LOCALE])

    @classmethod
    def of(cls, tenant: Tenant) -> TenantSettings:
        return cls(tenant.timezone or DEFAULT_TIMEZONE, tenant.locale or DEFAULT_LOCALE)


DEFAULT_SETTINGS = TenantSettings()


def validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug):
        raise BadRequest(f"tenant slug {slug!r} is not valid: use {SLUG_RULE}")
    return slug


def validate_timezone(name: str) -> str:
    """An IANA zone name such as America/Sao_Paulo; BadRequest naming the closest one."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BadRequest(
            f"unknown time zone {name!r}{hint}: use an IANA name such as America/Sao_Paulo"
        ) from None
    return name


def validate_locale(tag: str) -> str:
    if tag not in LOCALES:
        raise BadRequest(f"unknown locale {tag!r}: use one of {', '.join(LOCALES)}")
    return tag


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


def closest_slug(session: Session, slug: str) -> str | None:
    """The existing slug most like `slug` (a typo's likely intent), or None."""
    slugs = list(session.scalars(select(Tenant.slug)))
    close = difflib.get_close_matches(slug, slugs, n=1, cutoff=0.5)
    return close[0] if close else None


def require(session: Session, slug: str) -> Tenant:
    """The tenant with `slug`; UnknownTenant naming the closest existing slug otherwise."""
    tenant = by_slug(session, slug)
    if tenant is None:
        raise UnknownTenant(unknown_message(session, slug) + "; see them with: hub tenants list")
    return tenant


def unknown_message(session: Session, slug: str) -> str:
    close = closest_slug(session, slug)
    hint = f" (did you mean '{close}'?)" if close else ""
    return f"no tenant '{slug}'{hint}"
