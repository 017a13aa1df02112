"""POST /webhooks/{source}: every answer of docs/architecture.md; a bad input stores nothing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import standardwebhooks
import stripe
from ingress_support import (
    TcpProxy,
    event_count,
    events,
    free_port,
    ingress_settings,
    live_server,
    make_key,
)
from redis import Redis
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.datastructures import Headers
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.crypto import Cipher
from hub.core.models import ApiKey, EventStatus, IntegrationEvent, KeyKind, RateLimit, Tenant
from hub.core.queues import PROCESS_EVENTS, get_queue
from hub.core.settings import Settings
from hub.ingress.apikeys import revoke
from hub.ingress.route import FastIngress, RequestHeaders

WHSEC = "whsec_" + base64.b64encode(b"clinic-1 financeiro secret 32by").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"clinic-1 previous secret 32bytes").decode()


@pytest.fixture
def hub_settings(settings: Settings, tmp_path: Path) -> Settings:
    return ingress_settings(settings, tmp_path)


@pytest.fixture
def key(engine: Engine) -> str:
    return make_key(engine)


@pytest.fixture(params=["asgi", "http"])
def client(hub_settings: Settings, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The app as `hub serve` runs it: webhooks take the FastIngress path; through HTTP, the
    protocol's short path (hub.core.protocol), which reads a webhook whole before it runs."""
    app = FastIngress(create_app(hub_settings))
    if request.param == "asgi":
        with TestClient(app) as c:
            yield c
    else:
        with live_server(app) as url, httpx.Client(base_url=url) as c:
            yield c  # type: ignore[misc]


def post(
    client: TestClient | httpx.Client,
    source: str,
    key: str | None,
    body: object = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        all_headers.setdefault("X-API-Key", key)
    content = raw if raw is not None else orjson.dumps(body)
    return client.post(f"/webhooks/{source}", content=content, headers=all_headers)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    return str(body["error"]["code"])


# -- accepted -------------------------------------------------------------------------------------


def test_an_event_is_stored_encrypted_then_enqueued_and_marked_queued(
    hub_settings: Settings, engine: Engine, redis: Redis, key: str
) -> None:
    raw = b'{"type": "lead.created", "name": "Ana"}'
    with TestClient(create_app(hub_settings)) as client:
        response = post(
            client, "site", key, raw=raw, headers={"Idempotency-Key": "k-1", "User-Agent": "t/1"}
        )
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "accepted" and body["event_id"].startswith("evt_")
    # the app has shut down: group commit and enqueue have drained
    (event,) = events(engine)
    assert event.id == body["event_id"]
    assert (event.source, event.external_id, event.event_type) == ("site", "k-1", "lead.created")
    assert event.queue == "default"
    assert event.payload is not None and raw not in event.payload
    assert Cipher.from_settings(hub_settings).decrypt(event.payload) == raw
    assert event.status == EventStatus.QUEUED
    assert event.headers is None and event.sealed_headers is not None  # encrypted, like the body
    assert b"t/1" not in event.sealed_headers
    stored = orjson.loads(Cipher.from_settings(hub_settings).decrypt(event.sealed_headers))
    assert stored.get("user-agent") == "t/1" and "x-api-key" not in stored
    jobs = get_queue(redis, "default").jobs
    assert [job.func_name for job in jobs] == [PROCESS_EVENTS]
    assert list(jobs[0].args) == [[event.id]]


def test_the_same_external_id_again_is_a_duplicate_naming_the_first_event(
    client: TestClient, engine: Engine, key: str
) -> None:
    first = post(client, "site", key, {"type": "a"}, headers={"Idempotency-Key": "same"})
    again = post(client, "site", key, {"type": "a", "v": 2}, headers={"Idempotency-Key": "same"})
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"event_id": first.json()["event_id"], "status": "duplicate"}
    assert event_count(engine) == 1


