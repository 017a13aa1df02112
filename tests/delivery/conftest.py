"""Real target systems on loopback, and rows to deliver.

`TargetServer` is a small Starlette app under uvicorn in a thread: it records every request and
answers from a script of responses (status, headers, body, delay), then 200. Endpoint configs are
built with `hub.delivery.endpoints.EndpointConfig` and inserted into `webhook_endpoints` directly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from redis import Redis
from sqlalchemy import Engine, insert
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.core import ids
from hub.core.models import (
    EventStatus,
    IntegrationEvent,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from hub.core.queues import CONFIG_VERSION_KEY
from hub.core.settings import Settings
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import EndpointConfig
from workers import context
from workers.context import WorkerContext
from workers.sweeper import SweepContext


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived
    peer: int = 0  # the client's port: one per connection

    def json(self) -> Any:
        return orjson.loads(self.body)


# the stand-ins here listen on 127.0.0.1, closed to deliveries unless allowed
LOOPBACK = EgressPolicy.from_setting(["127.0.0.0/8"])


class TargetServer:
    """An HTTP target on 127.0.0.1 with a scripted list of replies."""

    def __init__(self, tls: tuple[Path, Path] | None = None, keep_alive: float = 5.0) -> None:
        """`tls`: a certificate and its key, to answer HTTPS; `keep_alive`: seconds an idle
        connection is kept open."""
        self.seen: list[Seen] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self.by_path: dict[str, Reply] = {}  # path prefix -> the reply for a path under it
        self.arrived = threading.Event()
        self.in_flight = 0  # requests arrived and not yet answered
        self.peak = 0  # the most in flight at once
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                )
            ]
        )
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_level="error",
            lifespan="off",
            ws="none",
            access_log=False,
            timeout_keep_alive=keep_alive,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            peer = request.client.port if request.client else 0
            self.seen.append(
                Seen(request.method, request.url.path, dict(request.headers), body, peer=peer)
            )
            reply = self.script.pop(0) if self.script else self._reply_for(request.url.path)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        self.arrived.set()
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        return Response(
            reply.body, reply.status, headers=reply.headers, media_type="application/json"
        )

    def _reply_for(self, path: str) -> Reply:
        prefixes = [prefix for prefix in self.by_path if path.startswith(prefix)]
        return self.by_path[max(prefixes, key=len)] if prefixes else self.default

    def replies(self, *replies: Reply) -> None:
        with self._lock:
            self.script = list(replies)

    def start(self) -> TargetServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("target server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


class ZapiStandIn(TargetServer):
    """Z-API's send-text: checks the path and the Client-Token header like the real service."""

    instance, token, client_token = "INST1", "TOK1", "client-secret"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
        if request.url.path != f"/instances/{self.instance}/token/{self.token}/send-text":
            return JSONResponse({"error": "NOT_FOUND", "message": "Instance not found"}, 404)
        if request.headers.get("client-token") != self.client_token:
            return JSONResponse({"error": "your client-token is not configured"}, 400)
        if self.script:
            reply = self.script.pop(0)
            return Response(reply.body, reply.status, media_type="application/json")
        data = orjson.loads(body)
        if set(data) != {"phone", "message"}:
            return JSONResponse({"error": "bad body"}, 400)
        return JSONResponse({"zaapId": "Z1", "messageId": "M1", "id": "M1"})


SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def clinic_env(crm_url: str, marketing_url: str, zapi: ZapiStandIn) -> dict[str, str]:
    """The variables the shipped mappings read for tenant clinic-1: its CRM and marketing
    endpoints (signed with SIGNING_SECRET) at these URLs, its WhatsApp at the Z-API stand-in."""
    return {
        "CLINIC_1_CRM_URL": crm_url,
        "CLINIC_1_CRM_TOKEN": "Bearer crm-token",
        "CLINIC_1_CRM_SIGNING_SECRET": SIGNING_SECRET,
        "CLINIC_1_MARKETING_URL": marketing_url,
        "CLINIC_1_MARKETING_SIGNING_SECRET": SIGNING_SECRET,
        "ZAPI_BASE_URL": zapi.url,
        "CLINIC_1_ZAPI_INSTANCE": zapi.instance,
        "CLINIC_1_ZAPI_TOKEN": zapi.token,
        "CLINIC_1_ZAPI_CLIENT_TOKEN": zapi.client_token,
    }


@pytest.fixture
def zapi() -> Iterator[ZapiStandIn]:
    server = ZapiStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    worker_ctx = WorkerContext.from_settings(settings)
    context.install(worker_ctx)
    yield worker_ctx
    context.install(None)
    worker_ctx.close()


@pytest.fixture
def sweep(ctx: WorkerContext) -> SweepContext:
    return SweepContext(ctx.settings, ctx.engine, ctx.redis)


class World:
    """Rows for tests: a tenant, its events, endpoints and deliveries."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.engine: Engine = ctx.engine
        with self.engine.begin() as conn:
            self.tenant_id = conn.execute(
                insert(Tenant).values(slug="clinic-1", name="Clinic 1", created_at=utcnow())
            ).inserted_primary_key[0]
        self._versions: dict[str, int] = {}

    def endpoint(self, name: str, **fields: Any) -> EndpointConfig:
        config = EndpointConfig.model_validate(fields)
        version = self._versions.get(name, 0) + 1
        self._versions[name] = version
        with self.engine.begin() as conn:
            conn.execute(
                insert(WebhookEndpoint).values(
                    name=name,
                    kind=config.kind,
                    version=version,
                    checksum=f"test-{version}",
                    definition=config.model_dump(mode="json"),
                    active=True,
                    created_at=utcnow(),
                )
            )
        self.ctx.redis.incr(CONFIG_VERSION_KEY)
        return config

    def delivery(
        self,
        endpoint: str,
        body: Any,
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        queue: str = "default",
        correlation_id: str | None = "corr-1",
    ) -> str:
        event_id = ids.new_id(ids.EVENT)
        delivery_id = ids.new_id(ids.DELIVERY)
        request = {"method": "POST", "path": path, "headers": headers or {}, "body": body}
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                insert(IntegrationEvent).values(
                    id=event_id,
                    tenant_id=self.tenant_id,
                    source="site",
                    external_id=event_id,
                    event_type="lead.created",
                    status=EventStatus.PROCESSED,
                    correlation_id=correlation_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(WebhookDelivery).values(
                    id=delivery_id,
                    event_id=event_id,
                    tenant_id=self.tenant_id,
                    mapping="lead-created",
                    route="0",
                    endpoint=endpoint,
                    queue=queue,
                    request=self.ctx.cipher.encrypt(orjson.dumps(request)),
                    correlation_id=correlation_id,
                    created_at=now,
                    updated_at=now,
                )
            )
        return delivery_id


@pytest.fixture
def world(ctx: WorkerContext, redis: Redis) -> World:
    return World(ctx)
