"""Hostile input on the operations surface: every bad parameter or body is a 4xx with the JSON
error body, never a 500, and a request without a key is refused before its body is read."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.settings import Settings
from tests.ops.conftest import Keys, auth
from workers.context import WorkerContext

HOSTILE_QUERIES = [
    ("/admin/events", "since=99999999999d", "not a time"),
    ("/admin/events", "since=9999999999999999999999999s", "not a time"),
    ("/admin/events", "until=99999-99-99", "not a time"),
    ("/admin/events", "limit=100000000000000000000000000000", "limit must be"),
    ("/admin/events", "limit=-1", "limit must be"),
    ("/admin/events", "before=evt_%27%3B%20drop%20table", "before"),
    ("/admin/events", "status=%00", "status must be one of"),
    ("/admin/events", "source=" + "s" * 300, "source is at most 255"),
    ("/admin/events", "tenant=Not%20A%20Slug", "tenant"),
    ("/admin/events", "colour=blue", "unknown parameter 'colour'"),
    ("/admin/dead-letters", "offset=100000000000000000000000000000", "offset must be"),
    ("/admin/dead-letters", "offset=-5", "offset must be"),
    ("/admin/dead-letters", "status=maybe", "status must be one of"),
    ("/admin/dead-letters", "stage=space", "stage must be one of"),
    ("/admin/dead-letters", "since=1e400", "not a time"),
]


@pytest.mark.parametrize(("path", "query", "words"), HOSTILE_QUERIES)
def test_a_hostile_query_parameter_is_a_400_with_the_json_error_body(
    client: TestClient, keys: Keys, path: str, query: str, words: str
) -> None:
    response = client.get(f"{path}?{query}", headers=auth(keys.operator))
    assert response.status_code == 400, (query, response.text)
    error = response.json()["error"]
    assert error["code"] == "bad_request" and error["request_id"]
    assert words in error["message"], error["message"]


HOSTILE_BODIES = [
    (b"{", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"dry_run": "yes"}', 400, "dry_run must be true or false"),
    (b'{"limit": 10000000000000000000000000}', 400, "limit must be"),
    (b'{"since": 5}', 400, "since"),
    (b'{"since": "99999999999d"}', 400, "not a time"),
    (b'{"tenant": ["a"]}', 400, "tenant"),
    (b'{"everything": true}', 400, "unknown parameter 'everything'"),
    (b'{"source": "' + b"x" * 70_000 + b'"}', 413, "admin API's limit"),
]


@pytest.mark.parametrize(("body", "status", "words"), HOSTILE_BODIES)
def test_a_hostile_replay_body_is_a_4xx_and_replays_nothing(
    client: TestClient, keys: Keys, body: bytes, status: int, words: str
) -> None:
    response = client.post(
        "/admin/dead-letters/replay",
        content=body,
        headers={**auth(keys.operator), "Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_simulate_refuses_a_request_without_a_key_before_reading_its_body(
    client: TestClient, keys: Keys
) -> None:
    chunks_read = 0

    def endless() -> object:  # 64 MiB offered; a server that reads it all would take them all
        nonlocal chunks_read
        for _ in range(1024):
            chunks_read += 1
            yield b"x" * 65536

    response = client.post("/admin/simulate", content=endless())  # type: ignore[arg-type]
    assert response.status_code == 401
    assert chunks_read < 1024, f"the whole body was sent: {chunks_read} chunks of 64 KiB"

    too_big = client.post(
        "/admin/simulate", content=b"x" * (1024 * 1024 + 1), headers=auth(keys.operator)
    )
    assert too_big.status_code == 413
    assert "simulate's limit" in too_big.json()["error"]["message"]


def test_metrics_need_the_scrape_token_when_one_is_set(
    settings: Settings, ctx: WorkerContext
) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("s3cret-scrape")})
    with TestClient(create_app(guarded)) as client:
        missing = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert [missing.status_code, wrong.status_code, right.status_code] == [401, 401, 200]
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "hub_webhooks_received_total" in right.text
