"""Sync jobs in the database: written by apply, claimed when due, leased while they run.

One `sync_jobs` row per sync and tenant. Every state change is one conditional UPDATE, so however
many sweepers, workers and `hub sync run` are up, one of them wins and the others change nothing:

    idle/failed, next_run_at past        --claim (sweeper)-->  queued, lease, job on `low`
    queued (its job starts)              --start-->            running, run_id, lease
    idle/failed (`hub sync run`)         --start-->            running, run_id, lease
    running, renewed on every page       --finish-->           idle (mark advanced) | failed
    queued/running past its lease        --claim (sweeper)-->  queued again (the run that held
                                                                it is recorded failed)

A run whose lease was taken over notices at its next renewal and stops without writing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub.core import envrefs, ids
from hub.core.context import SweepContext
from hub.core.errors import DatabaseUnavailable
from hub.core.models import SyncJob, SyncJobStatus, SyncRun, SyncRunStatus, Tenant, utcnow
from hub.core.queues import RUN_SYNC, QueueName, enqueue_ids
from hub.sync.config import SyncConfig

log = logging.getLogger("hub.sync.schedule")

RUN = "syr"  # sync_runs id prefix
CLAIM_BATCH = 100
LEASE_LOST = "lease expired: the worker running it stopped (it runs again from its mark)"


def checksum(definition: Any) -> str:
    import hashlib

    import orjson

    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class SyncChanges:
    added: list[str] = field(default_factory=list)  # "name/tenant"
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unknown_tenants: list[str] = field(default_factory=list)  # "name: slug"
    unset: list[str] = field(default_factory=list)  # "name/slug: VARIABLE" (not scheduled)

    def summary(self) -> str:
        parts = [f"{len(getattr(self, n))} {n}" for n in ("added", "updated", "removed")]
        return ", ".join(parts) + f", {len(self.unchanged)} unchanged"


# -- apply ----------------------------------------------------------------------------------------


def apply_syncs(engine: Engine, syncs: dict[str, SyncConfig]) -> SyncChanges:
    """Make the active `sync_jobs` rows match `syncs` for today's tenants (idempotent).

    A new job is due at once; a changed schedule takes effect from now; the high-water mark of a
    job that stays is kept. A tenant created later gets its jobs at the next apply. A tenant for
    whom the sync's `request.url` reference is unset is not scheduled (named in `unset`): a sync
    runs where it has been configured.
    """
    changes = SyncChanges()
    now = utcnow()
    try:
        with Session(engine) as session, session.begin():
            tenants = dict(
                session.execute(select(Tenant.slug, Tenant.id).where(Tenant.active.is_(True))).all()
            )
            rows = {(r.name, r.tenant_id): r for r in session.scalars(select(SyncJob))}
            slug_of = {tid: slug for slug, tid in tenants.items()}
            wanted: set[tuple[str, int]] = set()
            for name, sync in sorted(syncs.items()):
                slugs = sorted(tenants) if sync.tenants == "all" else sync.tenants
                definition = sync.definition()
                digest = checksum(definition)
                for slug in slugs:
                    tenant_id = tenants.get(slug)
                    if tenant_id is None:
                        changes.unknown_tenants.append(f"{name}: {slug}")
                        continue
                    if envrefs.resolve_optional(sync.request.url, slug) is None:
                        variable = envrefs.variable_name(sync.request.url, slug)
                        changes.unset.append(f"{name}/{slug}: {variable}")
                        continue
                    wanted.add((name, tenant_id))
                    label = f"{name}/{slug}"
                    row = rows.get((name, tenant_id))
                    if row is None:
                        session.add(
                            SyncJob(
                                tenant_id=tenant_id,
                                name=name,
                                endpoint=sync.source,
                                interval_seconds=sync.interval_seconds,
                                status=SyncJobStatus.IDLE,
                                next_run_at=now,
                                definition=definition,
                                checksum=digest,
                                active=True,
                                failures=0,
                            )
                        )
                        changes.added.append(label)
                        continue
                    if row.active and row.checksum == digest:
                        changes.unchanged.append(label)
                        continue
                    old_schedule = (row.definition or {}).get("schedule")
                    if not row.active:
                        row.next_run_at = now
                    elif old_schedule != sync.schedule:
                        row.next_run_at = min(row.next_run_at, sync.next_run(now))
                    row.definition = definition
                    row.checksum = digest
                    row.endpoint = sync.source
                    row.interval_seconds = sync.interval_seconds
                    (changes.updated if row.active else changes.added).append(label)
                    row.active = True
            for key, row in rows.items():
                if row.active and key not in wanted:
                    row.active = False
                    changes.removed.append(f"{row.name}/{slug_of.get(row.tenant_id, '?')}")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"cannot write the sync jobs ({type(exc).__name__}); is the schema migrated?"
        ) from exc
    if changes.added or changes.updated or changes.removed:
        log.info("syncs.applied", extra={"count": len(changes.added) + len(changes.updated)})
    return changes


# -- claiming -------------------------------------------------------------------------------------


def _claimable(now: datetime, *, due_only: bool) -> Any:
    lease_over = and_(
        SyncJob.status.in_((SyncJobStatus.QUEUED, SyncJobStatus.RUNNING)),
        or_(SyncJob.lease_expires_at.is_(None), SyncJob.lease_expires_at < now),
    )
    resting: Any = SyncJob.status.in_((SyncJobStatus.IDLE, SyncJobStatus.FAILED))
    if due_only:
        resting = and_(resting, SyncJob.next_run_at <= now)
    return and_(SyncJob.active.is_(True), or_(resting, lease_over))


def _take(conn: Connection, job_id: int, allowed: Any, values: dict[str, Any]) -> Any | None:
    """Move job `job_id` with one conditional UPDATE; its row as it was before, or None when
    `allowed` did not hold (another sweeper, worker or CLI took it first)."""
    before = conn.execute(
        select(SyncJob.__table__).where(SyncJob.id == job_id).with_for_update()
    ).first()
    if before is None:
        return None
    taken = _rowcount(
        conn.execute(update(SyncJob).where(SyncJob.id == job_id, allowed).values(**values))
    )
    return before if taken == 1 else None


def _close_lost_run(conn: Connection, before: Any, now: datetime) -> None:
    """The run that held an expired lease is recorded failed (its worker died or hung)."""
    if before.status == SyncJobStatus.RUNNING and before.run_id:
        conn.execute(
            update(SyncRun)
            .where(SyncRun.id == before.run_id, SyncRun.status == SyncRunStatus.RUNNING)
            .values(status=SyncRunStatus.FAILED, finished_at=now, error=LEASE_LOST)
        )
        conn.execute(
            update(SyncJob)
            .where(SyncJob.id == before.id)
            .values(failures=SyncJob.failures + 1, last_error=LEASE_LOST)
        )


def claim_due_syncs(ctx: SweepContext) -> int:
    """Sweeper task: claim each due sync job (once, whatever the number of sweepers) and enqueue
    its run on `low`; returns how many were enqueued."""
    now = utcnow()
    lease = timedelta(seconds=ctx.settings.sync_lease)
    claimed: list[str] = []
    try:
        with ctx.engine.connect() as conn:
            candidates = conn.scalars(
                select(SyncJob.id).where(_claimable(now, due_only=True)).limit(CLAIM_BATCH)
            ).all()
        queued = {"status": SyncJobStatus.QUEUED, "run_id": None, "lease_expires_at": now + lease}
        for job_id in candidates:
            with ctx.engine.begin() as conn:
                before = _take(
                    conn,
                    job_id,
                    _claimable(now, due_only=True),
                    queued,
                )
                if before is None:
                    continue
                _close_lost_run(conn, before, now)
            claimed.append(str(job_id))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot claim sync jobs ({type(exc).__name__})") from exc
    if claimed:
        enqueue_ids(
            ctx.redis,
            RUN_SYNC,
            QueueName.LOW,
            claimed,
            batch_size=1,
            job_timeout=ctx.settings.sync_job_timeout,
        )
        log.info("syncs.enqueued", extra={"count": len(claimed), "queue": QueueName.LOW.value})
    return len(claimed)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


@dataclass(frozen=True)
class Started:
    run_id: str
    job_id: int
    tenant_id: int
    tenant_slug: str
    name: str
    definition: dict[str, Any]
    high_water_mark: datetime | None


def start_run(
    engine: Engine, job_id: int, *, lease: float, trigger: str, since: datetime | None = None
) -> Started | None:
    """Take the job for a run: a scheduled run takes it from `queued`, a manual one from
    `idle`/`failed` (or a lease gone stale). None when another run holds it."""
    now = utcnow()
    run_id = ids.new_id(RUN)
    if trigger == "schedule":
        allowed: Any = SyncJob.status == SyncJobStatus.QUEUED
    else:
        allowed = _claimable(now, due_only=False)
    with engine.begin() as conn:
        before = _take(
            conn,
            job_id,
            and_(SyncJob.active.is_(True), allowed),
            {
                "status": SyncJobStatus.RUNNING,
                "run_id": run_id,
                "lease_expires_at": now + timedelta(seconds=lease),
                "last_run_at": now,
            },
        )
        if before is None:
            return None
        _close_lost_run(conn, before, now)
        slug = conn.scalar(select(Tenant.slug).where(Tenant.id == before.tenant_id))
        conn.execute(
            insert(SyncRun).values(
                id=run_id,
                job_id=job_id,
                tenant_id=before.tenant_id,
                name=before.name,
                trigger=trigger,
                status=SyncRunStatus.RUNNING,
                since=since,
                started_at=now,
                pages=0,
                items=0,
                created=0,
                duplicates=0,
                errors=0,
                retries=0,
            )
        )
    return Started(
        run_id=run_id,
        job_id=job_id,
        tenant_id=before.tenant_id,
        tenant_slug=slug or "?",
        name=before.name,
        definition=dict(before.definition or {}),
        high_water_mark=before.high_water_mark,
    )


def renew(engine: Engine, started: Started, seconds: float, progress: dict[str, Any]) -> bool:
    """Push the lease `seconds` ahead and record the run's progress; False: the lease was lost."""
    now = utcnow()
    with engine.begin() as conn:
        held = conn.execute(
            update(SyncJob)
            .where(SyncJob.id == started.job_id, SyncJob.run_id == started.run_id)
            .values(lease_expires_at=now + timedelta(seconds=seconds))
        ).rowcount
        if held == 1:
            conn.execute(update(SyncRun).where(SyncRun.id == started.run_id).values(**progress))
    return held == 1


