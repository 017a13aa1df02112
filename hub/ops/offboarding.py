"""Offboarding: `hub tenants delete SLUG --erase` removes a tenant and everything it sent.

    plan (counts only: the dry run) · start: deactivate, revoke every key, open a
    `tenant_erasures` row · erase in batches, children first: attempts, retry rows, dead letters,
    deliveries, events, sync jobs · then its limits, keys and the tenant row · the erasure row,
    finished, is the receipt: slug, times and counts, no personal data

Each batch deletes at most `batch_size` rows by primary key and adds its count to the erasure row
in the same short transaction, so an erasure stopped anywhere (Ctrl-C, a crash, the database
going away) resumes where it stopped when the command is run again, and its counts stay exact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from hub.core import tenants
from hub.core.errors import UnknownTenant
from hub.core.models import (
    ApiKey,
    DeadLetter,
    DeliveryAttempt,
    IntegrationEvent,
    RateLimit,
    RetryQueue,
    SyncJob,
    Tenant,
    TenantErasure,
    WebhookDelivery,
    utcnow,
)

log = logging.getLogger("hub.ops.offboarding")

DEFAULT_BATCH = 1000

Progress = Callable[[str, int], None]  # (what, rows deleted in this batch)


@dataclass(frozen=True)
class Step:
    """One kind of row a tenant owns: how to find a batch of their keys, and delete them."""

    name: str
    key: InstrumentedAttribute[Any]
    via_delivery: bool = False  # owned through webhook_deliveries.tenant_id

    def owned(self, tenant_id: int) -> Any:
        if self.via_delivery:
            return (
                select(self.key)
                .join(WebhookDelivery, WebhookDelivery.id == self.key.class_.delivery_id)
                .where(WebhookDelivery.tenant_id == tenant_id)
            )
        return select(self.key).where(self.key.class_.tenant_id == tenant_id)


# children before parents: every foreign key points at a row deleted later
STEPS = (
    Step("attempts", DeliveryAttempt.id, via_delivery=True),
    Step("retries", RetryQueue.id, via_delivery=True),
    Step("dead_letters", DeadLetter.id),
    Step("deliveries", WebhookDelivery.id),
    Step("events", IntegrationEvent.id),
    Step("sync_jobs", SyncJob.id),
    Step("rate_limits", RateLimit.id),
    Step("api_keys", ApiKey.id),
)


def plan(session: Session, slug: str) -> dict[str, int]:
    """What an erasure of `slug` would delete (or has left to delete), by kind: the dry run."""
    tenant = require_or_receipt(session, slug)
    return {step.name: _count(session, step, tenant.id) for step in STEPS}


def _count(session: Session, step: Step, tenant_id: int) -> int:
    return session.scalar(select(func.count()).select_from(step.owned(tenant_id).subquery())) or 0


def in_progress(session: Session, tenant_id: int) -> TenantErasure | None:
    return session.scalar(
        select(TenantErasure).where(
            TenantErasure.tenant_id == tenant_id, TenantErasure.finished_at.is_(None)
        )
    )


def last_receipt(session: Session, slug: str) -> dict[str, Any] | None:
    """The receipt of the latest finished erasure of `slug`, if any."""
    row = session.scalar(
        select(TenantErasure)
        .where(TenantErasure.slug == slug, TenantErasure.finished_at.is_not(None))
        .order_by(TenantErasure.id.desc())
        .limit(1)
    )
    return None if row is None else receipt_dict(row)


def receipt_dict(row: TenantErasure) -> dict[str, Any]:
    return {
        "tenant": row.slug,
        "erasure": row.id,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "deleted": dict(row.counts),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def start(engine: Engine, slug: str) -> tuple[int, bool]:
    """Deactivate `slug`, revoke its keys and open (or find) its erasure: (erasure id, resumed).

    From here the tenant's keys are refused and its deliveries wait; its data is still there.
    """
    with Session(engine) as session, session.begin():
        tenant = require_or_receipt(session, slug)
        tenant.active = False
        now = utcnow()
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        existing = in_progress(session, tenant.id)
        if existing is not None:
            return existing.id, True
        row = TenantErasure(
            tenant_id=tenant.id,
            slug=tenant.slug,
            counts={"keys_revoked": getattr(revoked, "rowcount", 0)},
            started_at=now,
        )
        session.add(row)
        session.flush()
        log.info("tenant.erasure_started", extra={"tenant_id": tenant.id, "erasure_id": row.id})
        return row.id, False


def erase(
    engine: Engine,
    slug: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Start or resume the erasure of `slug` and run it to the end; returns the receipt."""
    erasure_id, _ = start(engine, slug)
    with Session(engine) as session:
        tenant_id = session.get_one(TenantErasure, erasure_id).tenant_id
    for step in STEPS:
        while _erase_batch(engine, erasure_id, tenant_id, step, batch_size, progress):
            pass
    with Session(engine) as session, session.begin():
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))
        row = session.get_one(TenantErasure, erasure_id)
        row.finished_at = utcnow()
        receipt = receipt_dict(row)
    log.info("tenant.erased", extra={"tenant_id": tenant_id, "erasure_id": erasure_id})
    return receipt


def _erase_batch(
    engine: Engine,
    erasure_id: int,
    tenant_id: int,
    step: Step,
    batch_size: int,
    progress: Progress | None,
) -> int:
    """Delete one batch of `step`'s rows and count it on the erasure row; how many went."""
    with Session(engine) as session, session.begin():
        keys = list(session.scalars(step.owned(tenant_id).limit(batch_size)))
        if not keys:
            return 0
        session.execute(delete(step.key.class_).where(step.key.in_(keys)))
        row = session.get_one(TenantErasure, erasure_id, with_for_update=True)
        row.counts = {**row.counts, step.name: row.counts.get(step.name, 0) + len(keys)}
    if progress is not None:
        progress(step.name, len(keys))
    return len(keys)


def require_or_receipt(session: Session, slug: str) -> Tenant:
    """The tenant; if it is gone because it was erased, UnknownTenant says when."""
    tenant = tenants.by_slug(session, slug)
    if tenant is not None:
        return tenant
    receipt = last_receipt(session, slug)
    if receipt is not None:
        raise UnknownTenant(f"tenant '{slug}' was erased at {receipt['finished_at']}")
    return tenants.require(session, slug)
