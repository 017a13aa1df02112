from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook

from hub.core.errors import EgressRefused
from hub.delivery.adapters import (
    DeliveryRef,
    OutgoingRequest,
    Target,
    Verdict,
    classify_zapi,
)
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from hub.delivery.senders import Senders
from hub.local.processes import free_port
from tests.delivery.conftest import LOOPBACK, Reply, TargetServer, ZapiStandIn

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
ENV = {
    "CLINIC_1_CRM_URL": "",
    "CLINIC_1_CRM_SECRET": SECRET,
    "CLINIC_1_CRM_TOKEN": "Bearer t0k",
    "CRM_RAW_SECRET": "plain-secret-text",
    "ZAPI_INSTANCE": "INST1",
    "ZAPI_TOKEN": "TOK1",
    "ZAPI_CLIENT_TOKEN": "client-secret",
    "SMTP_PASSWORD": "s3cret",
}


@pytest.fixture
def adapters() -> Iterator[Adapters]:
    pool = Adapters(egress=LOOPBACK)  # the stand-ins below listen on 127.0.0.1
    yield pool
    pool.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def webhook(url: str, **extra: Any) -> EndpointConfig:
    return EndpointConfig.model_validate({"kind": "webhook", "url": url, **extra})


def send(adapters: Adapters, config: EndpointConfig, body: Any = None, **request: Any) -> Any:
    target = Target("crm", config, "clinic-1")
    req = OutgoingRequest(body={"name": "Ana"} if body is None else body, **request)
    ref = DeliveryRef("dlv_01TEST", 1, "corr-42")
    return adapters.for_kind(config.kind).send(req, target, ref)


# -- webhook --------------------------------------------------------------------------------------


