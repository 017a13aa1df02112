"""Shared by the ingress tests: sources.yaml applied, keys, a live uvicorn server on a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import uvicorn
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.applications import Starlette

from hub.core.db import create_db_engine
from hub.core.models import IntegrationEvent, KeyKind
from hub.core.protocol import HttpProtocol
from hub.core.settings import Settings
from hub.ingress.apikeys import create_key
from hub.local.processes import free_port
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings

SOURCES_YAML = """\
sources:
  site:
    queue: default
    event_type: {jsonpath: $.type}
    event_id: {header: Idempotency-Key}
  plain:
    event_type: {const: thing.happened}
  urlonly:
    event_type: {const: thing.happened}
    allow_query_key: true
  nested:
    event_type: {jsonpath: "$.data.kind"}
    event_id: {jsonpath: "$.data.id"}
  financeiro:
    queue: high
    signature:
      scheme: standard-webhooks
      secrets: ["env:{TENANT}_FIN_SECRET", "env:{TENANT}_FIN_SECRET_PREVIOUS"]
    event_type: {jsonpath: $.type}
    event_id: {header: webhook-id}
  github:
    signature:
      scheme: hmac-sha256
      header: X-Hub-Signature-256
      prefix: "sha256="
      secrets: ["env:HUBTEST_GH_SECRET"]
    event_type: {header: X-GitHub-Event}
    event_id: {header: X-GitHub-Delivery}
  stripe:
    signature: {scheme: stripe, secrets: ["env:HUBTEST_STRIPE_SECRET"]}
    event_type: {jsonpath: $.type}
    event_id: {jsonpath: $.id}
  zapi:
    critical: true
    signature: {scheme: token, header: Client-Token, secrets: ["env:{TENANT}_ZAPI_TOKEN"]}
    event_type: {const: whatsapp.message.received}
    event_id: {jsonpath: $.messageId}
  office:
    allowed_ips: [10.1.0.0/16]
    event_type: {const: office.ping}
  tiny:
    max_body: 1KiB
    rate_limit: 2/min
    event_type: {const: tiny.ping}
"""


def write_mappings(directory: Path, sources: str = SOURCES_YAML) -> Path:
    """A mappings directory of these sources (no endpoints, no rules)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sources.yaml").write_text(sources)
    if not (directory / "endpoints.yaml").exists():
        (directory / "endpoints.yaml").write_text("endpoints: {}\n")
    return directory


def apply_sources(engine: Engine, directory: Path, redis: Redis | None = None) -> int:
    """`hub mappings apply` of `directory`: web processes serve only applied sources."""
    return apply_mappings(engine, redis, load_mappings(directory)).version


def make_key(
    engine: Engine,
    tenant: str | None = "clinic-1",
    *,
    kind: KeyKind = KeyKind.INGEST,
    sources: list[str] | None = None,
    expires_at: datetime | None = None,
    name: str = "test",
) -> str:
    with Session(engine) as session, session.begin():
        return create_key(
            session,
            name=name,
            tenant_slug=tenant,
            kind=kind,
            sources=sources,
            expires_at=expires_at,
            create_tenant=True,
        ).secret


def event_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(IntegrationEvent)) or 0)


def events(engine: Engine) -> list[IntegrationEvent]:
    with Session(engine) as session:
        return list(session.scalars(select(IntegrationEvent).order_by(IntegrationEvent.created_at)))


@contextmanager
def live_server(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # as `hub serve`: hub judges X-Forwarded-For itself
        http=HttpProtocol,  # as `hub serve`: one write per response
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def ingress_settings(settings: Settings, tmp_path: Path, **update: object) -> Settings:
    """`settings` with SOURCES_YAML as the mappings, applied to the test database."""
    directory = write_mappings(tmp_path / "mappings")
    engine = create_db_engine(settings)
    try:
        apply_sources(engine, directory)
    finally:
        engine.dispose()
    return settings.model_copy(update={"mappings_dir": directory, **update})


class TcpProxy:
    """A loopback TCP forwarder we can cut: stands in for a database that goes away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        self.open = False
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
