"""The demo sink: verifies Standard Webhooks signatures the way the reference library does, answers
Z-API's send-text, receives real e-mail over SMTP, and shows all of it as a DEMO STAND-IN."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from click.testing import CliRunner
from standardwebhooks import Webhook

from hub.cli import cli
from hub.local.processes import free_port as _free_port
from hub.local.sink import (
    LABEL,
    SinkConfig,
    SinkStore,
    TlsFiles,
    Verdict,
    create_sink_app,
    ensure_tls,
    load_or_create_secret,
    new_secret,
    start_smtp,
    system_of,
    verify_signature,
    write_trust_bundle,
)

SECRET = new_secret()
CLIENT_TOKEN = "demo-client-token"


class SinkServer:
    """The sink's HTTP app under uvicorn in a thread, and its SMTP half, on free loopback ports."""

    def __init__(self, store: SinkStore, config: SinkConfig, tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self.port = _free_port()
        self.smtp_port = _free_port()
        self.store = store
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_sink_app(store, config),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SinkServer:
        self.smtp = start_smtp(self.store, "127.0.0.1", self.smtp_port, self.tls)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started, "the sink did not start"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.smtp.stop()


@pytest.fixture
def store(tmp_path: Path) -> SinkStore:
    return SinkStore.in_data_dir(tmp_path)


@pytest.fixture
def sink(store: SinkStore) -> Iterator[SinkServer]:
    with SinkServer(store, SinkConfig((SECRET,), CLIENT_TOKEN)) as server:
        yield server


def _signed(secret: str, msg_id: str, body: bytes, when: datetime | None = None) -> dict[str, str]:
    """Headers exactly as the `standardwebhooks` reference library signs them."""
    timestamp = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


# -- verification, against the reference library -------------------------------------------------


def test_a_signature_made_by_the_reference_library_verifies() -> None:
    body = b'{"name": "Ana"}'
    headers = _signed(SECRET, "msg_1", body)
    assert verify_signature([SECRET], headers, body) == (Verdict.VALID, "signature verified")
    Webhook(SECRET).verify(body, headers)  # and the library agrees


def test_rotation_any_of_several_secrets_and_signatures_verifies() -> None:
    body = b'{"n": 1}'
    old, new = new_secret(), new_secret()
    headers = _signed(new, "msg_2", body)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert verify_signature([old, new], headers, body)[0] == Verdict.VALID
    assert verify_signature([old], headers, body)[0] == Verdict.INVALID


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"name": "Eve"}'}, "no secret matches the signature"),
        ({"secret": new_secret()}, "no secret matches the signature"),
        ({"skew": timedelta(minutes=-6)}, "timestamp too old"),
        ({"skew": timedelta(minutes=6)}, "timestamp too new"),
    ],
    ids=["tampered-body", "wrong-secret", "stale", "future"],
)
def test_what_the_library_rejects_is_invalid(change: dict[str, object], reason: str) -> None:
    body = b'{"name": "Ana"}'
    secret = str(change.get("secret", SECRET))
    skew = change.get("skew")
    assert skew is None or isinstance(skew, timedelta)
    when = datetime.now(UTC) + skew if skew is not None else None  # at run time, not collection
    headers = _signed(secret, "msg_3", body, when)
    sent = change.get("body", body)
    assert isinstance(sent, bytes)
    assert verify_signature([SECRET], headers, sent) == (Verdict.INVALID, reason)
    with pytest.raises(Exception, match="(?i)signature|timestamp"):
        Webhook(SECRET).verify(sent, headers)


def test_a_request_without_signature_is_unsigned() -> None:
    assert verify_signature([SECRET], {"webhook-id": "x"}, b"{}")[0] == Verdict.UNSIGNED


def test_the_target_system_comes_from_the_path() -> None:
    assert system_of("/crm/leads") == ("crm", "webhook")
    assert system_of("/finance") == ("finance", "webhook")
    assert system_of("/zapi/instances/i1/token/t1/send-text") == ("zapi", "zapi")
    assert system_of("/instances/i1/token/t1/send-text") == ("zapi", "zapi")


def test_the_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert first.startswith("whsec_")
    assert load_or_create_secret(tmp_path) == first
    assert (tmp_path / "sink.secret").stat().st_mode & 0o777 == 0o600


# -- the HTTP sink --------------------------------------------------------------------------------


def test_the_sink_accepts_and_records_a_correctly_signed_webhook(sink: SinkServer) -> None:
    body = orjson.dumps({"name": "Ana", "phone": "+5511912345678"})
    answer = httpx.post(
        sink.url + "/crm/leads", content=body, headers=_signed(SECRET, "dlv_1", body)
    )
    assert answer.status_code == 200
    assert answer.json()["stand_in"] == LABEL
    [item] = sink.store.list()
    assert (item.system, item.method, item.path) == ("crm", "POST", "/crm/leads")
    assert (item.webhook_id, item.verdict) == ("dlv_1", Verdict.VALID)
    assert orjson.loads(item.body) == {"name": "Ana", "phone": "+5511912345678"}


