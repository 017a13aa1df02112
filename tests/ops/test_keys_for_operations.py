"""Privileged keys: operator everywhere, a tenant's admin key on its own /admin/* data only."""

from __future__ import annotations

import base64

from sqlalchemy import select
from starlette.testclient import TestClient

from hub.core.db import session_factory
from hub.core.models import ApiKey
from hub.ingress.apikeys import revoke
from tests.ops.conftest import Keys, auth


def basic(key: str, user: str = "anyone") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_status_without_a_key_is_401_and_reveals_nothing(client: TestClient, keys: Keys) -> None:
    response = client.get("/status")
    assert response.status_code == 401
    assert set(response.json()) == {"error"}
    assert response.json()["error"]["code"] == "unauthorized"
    assert "queues" not in response.text


def test_a_wrong_malformed_or_revoked_key_is_401_alike(client: TestClient, keys: Keys) -> None:
    wrong = keys.operator[:-4] + "AAAA"
    with session_factory(client.app.state.engine).begin() as session:  # type: ignore[attr-defined]
        row = session.scalar(select(ApiKey).where(ApiKey.name == "ops"))
        assert row is not None
        revoke(session, row.id)
    answers = [
        client.get("/status", headers=auth(wrong)),
        client.get("/status", headers=auth("not-a-key")),
        client.get("/status", headers=auth(keys.operator)),
    ]
    assert [r.status_code for r in answers] == [401, 401, 401]
    assert len({r.json()["error"]["message"] for r in answers}) == 1


def test_only_operator_keys_reach_status(client: TestClient, keys: Keys) -> None:
    assert client.get("/status", headers=auth(keys.admin)).status_code == 403
    assert client.get("/status", headers=auth(keys.ingest)).status_code == 403
    assert client.get("/status", headers=auth(keys.operator)).status_code == 200


def test_the_key_may_come_as_header_bearer_or_basic_password(
    client: TestClient, keys: Keys
) -> None:
    for headers in (
        auth(keys.operator),
        {"Authorization": f"Bearer {keys.operator}"},
        basic(keys.operator),
        basic(keys.operator, user=""),
    ):
        assert client.get("/status", headers=headers).status_code == 200, headers
    assert client.get("/status", headers=basic("wrong")).status_code == 401


def test_an_ingest_key_may_not_use_the_admin_api(client: TestClient, keys: Keys) -> None:
    response = client.get("/admin/events", headers=auth(keys.ingest))
    assert response.status_code == 403
    assert client.get("/admin/events", headers=auth(keys.admin)).status_code == 200