def test_external_ids_differing_only_in_case_are_different_events(
    client: TestClient, engine: Engine, key: str
) -> None:
    a = post(client, "site", key, {"type": "a"}, headers={"Idempotency-Key": "evt_Ab"})
    b = post(client, "site", key, {"type": "a"}, headers={"Idempotency-Key": "evt_aB"})
    assert (a.status_code, b.status_code) == (202, 202)
    assert event_count(engine) == 2


def test_without_a_declared_event_id_the_body_hash_is_the_id(
    client: TestClient, engine: Engine, key: str
) -> None:
    raw = b'{"n": 1}'
    assert post(client, "plain", key, raw=raw).status_code == 202
    assert post(client, "plain", key, raw=raw).status_code == 200
    (event,) = events(engine)
    assert event.external_id == hashlib.sha256(raw).hexdigest()
    assert event.event_type == "thing.happened"


def test_jsonpath_extractors_read_nested_fields(
    client: TestClient, engine: Engine, key: str
) -> None:
    response = post(client, "nested", key, {"data": {"id": 42, "kind": "client.registered"}})
    assert response.status_code == 202
    (event,) = events(engine)
    assert (event.external_id, event.event_type) == ("42", "client.registered")


def test_the_key_is_read_from_x_api_key_or_bearer(client: TestClient, key: str) -> None:
    h = {"Content-Type": "application/json"}
    by_header = client.post("/webhooks/plain", content=b"[1]", headers={**h, "X-API-Key": key})
    by_bearer = client.post(
        "/webhooks/plain", content=b"[2]", headers={**h, "Authorization": f"Bearer {key}"}
    )
    assert [r.status_code for r in (by_header, by_bearer)] == [202, 202]


def test_a_key_in_the_url_is_taken_only_where_the_source_opts_in(
    client: TestClient, engine: Engine, key: str
) -> None:
    h = {"Content-Type": "application/json"}
    refused = client.post(f"/webhooks/plain?api_key={key}", content=b"[3]", headers=h)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_api_key"
    assert "allow_query_key" in refused.json()["error"]["message"]
    assert events(engine) == []
    taken = client.post(f"/webhooks/urlonly?api_key={key}", content=b"[3]", headers=h)
    assert taken.status_code == 202, taken.text


def test_a_correlation_id_is_accepted_stored_and_echoed_or_generated(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    with TestClient(create_app(hub_settings)) as client:
        given = post(client, "plain", key, [1], headers={"X-Correlation-Id": "corr-123"})
        made = post(client, "plain", key, [2])
        unusable = post(client, "plain", key, [3], headers={"X-Correlation-Id": "x" * 65})
    assert unusable.headers["X-Correlation-Id"].startswith("cor_")  # too long: a new one
    assert given.headers["X-Correlation-Id"] == "corr-123"
    assert made.headers["X-Correlation-Id"].startswith("cor_")
    stored = {e.correlation_id for e in events(engine)}
    assert stored == {
        "corr-123",
        made.headers["X-Correlation-Id"],
        unusable.headers["X-Correlation-Id"],
    }


def test_a_critical_source_goes_to_the_high_queue(
    hub_settings: Settings, engine: Engine, redis: Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINIC_1_ZAPI_TOKEN", "zapi-token")
    with TestClient(create_app(hub_settings)) as client:
        response = post(
            client, "zapi", key, {"messageId": "m1"}, headers={"Client-Token": "zapi-token"}
        )
    assert response.status_code == 202
    assert events(engine)[0].queue == "high"
    assert get_queue(redis, "high").count == 1


# -- keys -----------------------------------------------------------------------------------------


def test_no_key_wrong_key_revoked_or_expired_key_is_401_and_nothing_stored(
    client: TestClient, engine: Engine, key: str
) -> None:
    expired = make_key(engine, expires_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(1))
    revoked = make_key(engine, name="old")
    with Session(engine) as session, session.begin():
        revoked_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "old"))
        assert revoked_id is not None
        revoke(session, revoked_id)
    assert error_code(post(client, "plain", None, [1])) == "missing_api_key"
    assert post(client, "plain", None, [1]).status_code == 401
    for bad in (key[:-2] + "xx", "hub_nothing", "not-a-key", expired, revoked):
        response = post(client, "plain", bad, [1])
        assert response.status_code == 401, bad
        assert error_code(response) == "invalid_api_key"
    assert event_count(engine) == 0


