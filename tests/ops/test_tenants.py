"""Tenants as the operator's object: the shared functions, and /admin/tenants on top of them."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from hub.core import dead_letters
from hub.core.errors import BadRequest, TenantExists, UnknownTenant
from hub.core.models import DeadLetterStage, RateLimit, Tenant, WebhookDelivery
from hub.ingress.apikeys import KeyCache, load_record, split_key
from hub.ingress.ratelimit import choose_limit, load_overrides
from hub.ops import tenants
from tests.delivery.conftest import World
from tests.ops.conftest import Keys, auth


def test_list_counts_usable_keys_recent_events_and_open_dead_letters(
    world: World, keys: Keys
) -> None:
    dlv = world.delivery("crm", {"n": 1})
    with Session(world.engine) as session, session.begin():
        row = dead_letters.new_row(
            tenant_id=world.tenant_id,
            event_id=session.get_one(WebhookDelivery, dlv).event_id,
            delivery_id=dlv,
            source="site",
            endpoint="crm",
            stage=DeadLetterStage.DELIVERY,
            reason="dead",
            last_error=None,
            attempts=1,
        )
        dead_letters.create_many(session.connection(), [row])
        rows = {r["slug"]: r for r in tenants.list_tenants(session)}
    assert rows["clinic-1"]["keys"] == 2 and rows["clinic-2"]["keys"] == 1
    assert rows["clinic-1"]["events_24h"] == 1 and rows["clinic-2"]["events_24h"] == 0
    assert rows["clinic-1"]["open_dead_letters"] == 1
    assert rows["clinic-1"]["timezone"] == "America/Sao_Paulo"
    assert rows["clinic-1"]["locale"] == "pt-BR" and rows["clinic-1"]["active"] is True


def test_show_names_the_endpoint_variables_unset_for_this_tenant(
    world: World, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.endpoint("crm", kind="webhook", url="env:{TENANT}_CRM_URL", headers={"X": "env:TOK"})
    monkeypatch.setenv("CLINIC_2_CRM_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TOK", "t")
    with Session(world.engine) as session:
        one = tenants.show(session, "clinic-1")
        two = tenants.show(session, "clinic-2")
    assert one["unset_env"] == ["endpoint crm (url): CLINIC_1_CRM_URL not set"]
    assert two["unset_env"] == []
    assert [k["name"] for k in one["key_list"]] == ["a", "i"]
    assert all("hub_" not in str(k) for k in one["key_list"])  # prefixes only


def test_create_validates_everything_before_storing_anything(world: World) -> None:
    with Session(world.engine) as session:
        for kwargs, message in [
            ({"slug": "Clinic 3"}, "lower-case letters"),
            ({"slug": "clinic-3", "timezone": "America/Sao_Paolo"}, "America/Sao_Paulo"),
            ({"slug": "clinic-3", "locale": "pt_BR"}, "pt-BR"),
            ({"slug": "clinic-3", "name": " "}, "blank"),
        ]:
            with pytest.raises(BadRequest, match=message):
                tenants.create(session, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(TenantExists):
            tenants.create(session, "clinic-1")
        assert session.scalar(select(func.count()).select_from(Tenant)) == 1


def test_an_unknown_slug_names_the_closest_one(world: World) -> None:
    with Session(world.engine) as session:
        with pytest.raises(UnknownTenant, match="no tenant 'clinic1' \\(did you mean 'clinic-1'"):
            tenants.set_active(session, "clinic1", False)


def test_deactivating_refuses_the_tenants_keys_and_changes_none_of_its_data(
    world: World, keys: Keys, client: TestClient
) -> None:
    world.delivery("crm", {"n": 1})
    assert client.get("/admin/events", headers=auth(keys.admin)).status_code == 200
    with Session(world.engine) as session, session.begin():
        tenants.set_active(session, "clinic-1", False)
    # the admin API looks keys up on each request; ingress within its cache's seconds
    assert client.get("/admin/events", headers=auth(keys.admin)).status_code == 401
    prefix = split_key(keys.ingest)
    assert prefix is not None
    record = load_record(world.engine, prefix)
    assert record is not None and not record.usable()
    cache = KeyCache.for_engine(world.engine, ttl=0.0)
    assert asyncio.run(cache.authenticate(keys.ingest)) is None
    other = client.get("/admin/events", headers=auth(keys.other_admin))
    assert other.status_code == 200  # another tenant is not touched
    body = client.get("/admin/events", headers=auth(keys.operator)).json()
    assert len(body["events"]) == 1  # nothing deleted
    with Session(world.engine) as session, session.begin():
        tenants.set_active(session, "clinic-1", True)
    assert asyncio.run(cache.authenticate(keys.ingest)) is not None


def test_limits_are_the_rows_ingress_reads(world: World) -> None:
    with Session(world.engine) as session, session.begin():
        assert tenants.set_limit(session, "clinic-1", "site", "600/min") == {
            "source": "site",
            "limit": "600/minute",
        }
        tenants.set_limit(session, "clinic-1", None, "10/s")
        tenants.set_limit(session, "clinic-1", "site", "1000 / hour")  # replaces
    overrides = load_overrides(world.engine, world.tenant_id)
    assert overrides == {"site": "1000/hour", None: "10/second"}
    assert choose_limit(overrides, "site", None, "100/minute") == "1000/hour"
    assert choose_limit(overrides, "zapi", "5/minute", "100/minute") == "10/second"
    assert parse(overrides["site"]).amount == 1000
    with Session(world.engine) as session, session.begin():
        assert [r["source"] for r in tenants.list_limits(session, "clinic-1")] == ["*", "site"]
        assert tenants.unset_limit(session, "clinic-1", "site") is True
        assert tenants.unset_limit(session, "clinic-1", "site") is False
        with pytest.raises(BadRequest, match="600/min, 10/s"):
            tenants.set_limit(session, "clinic-1", "site", "600 per minute")
    assert load_overrides(world.engine, world.tenant_id) == {None: "10/second"}


def test_admin_tenants_for_the_operator(world: World, keys: Keys, client: TestClient) -> None:
    op = auth(keys.operator)
    made = client.post(
        "/admin/tenants",
        headers=op,
        json={"slug": "clinic-3", "name": "Clínica Três", "timezone": "America/Manaus"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["timezone"] == "America/Manaus" and made.json()["env_prefix"] == "CLINIC_3_"
    listed = client.get("/admin/tenants", headers=op).json()["tenants"]
    assert [t["slug"] for t in listed] == ["clinic-1", "clinic-2", "clinic-3"]
    patched = client.patch(
        "/admin/tenants/clinic-3", headers=op, json={"name": "C3", "active": False}
    )
    assert patched.status_code == 200 and patched.json()["active"] is False
    assert patched.json()["name"] == "C3"
    shown = client.get("/admin/tenants/clinic-3", headers=op).json()
    assert shown["key_list"] == [] and shown["limits"] == []
    put = client.put("/admin/tenants/clinic-3/limits", headers=op, json={"limit": "60/min"})
    assert put.json() == {"source": "*", "limit": "60/minute"}
    assert client.get("/admin/tenants/clinic-3/limits", headers=op).json()["limits"] == [
        {"source": "*", "limit": "60/minute"}
    ]
    gone = client.delete("/admin/tenants/clinic-3/limits", headers=op).json()
    assert gone == {"source": "*", "removed": True}


def test_admin_tenants_refuses_bad_input_and_changes_nothing(
    world: World, keys: Keys, client: TestClient
) -> None:
    op = auth(keys.operator)
    for method, path, body, status, code in [
        ("post", "/admin/tenants", {"slug": "Bad Slug"}, 400, "bad_request"),
        ("post", "/admin/tenants", {"slug": "clinic-1"}, 409, "tenant_exists"),
        ("post", "/admin/tenants", {"slug": "x", "colour": "red"}, 400, "bad_request"),
        ("patch", "/admin/tenants/clinic1", {"name": "X"}, 404, "unknown_tenant"),
        ("patch", "/admin/tenants/clinic-1", {"locale": "xx", "name": "Y"}, 400, "bad_request"),
        ("put", "/admin/tenants/clinic-1/limits", {"limit": "lots"}, 400, "bad_request"),
    ]:
        answer = client.request(method, path, headers=op, json=body)
        assert answer.status_code == status, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and error["message"] and "request_id" in error
    assert "clinic-1" in client.get("/admin/tenants/clinic1", headers=op).json()["error"]["message"]
    for key in (keys.admin, keys.ingest):
        assert client.get("/admin/tenants", headers=auth(key)).status_code == 403
    with Session(world.engine) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 2
        assert session.scalar(select(Tenant.name).where(Tenant.slug == "clinic-1")) == "Clinic 1"
        assert session.scalar(select(func.count()).select_from(RateLimit)) == 0
