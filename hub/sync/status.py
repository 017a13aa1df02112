"""What the syncs did, for `/status`, `/metrics`, `hub sync list` and `hub sync history`.

`sync_stats` gives one row per active sync job: its state, its last run (age, missed events
found, duplicates), its high-water mark, and two flags: `failing` (the last run failed) and
`late` (due for more than two intervals and not run). `sync_alerts` turns the flags into
`/status` alerts, which the sweeper posts like the others (hub.ops.alerts).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from hub.core.models import SyncJob, SyncJobStatus, SyncRun, SyncRunStatus, Tenant

DAY = timedelta(days=1)
LATE_INTERVALS = 2


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else round(max((now - value).total_seconds(), 0.0), 3)


def run_row(run: SyncRun, now: datetime) -> dict[str, Any]:
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": str(run.status.value if hasattr(run.status, "value") else run.status),
        "since": _iso(run.since),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "age_s": _age(now, run.finished_at or run.started_at),
        "duration_s": (
            round((run.finished_at - run.started_at).total_seconds(), 3)
            if run.finished_at
            else None
        ),
        "pages": run.pages,
        "items": run.items,
        "created": run.created,
        "duplicates": run.duplicates,
        "errors": run.errors,
        "retries": run.retries,
        "high_water_mark": _iso(run.high_water_mark),
        "error": run.error,
    }


def sync_stats(session: Session, now: datetime, name: str | None = None) -> list[dict[str, Any]]:
    """One row per active sync job (of sync `name` when given), sorted by sync and tenant."""
    query = (
        select(SyncJob, Tenant.slug)
        .join(Tenant, Tenant.id == SyncJob.tenant_id)
        .where(SyncJob.active.is_(True))
        .order_by(SyncJob.name, Tenant.slug)
    )
    if name is not None:
        query = query.where(SyncJob.name == name)
    jobs = session.execute(query).all()
    if not jobs:
        return []
    job_ids = [job.id for job, _ in jobs]
    latest = (
        select(SyncRun.job_id, func.max(SyncRun.started_at))
        .where(SyncRun.job_id.in_(job_ids))
        .group_by(SyncRun.job_id)
    )
    last_runs = {
        run.job_id: run
        for run in session.scalars(
            select(SyncRun).where(tuple_(SyncRun.job_id, SyncRun.started_at).in_(latest))
        )
    }
    missed_day = dict(
        session.execute(
            select(SyncRun.job_id, func.sum(SyncRun.created))
            .where(SyncRun.job_id.in_(job_ids), SyncRun.started_at >= now - DAY)
            .group_by(SyncRun.job_id)
        ).all()
    )
    rows = []
    for job, slug in jobs:
        last = last_runs.get(job.id)
        status = SyncJobStatus(job.status)
        interval = timedelta(seconds=job.interval_seconds)
        overdue = now - job.next_run_at
        failing = status == SyncJobStatus.FAILED or (
            last is not None and SyncRunStatus(last.status) == SyncRunStatus.FAILED
        )
        rows.append(
            {
                "sync": job.name,
                "tenant": slug,
                "source": job.endpoint,
                "schedule": (job.definition or {}).get("schedule"),
                "interval_s": job.interval_seconds,
                "status": status.value,
                "next_run_at": _iso(job.next_run_at),
                "last_success_at": _iso(job.last_success_at),
                "last_success_age_s": _age(now, job.last_success_at),
                "high_water_mark": _iso(job.high_water_mark),
                "failures": job.failures,
                "last_error": job.last_error,
                "missed_last_day": int(missed_day.get(job.id) or 0),
                "failing": failing,
                "late": overdue > LATE_INTERVALS * interval,
                "late_s": round(overdue.total_seconds(), 3) if overdue > interval else 0.0,
                "last_run": run_row(last, now) if last is not None else None,
            }
        )
    return rows


def sync_alerts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`/status` alerts: a sync whose last run failed, a sync late by more than two intervals."""
    raised = []
    for row in rows:
        label = f"sync {row['sync']} (tenant {row['tenant']})"
        if row["failing"]:
            error = row["last_error"] or (row["last_run"] or {}).get("error") or "failed"
            raised.append(
                {
                    "key": f"sync_failed:{row['sync']}:{row['tenant']}",
                    "kind": "sync_failed",
                    "message": f"{label}: last run failed ({row['failures']} in a row): {error}",
                }
            )
        if row["late"]:
            raised.append(
                {
                    "key": f"sync_late:{row['sync']}:{row['tenant']}",
                    "kind": "sync_late",
                    "message": f"{label}: due {row['late_s']:.0f}s ago, more than "
                    f"{LATE_INTERVALS} intervals of {row['interval_s']}s (is the sweeper and a "
                    "worker on `low` running?)",
                }
            )
    return raised


def history(
    session: Session, name: str, tenant: str | None, now: datetime, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest runs of sync `name` (for one tenant when given), newest first."""
    query = (
        select(SyncRun, Tenant.slug)
        .join(Tenant, Tenant.id == SyncRun.tenant_id)
        .where(SyncRun.name == name)
        .order_by(SyncRun.started_at.desc())
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(Tenant.slug == tenant)
    return [{"tenant": slug, **run_row(run, now)} for run, slug in session.execute(query)]