def test_a_key_limited_to_some_sources_is_403_on_the_others(
    client: TestClient, engine: Engine
) -> None:
    limited = make_key(engine, sources=["site"])
    assert post(client, "site", limited, {"type": "x"}).status_code == 202
    response = post(client, "plain", limited, [1])
    assert response.status_code == 403
    assert error_code(response) == "source_not_allowed"
    assert event_count(engine) == 1


def test_an_operator_key_cannot_send_webhooks(client: TestClient, engine: Engine) -> None:
    operator = make_key(engine, None, kind=KeyKind.OPERATOR)
    response = post(client, "plain", operator, [1])
    assert response.status_code == 403
    assert event_count(engine) == 0


def test_an_unknown_source_is_404_and_no_key_is_401_first(
    client: TestClient, engine: Engine, key: str
) -> None:
    response = post(client, "nope", key, [1])
    assert response.status_code == 404
    assert error_code(response) == "unknown_source"
    assert post(client, "nope", None, [1]).status_code == 401  # no source names for strangers
    assert event_count(engine) == 0


def test_tenants_events_are_apart_and_never_revealed(client: TestClient, engine: Engine) -> None:
    a = make_key(engine, "clinic-a")
    b = make_key(engine, "clinic-b")
    first = post(client, "site", a, {"type": "x"}, headers={"Idempotency-Key": "shared"})
    other = post(client, "site", b, {"type": "x"}, headers={"Idempotency-Key": "shared"})
    assert (first.status_code, other.status_code) == (202, 202)
    assert first.json()["event_id"] != other.json()["event_id"]
    assert event_count(engine) == 2


# -- body -----------------------------------------------------------------------------------------