def test_a_webhook_is_signed_so_the_receiver_verifies_it_with_standardwebhooks(
    target: TargetServer, adapters: Adapters, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINIC_1_CRM_URL", target.url + "/hooks/")
    config = webhook(
        "env:{TENANT}_CRM_URL",
        signing_secret="env:{TENANT}_CRM_SECRET",
        headers={"Authorization": "env:{TENANT}_CRM_TOKEN", "X-Static": "yes"},
    )
    outcome = send(
        adapters, config, {"name": "Ana", "n": 1}, path="/leads", headers={"X-Route": "r"}
    )
    assert outcome.verdict == Verdict.DELIVERED and outcome.status_code == 200
    assert outcome.excerpt == '{"ok": true}'
    seen = target.seen[0]
    assert (seen.method, seen.path) == ("POST", "/hooks/leads")
    assert seen.headers["authorization"] == "Bearer t0k"
    assert seen.headers["x-static"] == "yes" and seen.headers["x-route"] == "r"
    assert seen.headers["x-correlation-id"] == "corr-42"
    assert seen.headers["webhook-id"] == "dlv_01TEST"
    verified = Webhook(SECRET).verify(seen.body, seen.headers)
    assert verified == {"name": "Ana", "n": 1}


def test_a_raw_signing_secret_is_used_as_its_bytes(
    target: TargetServer, adapters: Adapters, env: dict[str, str]
) -> None:
    config = webhook(target.url, signing_secret="env:CRM_RAW_SECRET")
    assert send(adapters, config).verdict == Verdict.DELIVERED
    seen = target.seen[0]
    assert Webhook(b"plain-secret-text").verify(seen.body, seen.headers) == {"name": "Ana"}
    with pytest.raises(Exception, match="signature"):
        Webhook(b"another-secret").verify(seen.body, seen.headers)


def test_the_webhook_id_stays_the_same_on_every_retry(
    target: TargetServer, adapters: Adapters
) -> None:
    config = webhook(target.url)
    target.replies(Reply(500))
    assert send(adapters, config).verdict == Verdict.RETRY
    assert send(adapters, config).verdict == Verdict.DELIVERED
    assert [s.headers["webhook-id"] for s in target.seen] == ["dlv_01TEST", "dlv_01TEST"]
    assert "webhook-signature" not in target.seen[0].headers  # no secret configured


def test_each_send_goes_with_its_own_method_body_and_headers_on_one_connection(
    target: TargetServer, adapters: Adapters
) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST", "GET", "POST"):
        outcome = send(adapters, webhook(target.url, method=method), body={"m": method})
        assert outcome.verdict == Verdict.DELIVERED, (method, outcome)
    seen = [(s.method, s.json()["m"], s.headers["content-type"]) for s in target.seen]
    assert seen == [
        (m, m, "application/json") for m in ("PUT", "PATCH", "DELETE", "POST", "GET", "POST")
    ]
    assert {s.headers["user-agent"] for s in target.seen} == {"hub-webhooks/0.1"}
    assert "expect" not in target.seen[0].headers  # no 100-continue round trip
    assert len({s.peer for s in target.seen}) == 1


def test_an_ipv6_target_spelled_any_way_is_reached_at_its_checked_address() -> None:
    """The address curl connects to is compared with the policy's in one spelling: a URL that
    writes ::1 as 0:0::1 reaches it, and only where the policy allows it."""
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        allowed = Senders(EgressPolicy.from_setting(["::1/128"]))
        closed = Senders(EgressPolicy())
        try:
            answer_ = allowed.send("POST", f"http://[0:0::1]:{port}/x", {}, b"{}", 5.0)
            with pytest.raises(EgressRefused, match="loopback"):
                closed.send("POST", f"http://[::1]:{port}/x", {}, b"{}", 5.0)
        finally:
            allowed.close()
            closed.close()
        thread.join(5)
    assert (answer_.status, answer_.text) == (200, "ok")


def test_connections_are_kept_alive_across_sends(target: TargetServer, adapters: Adapters) -> None:
    config = webhook(target.url)
    for _ in range(5):
        assert send(adapters, config).verdict == Verdict.DELIVERED
    assert adapters.senders.connections() == 1
    assert len({seen.peer for seen in target.seen}) == 1


def test_each_sending_thread_keeps_its_own_connection_and_an_ended_threads_are_closed(
    target: TargetServer, adapters: Adapters
) -> None:
    config = webhook(target.url)
    target.default = Reply(delay=0.2)  # the four sends overlap

    def sender() -> None:
        for _ in range(2):
            assert send(adapters, config).verdict == Verdict.DELIVERED

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(target.seen) == 8
    peers = Counter(seen.peer for seen in target.seen)
    assert sorted(peers.values()) == [2, 2, 2, 2]  # each thread's two sends on one connection
    assert adapters.senders.connections() == 4

    assert send(adapters, config).verdict == Verdict.DELIVERED  # this thread's own, new
    assert adapters.senders.connections() == 1  # the ended threads' are closed


def test_a_webhook_over_https_checks_the_certificate_against_the_host(
    adapters: Adapters, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    secure = TargetServer(tls=(cert, key)).start()
    try:
        untrusted = send(adapters, webhook(secure.url))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now the client trusts our test CA
        trusting = Adapters(egress=LOOPBACK)
        try:
            delivered = send(trusting, webhook(secure.url + "/hook"))
            # the certificate names 127.0.0.1 only; the connection goes to the same address
            misnamed = send(trusting, webhook(secure.url.replace("127.0.0.1", "localhost")))
        finally:
            trusting.close()
    finally:
        secure.stop()
    assert (untrusted.verdict, untrusted.error_class) == (Verdict.RETRY, "connection_error")
    assert "certificate" in (untrusted.error or ""), untrusted  # curl 60: not trusted
    assert (misnamed.verdict, misnamed.error_class) == (Verdict.RETRY, "connection_error")
    assert "localhost" in (misnamed.error or ""), misnamed
    assert delivered.verdict == Verdict.DELIVERED, delivered
    assert [seen.path for seen in secure.seen] == ["/hook"]


def test_a_connection_the_target_closed_while_idle_is_replaced_without_a_failed_send(
    adapters: Adapters,
) -> None:
    server = TargetServer(keep_alive=0.3).start()
    try:
        first = send(adapters, webhook(server.url))
        time.sleep(0.8)  # the target has closed the idle connection
        second = send(adapters, webhook(server.url))
    finally:
        server.stop()
    assert (first.verdict, second.verdict) == (Verdict.DELIVERED, Verdict.DELIVERED), second
    assert len({seen.peer for seen in server.seen}) == 2


def test_only_the_first_64_kib_of_an_answer_are_read(
    target: TargetServer, adapters: Adapters
) -> None:
    target.replies(Reply(400, body=b"x" * 200_000), Reply(200))
    refused = send(adapters, webhook(target.url))
    assert (refused.verdict, refused.excerpt) == (Verdict.DEAD, "x" * 200)
    assert send(adapters, webhook(target.url)).verdict == Verdict.DELIVERED  # a fresh connection


@pytest.mark.parametrize(
    ("reply", "verdict", "error_class", "retry_after"),
    [
        (Reply(500), Verdict.RETRY, "http_500", None),
        (Reply(503, headers={"Retry-After": "7"}), Verdict.RETRY, "http_503", 7.0),
        (Reply(429, headers={"Retry-After": "3"}), Verdict.RETRY, "http_429", 3.0),
        (Reply(408), Verdict.RETRY, "http_408", None),
        (Reply(410, body=b'{"error": "gone"}'), Verdict.DEAD, "http_410", None),
        (Reply(400), Verdict.DEAD, "http_400", None),
        (Reply(302, headers={"Location": "/elsewhere"}), Verdict.DEAD, "http_302", None),
    ],
)
def test_answers_are_classified(
    target: TargetServer,
    adapters: Adapters,
    reply: Reply,
    verdict: Verdict,
    error_class: str,
    retry_after: float | None,
) -> None:
    target.replies(reply)
    outcome = send(adapters, webhook(target.url))
    assert (outcome.verdict, outcome.error_class) == (verdict, error_class)
    assert outcome.status_code == reply.status
    assert outcome.retry_after == retry_after


def test_a_slow_target_times_out_and_is_retried(target: TargetServer, adapters: Adapters) -> None:
    target.replies(Reply(delay=1))
    started = time.monotonic()
    outcome = send(adapters, webhook(target.url, timeout="300ms"))
    assert outcome.verdict == Verdict.RETRY and outcome.error_class == "timeout"
    assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_retried(adapters: Adapters) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = send(adapters, webhook(f"http://127.0.0.1:{port}"))
    assert outcome.verdict == Verdict.RETRY and outcome.error_class == "connection_error"


@pytest.mark.parametrize("url", ["ftp://crm.example/hook", "http://[::1/hook", "http:///hook"])
def test_a_url_that_cannot_be_sent_to_is_dead_without_quoting_it(
    adapters: Adapters, url: str
) -> None:
    outcome = send(adapters, webhook(url))
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "invalid_url")
    assert "hook" not in (outcome.error or "")  # a Z-API URL carries its token


def test_a_missing_env_variable_is_a_permanent_config_error(adapters: Adapters) -> None:
    outcome = send(adapters, webhook("env:{TENANT}_NOWHERE_URL"))
    assert outcome.verdict == Verdict.DEAD and outcome.error_class == "config"
    assert "CLINIC_1_NOWHERE_URL" in (outcome.error or "")


# -- zapi -----------------------------------------------------------------------------------------


def zapi_config(url: str, **extra: Any) -> EndpointConfig:
    fields = {
        "kind": "zapi",
        "url": url,
        "instance": "env:ZAPI_INSTANCE",
        "token": "env:ZAPI_TOKEN",
        "client_token": "env:ZAPI_CLIENT_TOKEN",
    }
    return EndpointConfig.model_validate(fields | extra)


def test_zapi_send_text_goes_to_the_instance_path_with_the_client_token(
    zapi: ZapiStandIn, adapters: Adapters, env: dict[str, str]
) -> None:
    outcome = send(adapters, zapi_config(zapi.url), {"phone": "5511912345678", "message": "Olá"})
    assert outcome.verdict == Verdict.DELIVERED, outcome
    seen = zapi.seen[0]
    assert seen.path == "/instances/INST1/token/TOK1/send-text"
    assert seen.headers["client-token"] == "client-secret"
    assert seen.json() == {"phone": "5511912345678", "message": "Olá"}


def test_zapi_with_a_wrong_client_token_is_dead(
    zapi: ZapiStandIn, adapters: Adapters, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZAPI_CLIENT_TOKEN", "stale")
    outcome = send(adapters, zapi_config(zapi.url), {"phone": "5511912345678", "message": "Oi"})
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "zapi_auth")


def test_zapi_with_an_unknown_instance_is_dead(
    zapi: ZapiStandIn, adapters: Adapters, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZAPI_INSTANCE", "OTHER")
    outcome = send(adapters, zapi_config(zapi.url), {"phone": "5511912345678", "message": "Oi"})
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "zapi_not_found")


def test_zapi_disconnected_instance_is_retried_and_a_body_without_phone_is_dead(
    zapi: ZapiStandIn, adapters: Adapters, env: dict[str, str]
) -> None:
    zapi.replies(Reply(400, body=b'{"error": "You are not connected."}'))
    outcome = send(adapters, zapi_config(zapi.url), {"phone": "5511912345678", "message": "Oi"})
    assert (outcome.verdict, outcome.error_class) == (Verdict.RETRY, "zapi_not_connected")
    outcome = send(adapters, zapi_config(zapi.url), {"message": "Oi"})
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "bad_request")
    assert len(zapi.seen) == 1  # nothing sent for the bad body


