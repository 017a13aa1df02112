"""Web processes serve the sources `hub mappings apply` stored, never their own sources.yaml:
every host the same version, reloaded without a restart, and a database that is down at the start
answers 503 until it is back."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from ingress_support import apply_sources, event_count, make_key, write_mappings
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.models import EventSource
from hub.core.queues import CONFIG_VERSION_KEY
from hub.core.settings import Settings
from hub.ingress.applied import AppliedSources, LiveSources, load_applied_sources
from hub.ingress.route import FastIngress
from hub.ingress.sources import load_sources
from hub.local.processes import free_port
from tests.faults import database_proxy
from tests.hub_processes import HubProcesses
from tests.workers.test_worker import messages, wait_for

OLD, NEW = "old-secret-of-the-sender", "new-secret-of-the-sender"

SIGNED = """\
sources:
  github:
    signature:
      scheme: hmac-sha256
      header: X-Signature
      prefix: "sha256="
      secrets: ["env:HUBTEST_SRC_{which}"]
    event_type: {{const: push}}
"""

_bodies = itertools.count()


def signed_post(client: TestClient | httpx.Client, key: str, secret: str) -> int:
    """POST a new event to `github` signed with `secret`; the status code."""
    raw = orjson.dumps({"n": next(_bodies), "at": time.time()})
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-API-Key": key,
        "X-Signature": f"sha256={digest}",
    }
    return client.post("/webhooks/github", content=raw, headers=headers).status_code


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBTEST_SRC_OLD", OLD)
    monkeypatch.setenv("HUBTEST_SRC_NEW", NEW)


@pytest.fixture
def hosts(
    settings: Settings, engine: Engine, redis: Redis, tmp_path: Path, secrets: None
) -> Iterator[tuple[Path, list[TestClient]]]:
    """Two web apps ("hosts") against one database and Redis, sources.yaml applied with OLD."""
    mappings = write_mappings(tmp_path / "mappings", SIGNED.format(which="OLD"))
    apply_sources(engine, mappings, redis)
    configured = settings.model_copy(update={"mappings_dir": mappings})
    with (
        TestClient(FastIngress(create_app(configured))) as one,  # type: ignore[arg-type]
        TestClient(FastIngress(create_app(configured))) as two,  # type: ignore[arg-type]
    ):
        yield mappings, [one, two]


def test_every_host_serves_the_applied_signature_and_a_new_apply_without_a_restart(
    hosts: tuple[Path, list[TestClient]], engine: Engine, redis: Redis
) -> None:
    mappings, clients = hosts
    key = make_key(engine)
    assert [signed_post(c, key, OLD) for c in clients] == [202, 202]
    assert [signed_post(c, key, NEW) for c in clients] == [401, 401]

    # the file changes on disk (a deploy), nobody applies: nothing changes, on any host, even
    # when they look again (a stray notification makes them read the database's version)
    write_mappings(mappings, SIGNED.format(which="NEW"))
    redis.incr(CONFIG_VERSION_KEY)
    time.sleep(2.5)  # more than a look at the Redis key (1 s) or at a file's mtime (2 s)
    assert [signed_post(c, key, OLD) for c in clients] == [202, 202]
    assert [signed_post(c, key, NEW) for c in clients] == [401, 401]

    apply_sources(engine, mappings, redis)
    took = wait_for(
        lambda: all(signed_post(c, key, NEW) == 202 for c in clients), 5, "both hosts reload"
    )
    assert took < 3, f"the hosts served the new secret {took:.1f}s after the apply"
    assert [signed_post(c, key, OLD) for c in clients] == [401, 401]


def test_an_apply_redis_was_not_told_of_is_found_in_the_database(
    engine: Engine, tmp_path: Path
) -> None:
    loads: list[AppliedSources] = []
    live = LiveSources(engine, None, loads.append, db_interval=0.0)
    assert live.refresh() is True and loads[-1].configs == {}, "nothing applied yet: no sources"
    version = apply_sources(engine, write_mappings(tmp_path / "m", SIGNED.format(which="OLD")))
    assert live.refresh() is True, "the database's version moved"
    assert (loads[-1].version, sorted(loads[-1].configs)) == (version, ["github"])
    assert live.refresh() is False, "the same version is not loaded twice"


def test_secrets_are_stored_as_references_and_read_back_as_the_file_declared_them(
    engine: Engine, secrets: None
) -> None:
    shipped = Path(__file__).resolve().parents[2] / "mappings"
    declared = load_sources(shipped)
    apply_sources(engine, shipped)
    with Session(engine) as session:
        stored = orjson.dumps([row.definition for row in session.scalars(select(EventSource))])
    assert b"env:" in stored and OLD.encode() not in stored and NEW.encode() not in stored
    applied = load_applied_sources(engine).configs
    assert applied == declared, "every shipped source reads back equal to the file's"
    for name, config in declared.items():  # defaults and presets come back the same way
        assert applied[name].effective_event_type == config.effective_event_type, name
        assert applied[name].effective_event_id == config.effective_event_id, name


def test_hub_serve_starts_while_the_database_is_down_and_serves_once_it_is_back(
    settings: Settings, engine: Engine, tmp_path: Path, secrets: None
) -> None:
    if not settings.effective_database_url.startswith("mysql"):
        pytest.skip("SQLite is a file: there is no connection to cut (MariaDB lane only)")
    mappings = write_mappings(tmp_path / "mappings", SIGNED.format(which="OLD"))
    apply_sources(engine, mappings)
    key = make_key(engine)
    port = free_port()
    processes = HubProcesses(settings, tmp_path)
    with database_proxy(settings.effective_database_url) as proxy:
        proxy.cut()
        web = processes.start(
            "serve",
            "--port",
            str(port),
            database_url=proxy.url_for(settings.effective_database_url),
            HUB_LOG_FORMAT="json",
            HUB_MAPPINGS_DIR=str(mappings),
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

                def answers() -> bool:
                    try:
                        return client.get("/health").status_code > 0
                    except httpx.TransportError:
                        return False

                wait_for(answers, 20, "hub serve answers with the database down")
                health = client.get("/health")
                assert health.status_code == 503 and web.poll() is None
                assert health.json()["checks"]["database"]["status"] == "down", health.text
                ingest = client.post("/webhooks/github", content=b"{}", headers={"X-API-Key": key})
                assert ingest.status_code == 503, ingest.text
                assert ingest.json()["error"]["code"] == "database_unavailable"
                time.sleep(1.0)  # a few tries fail while it is down: logged once
                proxy.restore()
                took = wait_for(
                    lambda: signed_post(client, key, OLD) == 202, 10, "ingest after the outage"
                )
                assert client.get("/health").status_code == 200
                assert took < 7, f"served {took:.1f}s after the database came back"
        finally:
            web.terminate()
            web.wait(15)
            assert web.stderr is not None
            said = messages(web.stderr.read())
            processes.close()
    assert said.count("web.database_down") == 1, said
    assert said.count("web.database_back") == 1, said
    assert event_count(engine) == 1