def test_a_non_json_content_type_is_415(client: TestClient, engine: Engine, key: str) -> None:
    response = post(client, "plain", key, raw=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"
    vendor = post(
        client, "plain", key, raw=b"[1]", headers={"Content-Type": "application/vnd.x+json"}
    )
    assert vendor.status_code == 202
    charset = post(
        client,
        "plain",
        key,
        raw=b"[2]",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 202
    missing = client.post("/webhooks/plain", content=b"[3]", headers={"X-API-Key": key})
    assert missing.status_code == 415
    assert event_count(engine) == 2


def test_invalid_json_is_400_with_the_parsers_position(
    client: TestClient, engine: Engine, key: str
) -> None:
    response = post(client, "plain", key, raw=b'{"type": "a",\n "x": tru}')
    assert response.status_code == 400
    assert error_code(response) == "invalid_json"
    assert "line 2 column" in response.json()["error"]["message"]
    assert event_count(engine) == 0


def test_deeply_nested_json_is_refused_cleanly_and_moderate_nesting_accepted(
    client: TestClient, engine: Engine, key: str
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    response = post(client, "plain", key, raw=deep)
    assert response.status_code == 400
    assert error_code(response) == "invalid_json"
    assert post(client, "plain", key, raw=b"[" * 200 + b"]" * 200).status_code == 202
    assert event_count(engine) == 1


def test_a_declared_event_field_that_is_missing_is_400(
    client: TestClient, engine: Engine, key: str
) -> None:
    no_type = post(client, "site", key, {"name": "Ana"})
    assert no_type.status_code == 400
    assert error_code(no_type) == "missing_event_field"
    no_id = post(client, "nested", key, {"data": {"kind": "k"}})
    assert no_id.status_code == 400 and "$.data.id" in no_id.json()["error"]["message"]
    assert event_count(engine) == 0


def test_a_declared_content_length_over_the_limit_is_413_at_once(
    client: TestClient, engine: Engine, key: str
) -> None:
    response = post(client, "tiny", key, raw=b"[" + b"1," * 600 + b"1]")
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    assert event_count(engine) == 0


def test_a_streamed_1gb_body_is_refused_without_being_read(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    sent = 0
    chunk = b" " * 65536

    def gigabyte() -> Iterator[bytes]:
        nonlocal sent
        while sent < 1024**3:
            sent += len(chunk)
            yield chunk

    with live_server(create_app(hub_settings)) as url, httpx.Client(base_url=url) as client:
        response = client.post(
            "/webhooks/plain",  # limit: HUB_BODY_LIMIT, 1 MiB; no Content-Length: chunked
            content=gigabyte(),
            headers={"Content-Type": "application/json", "X-API-Key": key},
        )
    assert response.status_code == 413
    assert sent < 64 * 1024 * 1024  # stopped early: socket buffers, never the gigabyte
    assert event_count(engine) == 0


# -- signatures through HTTP ----------------------------------------------------------------------


def std_signed(secret: str, body: bytes, msg_id: str, at: int) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(at, UTC), body.decode()
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_standard_webhooks_source_accepts_signed_refuses_tampered_stale_and_rotated_out(
    client: TestClient, engine: Engine, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINIC_1_FIN_SECRET", WHSEC)
    monkeypatch.setenv("CLINIC_1_FIN_SECRET_PREVIOUS", WHSEC_OLD)
    now = int(time.time())
    body = b'{"type": "invoice.paid", "amount": 10}'
    ok = post(client, "financeiro", key, raw=body, headers=std_signed(WHSEC, body, "m1", now))
    assert ok.status_code == 202
    old = post(client, "financeiro", key, raw=body, headers=std_signed(WHSEC_OLD, body, "m2", now))
    assert old.status_code == 202  # rotation: the previous secret still works
    tampered = post(
        client,
        "financeiro",
        key,
        raw=body.replace(b"10", b"99"),
        headers=std_signed(WHSEC, body, "m3", now),
    )
    assert tampered.status_code == 401 and error_code(tampered) == "invalid_signature"
    stale = post(
        client, "financeiro", key, raw=body, headers=std_signed(WHSEC, body, "m4", now - 600)
    )
    assert stale.status_code == 401 and error_code(stale) == "stale_timestamp"
    monkeypatch.delenv("CLINIC_1_FIN_SECRET_PREVIOUS")  # rotation finished
    rotated_out = post(
        client, "financeiro", key, raw=body, headers=std_signed(WHSEC_OLD, body, "m5", now)
    )
    assert rotated_out.status_code == 401
    assert event_count(engine) == 2


def test_secrets_are_per_tenant(
    client: TestClient, engine: Engine, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_key = make_key(engine, "clinic-2")
    monkeypatch.setenv("CLINIC_1_FIN_SECRET", WHSEC)
    monkeypatch.setenv("CLINIC_2_FIN_SECRET", WHSEC_OLD)
    body = b'{"type": "invoice.paid"}'
    signed = std_signed(WHSEC, body, "m1", int(time.time()))
    assert post(client, "financeiro", key, raw=body, headers=signed).status_code == 202
    assert post(client, "financeiro", other_key, raw=body, headers=signed).status_code == 401


def test_a_signed_source_without_its_secret_set_is_a_server_error_storing_nothing(
    client: TestClient, engine: Engine, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLINIC_1_FIN_SECRET", raising=False)
    monkeypatch.delenv("CLINIC_1_FIN_SECRET_PREVIOUS", raising=False)
    body = b'{"type": "invoice.paid"}'
    response = post(
        client, "financeiro", key, raw=body, headers=std_signed(WHSEC, body, "m", int(time.time()))
    )
    assert response.status_code == 500
    assert error_code(response) == "signature_not_configured"
    assert "FIN_SECRET" not in response.text  # variable names stay in the server's log
    assert event_count(engine) == 0


def stored_headers(event: IntegrationEvent, settings: Settings) -> dict[str, str]:
    assert event.sealed_headers is not None
    return orjson.loads(Cipher.from_settings(settings).decrypt(event.sealed_headers))  # type: ignore[no-any-return]


def test_github_style_hmac_source(
    client: TestClient,
    engine: Engine,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    hub_settings: Settings,
) -> None:
    monkeypatch.setenv("HUBTEST_GH_SECRET", "gh-secret")
    body = b'{"action": "opened"}'
    digest = hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()
    headers = {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "d-1",
    }
    assert post(client, "github", key, raw=body, headers=headers).status_code == 202
    headers["X-GitHub-Delivery"] = "d-2"
    tampered = post(client, "github", key, raw=body + b" ", headers=headers)
    assert tampered.status_code == 401
    (event,) = events(engine)
    assert event.event_type == "issues"
    assert "x-hub-signature-256" not in stored_headers(event, hub_settings)


def test_stripe_source(
    client: TestClient, engine: Engine, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBTEST_STRIPE_SECRET", "whsec_stripe")
    body = b'{"id": "evt_1", "type": "charge.succeeded"}'
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_stripe")
    ok = post(client, "stripe", key, raw=body, headers={"Stripe-Signature": header})
    assert ok.status_code == 202
    wrong = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_other")
    assert (
        post(client, "stripe", key, raw=body, headers={"Stripe-Signature": wrong}).status_code
        == 401
    )
    assert event_count(engine) == 1


def test_token_source(
    client: TestClient,
    engine: Engine,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    hub_settings: Settings,
) -> None:
    monkeypatch.setenv("CLINIC_1_ZAPI_TOKEN", "zapi-token")
    body = {"messageId": "m-1"}
    bad = post(client, "zapi", key, body, headers={"Client-Token": "guess"})
    assert bad.status_code == 401
    missing = post(client, "zapi", key, body)
    assert missing.status_code == 401
    good = post(client, "zapi", key, body, headers={"Client-Token": "zapi-token"})
    assert good.status_code == 202
    assert "client-token" not in stored_headers(events(engine)[0], hub_settings)


# -- addresses ------------------------------------------------------------------------------------


def test_allowed_ips_trust_x_forwarded_for_only_from_configured_proxies(
    settings: Settings, tmp_path: Path, engine: Engine, key: str
) -> None:
    proxied = ingress_settings(settings, tmp_path, trusted_proxies=["127.0.0.1/32"])
    direct = ingress_settings(settings, tmp_path)
    inside = {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}
    outside = {"X-Forwarded-For": "10.1.2.3, 198.51.100.7"}
    with live_server(create_app(proxied)) as url, httpx.Client(base_url=url) as client:
        assert post(client, "office", key, [1], headers=inside).status_code == 202
        denied = post(client, "office", key, [2], headers=outside)
        assert denied.status_code == 403
        assert error_code(denied) == "address_not_allowed"
    with live_server(create_app(direct)) as url, httpx.Client(base_url=url) as client:
        spoofed = post(client, "office", key, [3], headers=inside)  # 127.0.0.1 is not trusted
        assert spoofed.status_code == 403
    assert event_count(engine) == 1


# -- rate limits ----------------------------------------------------------------------------------


def test_the_sources_rate_limit_answers_429_with_retry_after(
    client: TestClient, engine: Engine, key: str
) -> None:
    codes = [post(client, "tiny", key, [i]).status_code for i in range(3)]
    assert codes == [202, 202, 429]
    limited = post(client, "tiny", key, [9])
    assert error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    other_tenant = make_key(engine, "clinic-2")
    assert post(client, "tiny", other_tenant, [1]).status_code == 202  # counted per tenant
    assert event_count(engine) == 3


def test_a_tenant_override_wins_over_the_source_and_the_default(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    with Session(engine) as session, session.begin():
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.slug == "clinic-1"))
        session.execute(
            insert(RateLimit).values(tenant_id=tenant_id, source="tiny", limit="4/minute")
        )
    strict = hub_settings.model_copy(update={"default_rate_limit": "1/minute"})
    with TestClient(create_app(strict)) as client:
        tiny = [post(client, "tiny", key, [i]).status_code for i in range(5)]
        plain = [post(client, "plain", key, [i]).status_code for i in range(2)]
    assert tiny == [202, 202, 202, 202, 429]  # override 4/minute, not the source's 2/min
    assert plain == [202, 429]  # the default, 1/minute


# -- services down --------------------------------------------------------------------------------


def test_database_down_is_503_and_nothing_accepted(hub_settings: Settings, key: str) -> None:
    down = hub_settings.model_copy(
        update={"database_url": f"mysql+pymysql://root@127.0.0.1:{free_port()}/hub"}
    )
    with TestClient(create_app(down)) as client:
        response = post(client, "plain", key, [1])
    assert response.status_code == 503
    assert error_code(response) == "database_unavailable"


@pytest.mark.parametrize("way", ["asgi", "http"])
def test_the_database_going_away_mid_run_is_503_for_what_was_not_committed(
    hub_settings: Settings, database_url: str, engine: Engine, key: str, way: str
) -> None:
    """Through ASGI, and through HTTP on the protocol's short path, as `hub serve` runs."""
    url = make_url(database_url)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        pytest.skip("needs a database server to cut (HUB_TEST_DATABASE_URL=mysql...)")
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 3306)
    through = hub_settings.model_copy(
        update={"database_url": url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)}
    )
    app = FastIngress(create_app(through))
    with contextlib.ExitStack() as stack:
        if way == "asgi":
            client: httpx.Client = stack.enter_context(TestClient(app))
        else:
            url_of_hub = stack.enter_context(live_server(app))
            client = stack.enter_context(httpx.Client(base_url=url_of_hub))
        before = post(client, "plain", key, [1])  # the key is now cached
        assert before.status_code == 202
        proxy.cut()
        after = post(client, "plain", key, [2])
        assert after.status_code == 503
        assert error_code(after) == "database_unavailable"
    assert [e.id for e in events(engine)] == [before.json()["event_id"]]


def test_redis_down_still_accepts_and_the_relay_enqueues_once_redis_is_back(
    hub_settings: Settings, engine: Engine, redis: Redis, key: str
) -> None:
    from hub.ingress.relay import relay_events
    from workers.sweeper import SweepContext, sweep_once

    redis_down = hub_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(redis_down)) as client:
        accepted = post(client, "site", key, {"type": "a"}, headers={"Idempotency-Key": "r1"})
        assert accepted.status_code == 202  # the rate limit and the enqueue were skipped
    (event,) = events(engine)
    assert event.status == EventStatus.RECEIVED
    ctx = SweepContext(hub_settings, engine, redis)
    assert sweep_once(ctx, [relay_events]) == {"relay_events": 0}  # too young: ingest may enqueue
    with engine.begin() as conn:  # time passes
        conn.execute(
            IntegrationEvent_table().update().values(created_at=event.created_at - timedelta(60))
        )
    assert sweep_once(ctx, [relay_events]) == {"relay_events": 1}
    assert events(engine)[0].status == EventStatus.QUEUED
    jobs = get_queue(redis, "default").jobs
    assert [job.args[0] for job in jobs] == [[event.id]]
    assert sweep_once(ctx, [relay_events]) == {"relay_events": 0}  # once


def test_while_redis_is_away_the_web_says_so_once_however_often_requests_try_it(
    hub_settings: Settings, engine: Engine, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_down = hub_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    answers = []
    with caplog.at_level("WARNING"), TestClient(create_app(redis_down)) as client:
        for n in range(4):  # 0.6 s apart: past the first pause, so Redis is tried again
            answers.append(
                post(
                    client, "site", key, {"type": "a", "n": n}, headers={"Idempotency-Key": f"w{n}"}
                )
            )
            time.sleep(0.6)
    said = [r.getMessage() for r in caplog.records if r.name.startswith("hub.ingress")]
    assert [a.status_code for a in answers] == [202] * 4
    assert sorted(said) == ["events.redis_down", "ratelimit.redis_down"], said


def IntegrationEvent_table():  # noqa: N802 - reads as the table it returns
    from hub.ingress.events import events_table

    return events_table


def test_relay_is_a_sweeper_task() -> None:
    from hub.ingress.relay import relay_events
    from workers.sweeper import TASKS

    assert relay_events in TASKS


# -- concurrency ----------------------------------------------------------------------------------


def test_fifty_identical_concurrent_requests_store_one_event(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    hub_settings = hub_settings.model_copy(update={"default_rate_limit": "10000/minute"})
    body = orjson.dumps({"type": "lead.created"})
    headers = {"Content-Type": "application/json", "X-API-Key": key, "Idempotency-Key": "dup"}

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/webhooks/site", content=body, headers=headers) for _ in range(50))
            )

    with live_server(create_app(hub_settings)) as url:
        responses = asyncio.run(fire(url))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [202]
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert event_count(engine) == 1


def test_many_distinct_concurrent_requests_are_all_stored(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    hub_settings = hub_settings.model_copy(update={"default_rate_limit": "10000/minute"})

    async def fire(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/webhooks/site",
                        content=orjson.dumps({"type": "t", "i": i}),
                        headers={
                            "Content-Type": "application/json",
                            "X-API-Key": key,
                            "Idempotency-Key": f"k{i % 150}",  # 50 of them repeat an earlier one
                        },
                    )
                    for i in range(200)
                )
            )

    with live_server(create_app(hub_settings)) as url:
        responses = asyncio.run(fire(url))
    assert sorted(r.status_code for r in responses).count(202) == 150
    assert event_count(engine) == 150


# -- last use -------------------------------------------------------------------------------------


def test_last_used_at_is_not_written_per_request_but_kept(
    hub_settings: Settings, engine: Engine, key: str
) -> None:
    def last_used() -> datetime | None:
        with engine.connect() as conn:
            return conn.scalar(select(ApiKey.last_used_at))

    with TestClient(create_app(hub_settings)) as client:
        for i in range(3):
            assert post(client, "plain", key, [i]).status_code == 202
        assert last_used() is None  # remembered in memory, not one UPDATE per request
    assert last_used() is not None  # written when the process flushes (every minute, and at exit)


def test_other_paths_still_go_through_the_router(client: TestClient, key: str) -> None:
    assert client.get("/health").status_code == 200
    not_found = post(client, "site/extra", key, {"type": "lead.created"})
    assert not_found.status_code == 404 and error_code(not_found) == "not_found"
    wrong_method = client.put("/webhooks/site")  # GET is Meta's handshake (test_meta.py)
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "method_not_allowed"
    assert wrong_method.headers["Allow"] == "POST"


def test_request_headers_read_as_starlettes_do() -> None:
    raw = [(b"content-type", b"application/json"), (b"x-tag", b"one"), (b"x-tag", b"two")]
    headers = RequestHeaders({"headers": raw})
    plain = Headers(raw=raw)
    for name in ("Content-Type", "x-tag", "X-TAG", "missing"):
        assert headers.get(name) == plain.get(name)
        assert (name in headers) == (name in plain)
    assert headers["x-tag"] == "one"
    assert headers.items() == plain.items()
    assert headers.getlist("x-tag") == ["one", "two"]
    assert dict(headers) == dict(plain)
    with pytest.raises(KeyError, match="Missing"):
        headers["Missing"]