def test_the_sink_refuses_a_bad_signature_with_401_and_records_it(sink: SinkServer) -> None:
    body = b'{"amount": 100}'
    headers = _signed(new_secret(), "dlv_2", body)
    answer = httpx.post(sink.url + "/finance/invoices", content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_signature"
    [item] = sink.store.list()
    assert (item.system, item.verdict, item.webhook_id) == ("finance", Verdict.INVALID, "dlv_2")


def test_the_sink_answers_zapi_send_text_and_checks_client_token(sink: SinkServer) -> None:
    path = "/zapi/instances/demo-instance/token/demo-token/send-text"
    body = {"phone": "5511912345678", "message": "Olá Ana"}
    good = httpx.post(sink.url + path, json=body, headers={"Client-Token": CLIENT_TOKEN})
    bad = httpx.post(sink.url + path, json=body, headers={"Client-Token": "nope"})
    assert good.status_code == 200 and good.json()["messageId"]
    assert bad.status_code == 401
    assert [(i.system, i.verdict) for i in sink.store.list()] == [
        ("zapi", Verdict.TOKEN_OK),
        ("zapi", Verdict.TOKEN_BAD),
    ]


def test_the_page_shows_each_system_with_its_verdict_as_a_stand_in(sink: SinkServer) -> None:
    body = b'{"campaign": "site"}'
    httpx.post(sink.url + "/marketing/leads", content=body, headers=_signed(SECRET, "dlv_3", body))
    page = httpx.get(sink.url + "/")
    assert page.status_code == 200
    assert f"<title>hub sink: {LABEL}</title>" in page.text
    assert "marketing" in page.text and "dlv_3" in page.text and ">valid<" in page.text
    listed = httpx.get(sink.url + "/_sink/received", params={"system": "marketing"}).json()
    assert [r["webhook_id"] for r in listed["received"]] == ["dlv_3"]


# -- the SMTP sink --------------------------------------------------------------------------------


def test_the_smtp_sink_receives_a_real_email(sink: SinkServer) -> None:
    message = EmailMessage()
    message["From"] = "hub@example.com"
    message["To"] = "ana@example.com"
    message["Subject"] = "Bem-vinda"
    message["Message-ID"] = "<dlv_4@hub>"
    message.set_content("Olá Ana, seja bem-vinda!")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as smtp:
        smtp.login("demo", "demo")
        refused = smtp.send_message(message)
    assert refused == {}
    [item] = sink.store.list()
    assert (item.system, item.verdict, item.webhook_id) == ("email", Verdict.NOT_SIGNED, "dlv_4")
    received = orjson.loads(item.body)
    assert received["to"] == ["ana@example.com"]
    assert received["subject"] == "Bem-vinda"
    assert received["text"].strip() == "Olá Ana, seja bem-vinda!"


def test_the_smtp_sink_offers_starttls_with_a_certificate_the_bundle_trusts(
    store: SinkStore, tmp_path: Path
) -> None:
    tls = ensure_tls(tmp_path)
    write_trust_bundle(tls)
    with SinkServer(store, SinkConfig((SECRET,)), tls) as server:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "Oi"
        message.set_content("tls")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.starttls(context=ssl.create_default_context(cafile=str(tls.bundle)))
            smtp.login("demo", "demo")
            smtp.send_message(message)
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            with pytest.raises(ssl.SSLCertVerificationError):
                smtp.starttls(context=ssl.create_default_context())  # only the bundle trusts it
    assert [orjson.loads(i.body)["subject"] for i in store.list()] == ["Oi"]
    assert ensure_tls(tmp_path).cert.read_bytes() == tls.cert.read_bytes()  # created once


# -- the CLI --------------------------------------------------------------------------------------


def test_sink_tail_prints_what_each_system_received(
    sink: SinkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"name": "Ana"}'
    httpx.post(sink.url + "/crm/leads", content=body, headers=_signed(SECRET, "dlv_5", body))
    httpx.post(sink.url + "/crm/leads", content=body, headers=_signed(new_secret(), "dlv_6", body))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["sink", "--tail", "--no-follow"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert LABEL in lines[0]
    assert "crm" in lines[1] and "dlv_5" in lines[1] and "[valid]" in lines[1]
    assert "dlv_6" in lines[2] and "[invalid]" in lines[2]


def test_sink_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["sink", "--host", "0.0.0.0"], env={"HUB_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "loopback only" in result.output


def test_sink_tail_where_nothing_was_recorded_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["sink", "--tail", "--no-follow"], env={"HUB_DATA_DIR": str(tmp_path / ".hub")}
    )
    assert result.exit_code == 2
    assert "the demo sink has recorded nothing here" in result.output
    assert not (tmp_path / ".hub").exists()
