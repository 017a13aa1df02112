"""From a stored event to its targets through the shipped mappings, as the workers run it."""

from __future__ import annotations

import orjson
import pytest
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from hub.core import ids
from hub.core.models import DeliveryStatus, EventStatus, IntegrationEvent, WebhookDelivery
from hub.core.queues import PROCESS_EVENTS, enqueue_ids, get_queue
from hub.core.tenants import get_or_create
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from tests.conftest import ROOT
from tests.delivery.conftest import SIGNING_SECRET, TargetServer, ZapiStandIn, clinic_env
from workers.context import WorkerContext
from workers.worker import HubWorker

LEAD = {"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}


def test_a_lead_reaches_the_crm_signed_marketing_and_whatsapp(
    ctx: WorkerContext,
    redis: Redis,
    target: TargetServer,
    zapi: ZapiStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = clinic_env(target.url, target.url + "/mkt", zapi)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    apply_mappings(ctx.engine, redis, load_mappings(ROOT / "mappings"))
    with Session(ctx.engine) as session, session.begin():
        tenant, _ = get_or_create(session, "clinic-1")
        event_id = ids.new_id(ids.EVENT)
        session.add(
            IntegrationEvent(
                id=event_id,
                tenant_id=tenant.id,
                source="site",
                external_id=event_id,
                event_type="lead.created",
                status=EventStatus.QUEUED,
                payload=ctx.cipher.encrypt(orjson.dumps(LEAD)),
                correlation_id="corr-lead-1",
            )
        )
    enqueue_ids(redis, PROCESS_EVENTS, "default", [event_id])

    queues = [get_queue(redis, q) for q in ("high", "default", "notifications", "low", "retry")]
    HubWorker(queues, connection=redis).work(burst=True)

    with Session(ctx.engine) as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event_id))
        assert {row.route: row.status for row in rows} == {
            "crm": DeliveryStatus.DELIVERED,
            "marketing": DeliveryStatus.DELIVERED,
            "auto-reply": DeliveryStatus.DELIVERED,
        }
        event = session.get(IntegrationEvent, event_id)
        assert event is not None and event.status == EventStatus.PROCESSED
    by_path = {seen.path: seen for seen in target.seen}
    crm = by_path["/leads"]
    assert crm.headers["authorization"] == "Bearer crm-token"
    assert crm.headers["x-correlation-id"] == "corr-lead-1"
    assert Webhook(SIGNING_SECRET).verify(crm.body, crm.headers)["phone"] == "+5511912345678"
    marketing = by_path["/mkt/campaigns/assign"]
    assert set(Webhook(SIGNING_SECRET).verify(marketing.body, marketing.headers)) == {
        "lead",
        "campaign",
        "channel",
    }
    [sent] = zapi.seen
    assert sent.json()["phone"] == "5511912345678"
