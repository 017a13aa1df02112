"""Signing in to the console: the cookie, CSRF on every form, sign-out, tenant scoping."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.console.conftest import csrf_of, sign_in
from tests.delivery.conftest import World
from tests.ops.conftest import Keys


def test_pages_need_a_sign_in_and_the_cookie_is_locked_down(client: TestClient, keys: Keys) -> None:
    answer = client.get("/console/events?source=site", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fevents%3Fsource%3Dsite"

    form = client.get("/console/sign-in")
    signed = client.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "key": keys.operator, "next": "/console/events"},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/console/events"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # plain HTTP here
    assert keys.operator not in cookie
    page = client.get("/console/events")
    assert page.status_code == 200 and "operator (every tenant)" in page.text
    assert keys.operator not in page.text


def test_wrong_keys_are_refused_without_echoing_them(client: TestClient, keys: Keys) -> None:
    for key, message in (
        ("hub_nope_" + "x" * 30, "unknown, revoked or expired"),
        (keys.ingest, "may only send webhooks"),
    ):
        form = client.get("/console/sign-in")
        answer = client.post("/console/sign-in", data={"csrf": csrf_of(form.text), "key": key})
        assert answer.status_code == 401 and message in answer.text
        assert key not in answer.text
    assert client.get("/console/events", follow_redirects=False).status_code == 303


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, keys: Keys, world: World
) -> None:
    world.endpoint("crm", kind="webhook", url="http://127.0.0.1:9/")
    csrf = sign_in(client, keys.operator)
    for data in ({}, {"csrf": "forged"}):
        answer = client.post(
            "/console/endpoints/crm/pause", data=data, headers={"Accept": "text/html"}
        )
        assert answer.status_code == 403 and "CSRF" in answer.text
    json = client.post("/console/endpoints/crm/pause", data={})
    assert json.status_code == 403 and json.json()["error"]["code"] == "csrf_failed"
    cross = client.post(
        "/console/endpoints/crm/pause",
        data={"csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert "paused" not in client.get("/console/endpoints").text.split("<main>")[1].split("crm")[0]
    assert "Pause deliveries" in client.get("/console/endpoints").text  # still not paused

    out = client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/console/events", follow_redirects=False).status_code == 303


def test_a_tenant_admin_sees_its_tenant_only(client: TestClient, keys: Keys, world: World) -> None:
    delivery = world.delivery("crm", {"n": 1})
    with world.engine.connect() as conn:
        event_id = conn.exec_driver_sql(
            "SELECT event_id FROM webhook_deliveries WHERE id = ?"
            if world.engine.dialect.name == "sqlite"
            else "SELECT event_id FROM webhook_deliveries WHERE id = %s",
            (delivery,),
        ).scalar_one()
    sign_in(client, keys.other_admin)  # clinic-2's admin
    page = client.get(f"/console/events/{event_id}", headers={"Accept": "text/html"})
    assert page.status_code == 404 and "not found" in page.text
    assert event_id not in client.get("/console/events").text
    assert client.get("/console/", follow_redirects=False).headers["location"] == "/console/events"

    sign_in(client, keys.admin)  # clinic-1's own admin
    assert client.get(f"/console/events/{event_id}").status_code == 200
    assert event_id in client.get("/console/events").text


def test_the_console_and_rq_link_to_each_other(client: TestClient, keys: Keys) -> None:
    sign_in(client, keys.operator)
    assert 'href="/rq/"' in client.get("/console/events").text
    rq = client.get("/rq/", headers={"X-API-Key": keys.operator})
    assert rq.status_code == 200 and 'href="/console"' in rq.text
