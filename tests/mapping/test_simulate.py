"""POST /admin/simulate: the bodies an event would send, why the rest would not; nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.models import IntegrationEvent, KeyKind, WebhookDelivery
from hub.core.settings import Settings
from hub.ingress import apikeys
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
LEAD = {"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}


def make_key(engine: Engine, kind: KeyKind) -> str:
    with Session(engine) as session, session.begin():
        tenant = None if kind is KeyKind.OPERATOR else "clinic-1"
        return apikeys.create_key(
            session, name=f"{kind}", tenant_slug=tenant, kind=kind, create_tenant=True
        ).secret


@pytest.fixture
def client(settings: Settings, engine: Engine, redis: Redis) -> Iterator[TestClient]:
    apply_mappings(engine, redis, load_mappings(SHIPPED))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def simulate(client: TestClient, key: str | None, body: Any) -> Any:
    headers = {"X-API-Key": key} if key else {}
    return client.post("/admin/simulate", json=body, headers=headers)


def test_a_lead_shows_its_three_bodies_and_the_rules_that_did_not_match(
    client: TestClient, engine: Engine
) -> None:
    key = make_key(engine, KeyKind.ADMIN)
    response = simulate(client, key, {"source": "site", "event_type": "lead.created",
                                      "payload": LEAD})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "processed"
    assert body["version"] >= 1
    assert [m["rule"] for m in body["matched"]] == ["lead-created"]
    routes = {d["route"]: d for d in body["matched"][0]["deliveries"]}
    assert set(routes) == {"crm", "auto-reply", "marketing"}
    assert routes["crm"]["request"] == {
        "method": "POST",
        "path": "/leads",
        "headers": {},
        "body": {
            "name": "Ana",
            "phone": "+5511912345678",
            "email": None,
            "message": None,
            "utm": {"source": None, "campaign": None},
            "received_at": None,
        },
    }
    assert routes["auto-reply"]["queue"] == "notifications"
    reasons = {(n["rule"], n["route"]): n["reason"] for n in body["not_matched"]}
    assert reasons[("client-registered", None)] == "source 'site' is not one of ['crm']"
    assert body["errors"] == []
    with Session(engine) as session:  # nothing stored
        assert session.scalar(select(func.count()).select_from(IntegrationEvent)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_routes_that_do_not_fire_and_failures_are_explained(
    client: TestClient, engine: Engine
) -> None:
    key = make_key(engine, KeyKind.OPERATOR)
    service = {"event": "service.completed",
               "service": {"id": "S1", "status": "completed", "billable": False},
               "client": {"id": "C1", "phone": "12"}}  # fmt: skip
    response = simulate(client, key, {"source": "operacao", "event_type": "service.completed",
                                      "payload": service})  # fmt: skip
    body = response.json()
    assert body["status"] == "failed"
    reasons = {(n["rule"], n["route"]): n["reason"] for n in body["not_matched"]}
    assert reasons[("service-completed", "invoice")] == (
        "when: expected $.service.billable equals True"
    )
    assert body["errors"][0].startswith(
        "rule service-completed: routes[0].body.phone.args[0]: phone_br:"
    )
    none = simulate(client, key, {"source": "site", "event_type": "lead.updated", "payload": {}})
    assert none.json()["status"] == "no_route"
    assert none.json()["matched"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event_type": "x", "payload": {}}, "'source' is required"),
        ({"source": "site", "payload": {}}, "'event_type' is required"),
        ({"source": "site", "event_type": "x"}, "'payload' is required"),
        ({"source": "site", "event_type": "x", "payload": {}, "extra": 1}, "unknown field"),
        ([1, 2], "the body is an object"),
    ],
)
def test_bad_requests_are_400_with_the_reason(
    client: TestClient, engine: Engine, body: Any, message: str
) -> None:
    response = simulate(client, make_key(engine, KeyKind.ADMIN), body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request" and message in error["message"]
    assert error["request_id"]


def test_invalid_json_is_400(client: TestClient, engine: Engine) -> None:
    key = make_key(engine, KeyKind.ADMIN)
    response = client.post("/admin/simulate", content=b"{nope", headers={"X-API-Key": key})
    assert response.status_code == 400


def test_an_admin_or_operator_key_is_required(client: TestClient, engine: Engine) -> None:
    body = {"source": "site", "event_type": "lead.created", "payload": LEAD}
    assert simulate(client, None, body).status_code == 401
    assert simulate(client, "hub_nope1234_wrong", body).status_code == 401
    ingest = make_key(engine, KeyKind.INGEST)
    forbidden = simulate(client, ingest, body)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    operator = make_key(engine, KeyKind.OPERATOR)
    bearer = client.post(
        "/admin/simulate", json=body, headers={"Authorization": f"Bearer {operator}"}
    )
    assert bearer.status_code == 200
