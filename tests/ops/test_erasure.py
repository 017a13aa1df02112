"""Erasure by person: every table scanned afterwards holds neither the CPF nor the phone, and
another person's data is intact; export gives the person's data; the receipt names no one."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, LargeBinary, String, Text, insert, select
from sqlalchemy.types import JSON

from hub.core import ids
from hub.core.crypto import Cipher, PersonHasher
from hub.core.models import (
    AuditEntry,
    Base,
    DeadLetter,
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    Erasure,
    IntegrationEvent,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from hub.ingress.events import NewEvent, store_events
from hub.ingress.persons import PersonPaths, normalise

CIPHER = Cipher("test-key")
HASHER = PersonHasher("person-key")
PATHS = PersonPaths({"cpf": ["$.patient.cpf"], "phone": ["$.patient.phone", "$.contacts[*]"]})
ANA = {"cpf": "123.456.789-09", "phone": "(11) 98765-4321", "name": "Ana"}
BRUNO = {"cpf": "987.654.321-00", "phone": "+55 21 99999-0000", "name": "Bruno"}
TRACES = ("12345678909", "123.456.789-09", "98765-4321", "Ana")


def _ingest(engine: Engine, tenant_id: int, person: dict[str, str], n: int) -> str:
    payload = {"type": "lead", "patient": person, "contacts": [person["phone"]]}
    event = NewEvent(
        tenant_id=tenant_id, source="crm", external_id=f"e-{len(person['name'])}-{n}",
        event_type="lead", queue="default", payload=CIPHER.encrypt(orjson.dumps(payload)),
        sealed_headers=CIPHER.encrypt(b'{"x-patient": "' + person["cpf"].encode() + b'"}'),
        persons=PATHS.digests(payload, HASHER),
    )  # fmt: skip
    (stored,) = store_events(engine, [event])
    delivery_id = ids.new_id(ids.DELIVERY)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(WebhookDelivery).values(
                id=delivery_id, event_id=stored.event_id, tenant_id=tenant_id, mapping="m",
                route="0", endpoint="crm", queue="default", status=DeliveryStatus.DEAD,
                request=CIPHER.encrypt(orjson.dumps({"body": person})),
                last_error=f"HTTP 422 cpf {person['cpf']} invalid", created_at=now, updated_at=now,
            )
        )  # fmt: skip
        conn.execute(
            insert(DeliveryAttempt).values(
                delivery_id=delivery_id, number=1, started_at=now, duration_ms=3,
                status_code=422, response_excerpt=f"phone {person['phone']} rejected",
                outcome="dead",
            )
        )  # fmt: skip
        conn.execute(
            insert(DeadLetter).values(
                id=ids.new_id(ids.DEAD_LETTER), tenant_id=tenant_id, event_id=stored.event_id,
                delivery_id=delivery_id, source="crm", endpoint="crm",
                stage=DeadLetterStage.DELIVERY, reason=f"HTTP 422 for {person['name']}",
                last_error=f"cpf {person['cpf']}", created_at=now,
            )
        )  # fmt: skip
    return stored.event_id


def _scan(engine: Engine) -> str:
    """Every text, JSON and blob value of every table (blobs decrypted when they decrypt)."""
    seen: list[str] = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [
                c for c in table.columns if isinstance(c.type, String | Text | JSON | LargeBinary)
            ]
            for row in conn.execute(select(*columns)) if columns else []:
                for value in row:
                    if isinstance(value, bytes):
                        seen.append(repr(value))
                        try:
                            seen.append(CIPHER.decrypt(value).decode())
                        except Exception:  # noqa: BLE001 - not one of ours: the raw bytes count
                            pass
                    elif value is not None:
                        seen.append(orjson.dumps(value).decode())
    return "\n".join(seen)


def test_erasure_removes_the_person_everywhere_and_keeps_the_others(engine: Engine) -> None:
    from hub.ops.erasure import erase_person, export_person

    with engine.begin() as conn:
        tenant = conn.execute(
            insert(Tenant).values(slug="clinic-1", name="c", created_at=utcnow())
        ).inserted_primary_key[0]
    ana = [_ingest(engine, tenant, ANA, n) for n in range(2)]
    bruno = _ingest(engine, tenant, BRUNO, 0)
    assert [t for t in TRACES[1:] if t not in _scan(engine)] == []  # as sent, not normalised

    wanted = [("cpf", normalise("cpf", "12345678909"))]
    exported = export_person(engine, CIPHER, HASHER, wanted, actor="cli:test")
    assert sorted(e["id"] for e in exported["events"]) == sorted(ana)
    assert exported["events"][0]["payload"]["patient"]["name"] == "Ana"
    assert len(exported["deliveries"]) == 2 and len(exported["dead_letters"]) == 2

    dry = erase_person(engine, HASHER, wanted, actor="cli:test", dry_run=True)
    assert (dry["events"], dry["deliveries"], dry["attempts"], dry["dead_letters"]) == (2, 2, 2, 2)
    assert all(trace in _scan(engine) for trace in TRACES[1:])  # a dry run changes nothing

    by_phone = [("phone", normalise("phone", "11 98765 4321"))]  # found by the phone as well
    receipt = erase_person(engine, HASHER, by_phone, tenant_slug="clinic-1", actor="cli:test")
    assert (receipt["events"], receipt["attempts"], receipt["dead_letters"]) == (2, 2, 2)

    scanned = _scan(engine)
    assert not [trace for trace in TRACES if trace in scanned]
    assert "987.654.321-00" in scanned and "Bruno" in scanned  # Bruno is intact
    with engine.connect() as conn:
        events: dict[str, Any] = dict(
            conn.execute(select(IntegrationEvent.id, IntegrationEvent.erased_at)).all()
        )
        (erasure,) = conn.execute(select(Erasure)).all()
        actions = list(conn.scalars(select(AuditEntry.action)))
    assert len(events) == 3 and events[bruno] is None and all(events[e] for e in ana)
    assert erasure.events == 2 and erasure.kinds == "phone"
    assert actions.count("erasure") == 1 and "export" in actions
    assert erase_person(engine, HASHER, wanted, actor="cli:test")["events"] == 0
