"""The audit log: every credential and admin operation, who did it, for which tenant, when.

An actor is the API key that asked (`key:12`) or the operating-system user of a CLI command
(`cli:alice`). Entries name what was done and to what (`secret.set` of `CRM_TOKEN` v3), never a
secret's value, a key, or a person's identifiers. Written in the same transaction as the operation
where there is one, so an operation that rolls back leaves no entry.

Actions: key.create, key.revoke, secret.set, secret.remove, keys.rotate, erasure, export,
replay, discard, mappings.apply, console.sign_in.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select
from sqlalchemy.orm import Session

from hub.core.models import AuditEntry, Tenant, utcnow

audit_table: Table = AuditEntry.__table__  # type: ignore[assignment]


def cli_actor() -> str:
    """The actor of a CLI command: `cli:` and the operating-system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = "unknown"
    return f"cli:{user}"[:64]


def key_actor(key_id: int) -> str:
    return f"key:{key_id}"


def record(
    conn: Connection | Session,
    actor: str,
    action: str,
    *,
    tenant_id: int | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry inside the caller's transaction."""
    conn.execute(
        insert(audit_table).values(
            created_at=utcnow(),
            actor=actor[:64],
            tenant_id=tenant_id,
            action=action,
            target=None if target is None else target[:255],
            detail=detail,
        )
    )


def record_now(engine: Engine, actor: str, action: str, **fields: Any) -> None:
    """`record` in a transaction of its own."""
    with engine.begin() as conn:
        record(conn, actor, action, **fields)


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: int | None = None  # None: every tenant (operators)
    action: str | None = None
    since: datetime | None = None
    limit: int = 100
    offset: int = 0


def entries(engine: Engine, where: AuditFilter) -> list[dict[str, Any]]:
    """Newest first, as JSON-ready dicts."""
    stmt = (
        select(AuditEntry, Tenant.slug)
        .outerjoin(Tenant, Tenant.id == AuditEntry.tenant_id)
        .order_by(AuditEntry.id.desc())
        .limit(where.limit)
        .offset(where.offset)
    )
    if where.tenant_id is not None:
        stmt = stmt.where(AuditEntry.tenant_id == where.tenant_id)
    if where.action:
        stmt = stmt.where(AuditEntry.action == where.action)
    if where.since is not None:
        stmt = stmt.where(AuditEntry.created_at >= where.since)
    with Session(engine) as session:
        return [
            {
                "id": entry.id,
                "at": entry.created_at.isoformat() + "Z",
                "actor": entry.actor,
                "tenant": slug,
                "action": entry.action,
                "target": entry.target,
                "detail": entry.detail or {},
            }
            for entry, slug in session.execute(stmt).all()
        ]