def finish(
    engine: Engine,
    started: Started,
    sync: SyncConfig | None,
    *,
    ok: bool,
    progress: dict[str, Any],
    mark: datetime | None,
    error: str | None = None,
) -> bool:
    """Close the run: complete runs advance the mark, failed ones keep it. False: lease lost."""
    now = utcnow()
    later = sync.next_run(now) if sync is not None else now + timedelta(hours=1)
    values: dict[str, Any] = {
        "run_id": None,
        "lease_expires_at": None,
        "next_run_at": later,
    }
    if ok:
        values |= {
            "status": SyncJobStatus.IDLE,
            "failures": 0,
            "last_error": None,
            "last_success_at": now,
        }
        if mark is not None:
            values["high_water_mark"] = mark
    else:
        values |= {
            "status": SyncJobStatus.FAILED,
            "failures": SyncJob.failures + 1,
            "last_error": error,
        }
    with engine.begin() as conn:
        held = conn.execute(
            update(SyncJob)
            .where(SyncJob.id == started.job_id, SyncJob.run_id == started.run_id)
            .values(**values)
        ).rowcount
        if held == 1:
            conn.execute(
                update(SyncRun)
                .where(SyncRun.id == started.run_id)
                .values(
                    **progress,
                    status=SyncRunStatus.SUCCEEDED if ok else SyncRunStatus.FAILED,
                    finished_at=now,
                    high_water_mark=mark if ok else None,
                    error=error,
                )
            )
    return held == 1
