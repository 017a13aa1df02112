"""`--remap`: a failed event runs through today's mappings: new bodies, new routes, same ids."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import insert, select

from hub.core import ids
from hub.core.models import (
    DeadLetter,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    WebhookDelivery,
    utcnow,
)
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from hub.mapping.routing import process_events
from hub.ops import replay
from tests.delivery.conftest import Reply, TargetServer, World
from tests.ops.conftest import work
from workers.context import WorkerContext

SOURCES = "sources:\n  site:\n    event_type: {jsonpath: $.type}\n"


def write_mappings(root: Path, url: str, rule: str) -> None:
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "sources.yaml").write_text(SOURCES)
    (root / "endpoints.yaml").write_text(
        f"endpoints:\n  crm:\n    kind: webhook\n    url: {url}\n    retry: {{max_attempts: 1}}\n"
    )
    (root / "rules" / "lead.yaml").write_text(rule)


OLD = """\
rule: lead
sources: [site]
events: [lead.created]
routes:
  - to: crm
    key: main
    body: {name: $.name, version: {const: old}}
"""
NEW = """\
rule: lead
sources: [site]
events: [lead.created]
routes:
  - to: crm
    key: main
    body: {name: $.name, version: {const: new}}
  - to: crm
    key: audit
    body: {audit: {const: true}}
"""


def test_remap_rebuilds_the_dead_delivery_and_adds_todays_routes(
    ctx: WorkerContext, world: World, target: TargetServer, tmp_path: Path
) -> None:
    write_mappings(tmp_path, target.url, OLD)
    apply_mappings(ctx.engine, ctx.redis, load_mappings(tmp_path))
    event_id = ids.new_id(ids.EVENT)
    payload = orjson.dumps({"type": "lead.created", "name": "Ana"})
    with ctx.engine.begin() as conn:
        conn.execute(
            insert(IntegrationEvent).values(
                id=event_id, tenant_id=world.tenant_id, source="site", external_id="e1",
                event_type="lead.created", status=EventStatus.QUEUED,
                payload=ctx.cipher.encrypt(payload), created_at=utcnow(), updated_at=utcnow(),
            )
        )  # fmt: skip
    process_events(ctx, [event_id])
    target.replies(Reply(status=500))
    work(ctx.redis)
    with ctx.sessions() as session:
        [first] = session.scalars(select(WebhookDelivery)).all()
        assert first.status == DeliveryStatus.DEAD
        letter = session.scalar(select(DeadLetter))
        assert letter is not None

    write_mappings(tmp_path, target.url, NEW)
    apply_mappings(ctx.engine, ctx.redis, load_mappings(tmp_path))
    ctx.cache.pop("mappings", None)  # as a worker that has not loaded mappings yet
    dry = replay.request_event(
        ctx.engine, ctx.redis, event_id, remap=True, dry_run=True, actor="cli:test"
    )
    assert dry.count("remap") == 1 and dry.jobs == []
    report = replay.request_event(ctx.engine, ctx.redis, event_id, remap=True, actor="cli:test")
    assert report.queue == "retry" and len(report.jobs) == 1
    work(ctx.redis)

    bodies = {s.headers["webhook-id"]: s.json() for s in target.seen[1:]}
    assert bodies[first.id] == {"name": "Ana", "version": "new"}  # same delivery, today's body
    assert {"audit": True} in bodies.values()  # today's new route
    with ctx.sessions() as session:
        statuses = {d.route: d.status for d in session.scalars(select(WebhookDelivery))}
        assert set(statuses.values()) == {DeliveryStatus.DELIVERED} and len(statuses) == 2
        assert session.get(DeadLetter, letter.id).status == DeadLetterStatus.REPLAYED  # type: ignore[union-attr]
        assert session.get(IntegrationEvent, event_id).status == EventStatus.PROCESSED  # type: ignore[union-attr]