@pytest.mark.parametrize(
    ("status", "text", "verdict"),
    [
        (200, '{"zaapId": "Z", "messageId": "M"}', Verdict.DELIVERED),
        (200, '{"error": "Phone number does not exist"}', Verdict.DEAD),
        (500, "oops", Verdict.RETRY),
        (429, '{"error": "too many"}', Verdict.RETRY),
        (400, '{"error": "Timeout on send message"}', Verdict.RETRY),
    ],
)
def test_zapi_answers_are_classified(status: int, text: str, verdict: Verdict) -> None:
    assert classify_zapi(status, text).verdict == verdict


# -- email ----------------------------------------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"hub", b"s3cret")
    return AuthResult(success=ok, handled=False)


def email_config(port: int, **extra: Any) -> EndpointConfig:
    fields = {"kind": "email", "host": "127.0.0.1", "port": port, "from_addr": "hub@example.com"}
    return EndpointConfig.model_validate(fields | extra)


MAIL = {"to": "ana@example.com", "subject": "Bem-vinda", "text": "Olá Ana", "html": "<p>Olá</p>"}


def test_an_email_goes_through_smtp(adapters: Adapters) -> None:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        outcome = send(adapters, email_config(controller.port), MAIL)
    finally:
        controller.stop()
    assert outcome.verdict == Verdict.DELIVERED, outcome
    envelope = box.messages[0]
    assert envelope.mail_from == "hub@example.com" and envelope.rcpt_tos == ["ana@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Bem-vinda" and message["Message-ID"] == "<dlv_01TEST@hub>"
    assert message["X-Correlation-Id"] == "corr-42"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }
    assert parts["text/plain"].strip() == "Olá Ana" and "<p>Olá</p>" in parts["text/html"]


