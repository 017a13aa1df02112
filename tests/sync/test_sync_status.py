"""Each sync in /status (with its alerts) and in /metrics."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from hub.core import metrics
from hub.core.models import SyncJob, utcnow
from hub.ops.status import collect, metrics_state
from hub.sync.run import run_job
from tests.sync.conftest import CrmApi, Misbehave, applied, item
from workers.context import WorkerContext


def test_status_shows_the_last_run_and_alerts_on_failed_and_late_syncs(
    ctx: WorkerContext, crm: CrmApi, tenant: int
) -> None:
    crm.items = [item(n) for n in range(4)]
    jid = applied(ctx.engine, crm)
    assert run_job(ctx, jid, trigger="manual") is not None
    snapshot = collect(ctx.engine, ctx.redis, ctx.settings)
    [row] = snapshot["syncs"]
    assert (row["sync"], row["tenant"], row["status"]) == ("crm-events", "clinic-1", "idle")
    assert row["last_run"]["created"] == 4 and row["missed_last_day"] == 4
    assert row["last_success_age_s"] is not None and row["last_success_age_s"] < 60
    assert not [a for a in snapshot["alerts"] if a["kind"].startswith("sync")]

    crm.script = [Misbehave(500)] * 3
    assert run_job(ctx, jid, trigger="manual") is not None
    with ctx.engine.begin() as conn:  # and due 31 minutes ago: two intervals of 15m passed
        conn.execute(update(SyncJob).values(next_run_at=utcnow() - timedelta(minutes=31)))
    snapshot = collect(ctx.engine, ctx.redis, ctx.settings)
    kinds = {a["key"]: a["message"] for a in snapshot["alerts"]}
    assert "sync_failed:crm-events:clinic-1" in kinds
    assert "HTTP 500" in kinds["sync_failed:crm-events:clinic-1"]
    assert "sync_late:crm-events:clinic-1" in kinds

    text = metrics.render(metrics_state(ctx.engine, ctx.redis)).decode()
    labels = {"sync": "crm-events", "tenant": "clinic-1"}
    assert metrics.sample_value(text, "hub_sync_failing", labels) == 1.0
    assert metrics.sample_value(text, "hub_sync_late", labels) == 1.0
    assert metrics.sample_value(text, "hub_sync_runs_total", {"sync": "crm-events"}) is not None
