"""Logs carry ids, never personal data: a payload full of it goes through real hub processes.

A web process, a worker and the sweeper run as `hub serve|worker|sweeper` with their stderr
captured. One lead is accepted, mapped, delivered to one target and refused by another (dead
letter), replayed and refused again; another lead fails its mapping on a bad phone. The captured
logs must tell that story by ids, and contain none of the phone, e-mail, CPF, CNPJ, name, key or
secret that went through.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, select

from hub.core.db import session_factory
from hub.core.metrics import sample_value
from hub.core.models import (
    DeadLetter,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    WebhookDelivery,
)
from hub.core.settings import Settings
from hub.ingress.apikeys import create_key
from hub.local.processes import free_port
from tests.delivery.conftest import Reply, TargetServer

HUB = [sys.executable, "-m", "hub"]
SECRET = "whsec_" + base64.b64encode(b"lgpd-test-signing-secret-32bytes").decode()
PII = {
    "name": "Ana Beatriz Souza",
    "phone": "(11) 91234-5678",
    "email": "ana.beatriz@example.com",
    "cpf": "123.456.789-09",
    "cnpj": "12.345.678/0001-95",
}
NEEDLES = [
    "Ana Beatriz",
    "91234",
    "912345678",
    "ana.beatriz@example.com",
    "123.456.789-09",
    "12345678909",
    "12.345.678/0001-95",
    "12345678000195",
    "(11) 9",
    "98765",  # the bad lead's phone
    SECRET,
]

SOURCES = """\
sources:
  site:
    queue: default
    event_type: {jsonpath: $.type}
    event_id: {jsonpath: $.id}
"""
ENDPOINTS = """\
endpoints:
  crm:
    kind: webhook
    url: "env:{TENANT}_CRM_URL"
    signing_secret: "env:{TENANT}_CRM_SECRET"
    retry: {max_attempts: 1}
  archive:
    kind: webhook
    url: "env:ARCHIVE_URL"
    retry: {max_attempts: 1}
"""
RULE = """\
rule: lead
sources: [site]
events: [lead.created]
routes:
  - to: crm
    path: /leads
    body:
      name: $.name
      phone: {fn: phone_br, args: [$.phone], required: true}
      email: $.email
      cpf: $.cpf
      cnpj: $.cnpj
  - to: archive
    key: archive
    path: /archive
    body: {email: $.email, cpf: $.cpf, cnpj: $.cnpj, name: $.name}
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def crm() -> Iterator[TargetServer]:
    server = TargetServer()
    # a refusal that echoes what it got, as some systems do
    server.default = Reply(status=422, body=orjson.dumps({"rejected": PII}))
    yield server.start()
    server.stop()


@pytest.fixture
def archive() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


def test_personal_data_never_reaches_the_logs_of_any_process(
    settings: Settings, engine: Engine, tmp_path: Path, crm: TargetServer, archive: TargetServer
) -> None:
    mappings = tmp_path / "mappings"
    (mappings / "rules").mkdir(parents=True)
    (mappings / "sources.yaml").write_text(SOURCES)
    (mappings / "endpoints.yaml").write_text(ENDPOINTS)
    (mappings / "rules" / "lead.yaml").write_text(RULE)
    port = free_port()
    env = dict(
        os.environ,
        HUB_DATABASE_URL=str(settings.database_url),
        HUB_REDIS_URL=str(settings.redis_url),
        HUB_DATA_DIR=str(tmp_path / "data"),
        HUB_MAPPINGS_DIR=str(mappings),
        HUB_LOG_FORMAT="json",
        HUB_LOG_LEVEL="DEBUG",
        HUB_SECRET_KEY="test-secret-key-for-the-log-test",
        CLINIC_1_CRM_URL=crm.url,
        CLINIC_1_CRM_SECRET=SECRET,
        ARCHIVE_URL=archive.url,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PYTHONUNBUFFERED="1",
    )
    with session_factory(engine).begin() as session:
        key = create_key(session, name="site", tenant_slug="clinic-1", create_tenant=True).secret
    logs = tmp_path / "logs"
    logs.mkdir()

    def run(name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        with open(logs / f"{name}.log", "ab") as err:
            return subprocess.run(
                [*HUB, *args], env=env, stdout=subprocess.PIPE, stderr=err, timeout=60
            )

    assert run("apply", "mappings", "apply").returncode == 0
    procs: list[subprocess.Popen[bytes]] = []
    for name, args in (
        ("web", ["serve", "--port", str(port)]),
        ("worker", ["worker"]),
        ("sweeper", ["sweeper", "--interval", "0.2"]),
    ):
        err = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([*HUB, *args], env=env, stderr=err, stdout=err))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ok(base + "/health"), "the web process")
        good = {"type": "lead.created", "id": "lead-1", **PII}
        bad = {"type": "lead.created", "id": "lead-2", **PII, "phone": "98765"}
        for payload in (good, bad):
            answer = httpx.post(base + "/webhooks/site", json=payload, headers={"X-API-Key": key})
            assert answer.status_code == 202, answer.text

        def settled() -> bool:
            with session_factory(engine)() as session:
                statuses = set(session.scalars(select(IntegrationEvent.status)))
                deliveries = set(session.scalars(select(WebhookDelivery.status)))
            return statuses == {EventStatus.FAILED} and deliveries == {
                DeliveryStatus.DEAD,
                DeliveryStatus.DELIVERED,
            }

        wait_for(settled, "ingest, mapping and delivery")
        assert archive.seen and crm.seen
        with session_factory(engine)() as session:
            letter = session.scalar(select(DeadLetter).where(DeadLetter.delivery_id.is_not(None)))
            assert letter is not None
            letter_id = letter.id
        assert run("replay", "replay", "--dead-letter", letter_id).returncode == 0

        def refused_again() -> bool:
            with session_factory(engine)() as session:
                found = session.get(DeadLetter, letter_id)
                return found is not None and found.attempts == 2

        wait_for(refused_again, "the replay")
        wait_for(lambda: len(crm.seen) == 2, "the replayed request")
        # the worker's counts reach the web process's /metrics (prometheus multiprocess mode)
        exposed = httpx.get(base + "/metrics").text
        assert sample_value(exposed, "hub_events_processed_total", {"status": "processed"}) == 1
        assert sample_value(exposed, "hub_events_processed_total", {"status": "failed"}) == 1
        delivered = {"endpoint": "archive", "outcome": "delivered"}
        assert sample_value(exposed, "hub_delivery_attempts_total", delivered) == 1
        dead = {"endpoint": "crm", "outcome": "dead"}
        assert sample_value(exposed, "hub_delivery_attempts_total", dead) == 2
        accepted = {"source": "site", "outcome": "accepted"}
        assert sample_value(exposed, "hub_webhooks_received_total", accepted) == 2
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    text = "\n".join((logs / f).read_text() for f in sorted(os.listdir(logs)))
    leaked = [needle for needle in [*NEEDLES, key] if needle.lower() in text.lower()]
    assert leaked == [], f"personal data or secrets in the logs: {leaked}"

    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    messages = {line["msg"] for line in lines}
    assert {"event.failed", "delivery.delivered", "delivery.dead", "replay.failed"} <= messages
    [processed] = [line for line in lines if line["msg"] == "event.processed"]
    assert processed["source"] == "site" and processed["tenant_id"] and processed["correlation_id"]
    dead = next(line for line in lines if line["msg"] == "delivery.dead")
    assert dead["endpoint"] == "crm" and dead["correlation_id"] == processed["correlation_id"]
    assert any(line.get("dead_letter_id") == letter_id for line in lines)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
