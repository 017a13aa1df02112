"""The admin API: events with filters and paging, one event with deliveries and attempts."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import Keys, auth, dead_delivery
from workers.context import WorkerContext


def test_events_are_listed_newest_first_with_filters_and_pages(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient, keys: Keys
) -> None:
    dead_delivery(ctx, world, target)
    made = [world.delivery("crm", {"n": n}) for n in range(3)]
    headers = auth(keys.operator)

    first = client.get("/admin/events?limit=2", headers=headers).json()
    assert len(first["events"]) == 2 and first["next_before"] == first["events"][-1]["id"]
    rest = client.get(f"/admin/events?limit=2&before={first['next_before']}", headers=headers)
    ids = [e["id"] for e in first["events"] + rest.json()["events"]]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)
    assert rest.json()["next_before"] is None

    failed = client.get("/admin/events?status=failed", headers=headers).json()["events"]
    assert [e["status"] for e in failed] == ["failed"]
    assert client.get("/admin/events?source=nowhere", headers=headers).json()["events"] == []
    assert len(client.get("/admin/events?since=1h", headers=headers).json()["events"]) == 4
    assert client.get("/admin/events?since=2999-01-01", headers=headers).json()["events"] == []
    assert len(made) == 3


def test_bad_filters_are_400_with_a_clear_message(client: TestClient, keys: Keys) -> None:
    headers = auth(keys.operator)
    for query, words in (
        ("status=lost", "status must be one of"),
        ("limit=0", "limit must be"),
        ("limit=x", "limit must be"),
        ("since=tomorrow", "not a time"),
        ("tenant=nobody", "no tenant"),
    ):
        response = client.get(f"/admin/events?{query}", headers=headers)
        assert response.status_code == 400, query
        assert words in response.json()["error"]["message"]


def test_one_event_shows_its_deliveries_attempts_and_dead_letters_but_no_payload(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient, keys: Keys
) -> None:
    delivery_id = dead_delivery(ctx, world, target)
    listed = client.get("/admin/events", headers=auth(keys.admin)).json()["events"]
    event_id = listed[0]["id"]

    body = client.get(f"/admin/events/{event_id}", headers=auth(keys.admin)).json()
    assert body["event"]["tenant"] == "clinic-1" and body["event"]["status"] == "failed"
    [delivery] = body["deliveries"]
    assert delivery["id"] == delivery_id and delivery["status"] == "dead"
    assert [(a["number"], a["status_code"], a["outcome"]) for a in delivery["attempt_log"]] == [
        (1, 500, "dead")
    ]
    assert body["dead_letters"][0]["delivery_id"] == delivery_id
    assert "Ana" not in str(body)  # the body sent is never shown

    other = client.get(f"/admin/events/{event_id}", headers=auth(keys.other_admin))
    assert other.status_code == 404 and other.json()["error"]["code"] == "event_not_found"
    assert client.get("/admin/events", headers=auth(keys.other_admin)).json()["events"] == []
