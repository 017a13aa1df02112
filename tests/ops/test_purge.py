"""`hub purge --older-than`: old payloads of finished work go; rows, counts and open work stay."""

from __future__ import annotations

from datetime import datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import Engine, func, insert, select

from hub.cli import cli
from hub.core import ids
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from hub.core.settings import Settings
from hub.ops.purge import purge

EPOCH = datetime(1970, 1, 1)


def made_at(prefix: str, when: datetime, n: int) -> str:
    """An id as `hub.core.ids.new_id` would have made it at `when` (n keeps them apart)."""
    return ids.floor_id(prefix, int((when - EPOCH).total_seconds() * 1000) + n)


class Rows:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            self.tenant = conn.execute(
                insert(Tenant).values(slug="t", name="t", created_at=utcnow())
            ).inserted_primary_key[0]
        self.n = 0

    def event(self, age_days: float, status: EventStatus) -> str:
        self.n += 1
        when = utcnow() - timedelta(days=age_days)
        event_id = made_at(ids.EVENT, when, self.n)
        with self.engine.begin() as conn:
            conn.execute(
                insert(IntegrationEvent).values(
                    id=event_id, tenant_id=self.tenant, source="site", external_id=event_id,
                    event_type="x", status=status, payload=b"secret", created_at=when,
                    updated_at=when, sealed_headers=b"sealed", headers={"x-old": "clear"},
                )
            )  # fmt: skip
        return event_id

    def delivery(self, event_id: str, age_days: float, status: DeliveryStatus) -> str:
        self.n += 1
        when = utcnow() - timedelta(days=age_days)
        delivery_id = made_at(ids.DELIVERY, when, self.n)
        with self.engine.begin() as conn:
            conn.execute(
                insert(WebhookDelivery).values(
                    id=delivery_id, event_id=event_id, tenant_id=self.tenant, mapping="r",
                    route=str(self.n), endpoint="crm", queue="default", status=status,
                    request=b"body", created_at=when, updated_at=when,
                )
            )  # fmt: skip
        return delivery_id

    def dead_letter(self, event_id: str, delivery_id: str, status: DeadLetterStatus) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(DeadLetter).values(
                    id=ids.new_id(ids.DEAD_LETTER), tenant_id=self.tenant, event_id=event_id,
                    delivery_id=delivery_id, source="site", endpoint="crm",
                    stage=DeadLetterStage.DELIVERY, status=status, reason="x", created_at=utcnow(),
                )
            )  # fmt: skip

    def payload(self, event_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.scalar(
                select(IntegrationEvent.payload).where(IntegrationEvent.id == event_id)
            )

    def request(self, delivery_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.scalar(
                select(WebhookDelivery.request).where(WebhookDelivery.id == delivery_id)
            )


def test_purge_drops_old_finished_payloads_and_keeps_rows_and_open_work(engine: Engine) -> None:
    rows = Rows(engine)
    old_done = rows.event(100, EventStatus.PROCESSED)
    old_unrouted = rows.event(95, EventStatus.NO_ROUTE)
    old_failed = rows.event(100, EventStatus.FAILED)
    recent = rows.event(10, EventStatus.PROCESSED)
    delivered = rows.delivery(old_done, 100, DeliveryStatus.DELIVERED)
    dead_open = rows.delivery(old_failed, 100, DeliveryStatus.DEAD)
    dead_closed = rows.delivery(old_done, 100, DeliveryStatus.DEAD)
    retrying = rows.delivery(old_done, 100, DeliveryStatus.RETRYING)
    rows.dead_letter(old_failed, dead_open, DeadLetterStatus.OPEN)
    rows.dead_letter(old_done, dead_closed, DeadLetterStatus.DISCARDED)

    dry = purge(engine, timedelta(days=90), dry_run=True)
    assert (dry.events, dry.deliveries) == (2, 2)
    assert rows.payload(old_done) == b"secret"

    progress: list[tuple[str, int]] = []
    done = purge(
        engine, timedelta(days=90), batch_size=2, progress=lambda w, n: progress.append((w, n))
    )
    assert (done.events, done.deliveries) == (2, 2)
    assert [rows.payload(e) for e in (old_done, old_unrouted, old_failed, recent)] == [
        None, None, b"secret", b"secret"
    ]  # fmt: skip
    assert [rows.request(d) for d in (delivered, dead_closed, dead_open, retrying)] == [
        None, None, b"body", b"body"
    ]  # fmt: skip
    assert progress and progress[-1] == ("deliveries", 2)
    with engine.connect() as conn:  # the request headers go with the payload, sealed or not
        kept = conn.execute(
            select(IntegrationEvent.id, IntegrationEvent.sealed_headers, IntegrationEvent.headers)
        ).all()
    assert {i for i, sealed, clear in kept if sealed is None and clear is None} == {
        old_done,
        old_unrouted,
    }
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(IntegrationEvent)) == 4
        assert conn.scalar(select(func.count()).select_from(WebhookDelivery)) == 4
    assert purge(engine, timedelta(days=90)).events == 0  # nothing left to do


def test_hub_purge_reports_and_rejects_a_bad_age(engine: Engine, settings: Settings) -> None:
    rows = Rows(engine)
    rows.event(200, EventStatus.PROCESSED)
    env = {"HUB_DATABASE_URL": str(settings.database_url), "HUB_DATA_DIR": str(settings.data_dir)}
    runner = CliRunner()
    bad = runner.invoke(cli, ["purge", "--older-than", "soon"], env=env)
    assert bad.exit_code == 2 and "--older-than" in bad.output
    assert runner.invoke(cli, ["purge", "--older-than", "0"], env=env).exit_code == 2
    ran = runner.invoke(cli, ["purge", "--older-than", "90d"], env=env)
    assert ran.exit_code == 0, ran.output
    assert "purged payloads of 1 events and 0 deliveries" in ran.output
