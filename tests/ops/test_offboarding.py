"""Offboarding: a tenant's rows erased in resumable batches, children first, with a receipt."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.core.errors import UnknownTenant
from hub.core.models import (
    ApiKey,
    DeadLetter,
    DeliveryAttempt,
    IntegrationEvent,
    RateLimit,
    Tenant,
    TenantErasure,
    WebhookDelivery,
)
from hub.delivery.jobs import deliver_batch
from hub.ops import offboarding, tenants
from tests.delivery.conftest import Reply, TargetServer, World
from tests.ops.conftest import Keys
from workers.context import WorkerContext


class Interrupted(Exception):
    """Stands for Ctrl-C or a crash between two batches."""


def count(session: Session, model: type, tenant_id: int | None = None) -> int:
    query = select(func.count()).select_from(model)
    if tenant_id is not None:
        query = query.where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    return session.scalar(query) or 0


def busy_tenant(ctx: WorkerContext, world: World, target: TargetServer) -> list[str]:
    """clinic-1 with 5 deliveries tried (2 dead, 3 delivered) and a limit; clinic-2 one event."""
    world.endpoint("crm", kind="webhook", url=target.url)
    target.replies(Reply(410), Reply(410))
    made = [world.delivery("crm", {"n": i}) for i in range(5)]
    deliver_batch(ctx, made)
    with Session(world.engine) as session, session.begin():
        tenants.set_limit(session, "clinic-1", "site", "600/min")
        other = session.scalar(select(Tenant.id).where(Tenant.slug == "clinic-2"))
    world.tenant_id, mine = other, world.tenant_id  # one row for the other tenant
    world.delivery("crm", {"n": "other"})
    world.tenant_id = mine
    return made


def test_the_dry_run_counts_and_changes_nothing(
    ctx: WorkerContext, world: World, keys: Keys, target: TargetServer
) -> None:
    busy_tenant(ctx, world, target)
    with Session(world.engine) as session:
        plan = offboarding.plan(session, "clinic-1")
        assert plan == {
            "attempts": 5,
            "retries": 0,
            "dead_letters": 2,
            "deliveries": 5,
            "events": 5,
            "sync_jobs": 0,
            "rate_limits": 1,
            "api_keys": 2,
        }
        assert session.scalar(select(Tenant.active).where(Tenant.slug == "clinic-1")) is True
        assert count(session, TenantErasure) == 0


def test_an_interrupted_erasure_resumes_and_its_receipt_counts_exactly(
    ctx: WorkerContext, world: World, keys: Keys, target: TargetServer
) -> None:
    busy_tenant(ctx, world, target)
    seen: list[tuple[str, int]] = []

    def stop_after_three(what: str, n: int) -> None:
        seen.append((what, n))
        if len(seen) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        offboarding.erase(world.engine, "clinic-1", batch_size=2, progress=stop_after_three)
    with Session(world.engine) as session:  # stopped half way: paused, keys revoked
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "clinic-1"))
        assert tenant is not None and tenant.active is False
        assert session.scalar(
            select(func.count()).select_from(ApiKey).where(
                ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None)
            )
        ) == 0  # fmt: skip
        assert offboarding.plan(session, "clinic-1")["attempts"] == 0
        assert offboarding.plan(session, "clinic-1")["dead_letters"] == 2

    receipt = offboarding.erase(world.engine, "clinic-1", batch_size=2, progress=None)
    assert receipt["tenant"] == "clinic-1" and receipt["finished_at"] is not None
    assert receipt["deleted"] == {
        "keys_revoked": 2,
        "attempts": 5,
        "dead_letters": 2,
        "deliveries": 5,
        "events": 5,
        "rate_limits": 1,
        "api_keys": 2,
    }
    with Session(world.engine) as session:
        assert session.scalar(select(Tenant.id).where(Tenant.slug == "clinic-1")) is None
        assert count(session, IntegrationEvent) == 1  # clinic-2's
        assert count(session, WebhookDelivery) == 1
        assert count(session, DeliveryAttempt) == 0
        assert count(session, DeadLetter) == 0
        assert count(session, RateLimit) == 0
        assert count(session, ApiKey) == 2  # the operator's and clinic-2's
        assert offboarding.last_receipt(session, "clinic-1") == receipt
        with pytest.raises(UnknownTenant, match="was erased at"):
            offboarding.plan(session, "clinic-1")


def test_the_receipt_holds_counts_and_no_personal_data(
    ctx: WorkerContext, world: World, keys: Keys, target: TargetServer
) -> None:
    busy_tenant(ctx, world, target)
    receipt = offboarding.erase(world.engine, "clinic-1")
    assert set(receipt) == {"tenant", "erasure", "started_at", "finished_at", "deleted"}
    assert all(isinstance(n, int) for n in receipt["deleted"].values())
