"""Meta's webhooks: the GET subscription handshake, X-Hub-Signature-256, event id and type from
the message or status (the whatsapp_cloud preset)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from ingress_support import apply_sources, event_count, events, make_key, write_mappings
from sqlalchemy import Engine
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.errors import MappingsError
from hub.core.settings import Settings
from hub.ingress.route import FastIngress
from hub.ingress.sources import load_sources

SOURCES = """\
sources:
  meta:
    preset: whatsapp_cloud
    critical: true
    signature: {scheme: meta, secrets: ["env:{TENANT}_META_APP_SECRET"]}
    verify_token: "env:{TENANT}_META_VERIFY_TOKEN"
    allow_query_key: true
  plain:
    event_type: {const: thing.happened}
"""
APP_SECRET = "meta-app-secret"
VERIFY = "verify-me-please"


def message(wamid: str = "wamid.HBgM1") -> dict[str, object]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "106540352242922"},
                            "contacts": [{"wa_id": "5511912345678", "profile": {"name": "Ana"}}],
                            "messages": [
                                {
                                    "id": wamid,
                                    "from": "5511912345678",
                                    "timestamp": "1795784700",
                                    "type": "text",
                                    "text": {"body": "Oi"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def status(wamid: str, state: str) -> dict[str, object]:
    body = message()
    value = body["entry"][0]["changes"][0]["value"]  # type: ignore[index]
    del value["messages"]
    value["statuses"] = [{"id": wamid, "status": state, "recipient_id": "5511912345678"}]
    return body


def signed(body: object, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = orjson.dumps(body)
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


@pytest.fixture
def client(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    mappings = write_mappings(tmp_path / "mappings", SOURCES)
    apply_sources(engine, mappings)
    monkeypatch.setenv("CLINIC_1_META_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("CLINIC_1_META_VERIFY_TOKEN", VERIFY)
    app = create_app(settings.model_copy(update={"mappings_dir": mappings}))
    with TestClient(FastIngress(app)) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def key(engine: Engine) -> str:
    return make_key(engine)


def handshake(client: TestClient, key: str, **params: str) -> object:
    query = {"api_key": key, "hub.mode": "subscribe", "hub.challenge": "1158201444"} | params
    return client.get("/webhooks/meta", params=query)


def test_the_handshake_echoes_the_challenge_when_the_verify_token_matches(
    client: TestClient, key: str
) -> None:
    response = handshake(client, key, **{"hub.verify_token": VERIFY})
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response.text == "1158201444"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "params",
    [
        {"hub.verify_token": "wrong"},
        {"hub.verify_token": ""},
        {"hub.verify_token": VERIFY, "hub.mode": "unsubscribe"},
    ],
)
def test_a_wrong_token_or_mode_is_a_403_in_the_json_error_body(
    client: TestClient, key: str, params: dict[str, str]
) -> None:
    response = handshake(client, key, **params)
    assert response.status_code == 403  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "verification_refused" and error["request_id"]
    assert "1158201444" not in response.text  # type: ignore[attr-defined]


def test_a_source_without_a_verify_token_refuses_the_handshake(
    client: TestClient, key: str
) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "7"}
    response = client.get("/webhooks/plain", params=query, headers={"X-API-Key": key})
    assert response.status_code == 403
    assert "no verify token" in response.json()["error"]["message"]


def test_the_handshake_needs_the_tenants_key(client: TestClient) -> None:
    response = client.get("/webhooks/meta", params={"hub.mode": "subscribe"})
    assert response.status_code == 401


def test_a_signed_message_is_stored_with_the_message_id_and_type(
    client: TestClient, key: str, engine: Engine
) -> None:
    raw, headers = signed(message("wamid.ABC"))
    response = client.post("/webhooks/meta", params={"api_key": key}, content=raw, headers=headers)
    assert response.status_code == 202, response.text
    again = client.post("/webhooks/meta", params={"api_key": key}, content=raw, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    (event,) = events(engine)
    assert (event.external_id, event.event_type) == ("wamid.ABC", "whatsapp.message.received")
    assert event.queue == "high"


def test_each_status_of_a_message_is_its_own_event(
    client: TestClient, key: str, engine: Engine
) -> None:
    for state in ("sent", "delivered", "read"):
        raw, headers = signed(status("wamid.XYZ", state))
        response = client.post(
            "/webhooks/meta", params={"api_key": key}, content=raw, headers=headers
        )
        assert response.status_code == 202, response.text
    stored = {(e.external_id, e.event_type) for e in events(engine)}
    assert stored == {
        ("wamid.XYZ:sent", "whatsapp.status.sent"),
        ("wamid.XYZ:delivered", "whatsapp.status.delivered"),
        ("wamid.XYZ:read", "whatsapp.status.read"),
    }


def test_a_body_signed_with_another_secret_is_a_401_and_stores_nothing(
    client: TestClient, key: str, engine: Engine
) -> None:
    raw, headers = signed(message(), secret="not-the-app-secret")
    response = client.post("/webhooks/meta", params={"api_key": key}, content=raw, headers=headers)
    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["error"]["message"] or "x-hub" in (
        response.json()["error"]["message"].lower()
    )
    assert event_count(engine) == 0


def test_the_preset_without_a_signature_or_verify_token_names_the_missing_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  meta:\n    preset: whatsapp_cloud\n"
        '    signature: {scheme: meta, secrets: ["env:APP_SECRET"]}\n'
    )
    with pytest.raises(MappingsError) as caught:
        load_sources(tmp_path)
    (problem,) = caught.value.problems
    assert "sources.yaml:2 sources.meta:" in problem and "verify_token" in problem