def test_an_email_uses_starttls_and_login_when_configured(
    adapters: Adapters, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts our test CA
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls,
        require_starttls=True,
        authenticator=check_login,
        auth_require_tls=True,
    )
    controller.start()
    try:
        config = email_config(
            controller.port, starttls=True, username="hub", password="env:SMTP_PASSWORD"
        )
        outcome = send(adapters, config, MAIL)
    finally:
        controller.stop()
    assert outcome.verdict == Verdict.DELIVERED, outcome
    assert len(box.messages) == 1


def test_a_rejected_smtp_login_is_dead(
    adapters: Adapters, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=check_login,
        auth_require_tls=False,
    )
    controller.start()
    try:
        config = email_config(controller.port, username="hub", password="env:SMTP_PASSWORD")
        outcome = send(adapters, config, MAIL)
    finally:
        controller.stop()
    assert (outcome.verdict, outcome.status_code) == (Verdict.DEAD, 535), outcome
    assert box.messages == []


def test_an_unreachable_smtp_server_is_retried_and_a_bad_body_is_dead(adapters: Adapters) -> None:
    outcome = send(adapters, email_config(free_port(), timeout="1s"), MAIL)
    assert (outcome.verdict, outcome.error_class) == (Verdict.RETRY, "connection_error")
    outcome = send(adapters, email_config(free_port()), {"subject": "no recipient", "text": "x"})
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "bad_request")
