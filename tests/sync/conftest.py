"""A stand-in for the CRM's API on loopback, and sync jobs applied for a tenant.

`CrmApi` is a small Starlette app under uvicorn in a thread. `GET /events` lists its items
(`updated_since` filters them) in one of three paginations, chosen by `mode`: `page`
(`?page=N&per_page=K`), `cursor` (`next_cursor` in the body) or `link` (a `Link` header). A
script of misbehaviours (status, headers, body, delay) is served first, one per request; `hold`
makes page number `hold_page` wait until released (a run caught mid-way).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import uvicorn
import yaml
from sqlalchemy import Engine, insert, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.core.models import SyncJob, Tenant, utcnow
from hub.sync.config import SyncConfig
from hub.sync.schedule import apply_syncs
from tests.delivery.conftest import ctx, sweep  # noqa: F401 - the same fixtures here

T0 = datetime(2026, 11, 1, 12, 0, 0)


def item(n: int, updated: datetime | None = None) -> dict[str, Any]:
    """A CRM event as its webhook body would be: `id` and `event` like sources.yaml's crm."""
    when = updated or T0 + timedelta(minutes=n)
    return {
        "id": f"crm-evt-{n:05d}",
        "event": "client.registered",
        "updated_at": when.isoformat() + "Z",
        "client": {"id": f"CLI-{n}", "name": f"Client {n}", "cpf": "52998224725",
                   "monthly_fee": 100},
    }  # fmt: skip


@dataclass
class Misbehave:
    status: int = 500
    body: bytes = b'{"error": "boom"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request_:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class CrmApi:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.mode = "page"
        self.per_page = 100
        self.script: list[Misbehave] = []
        self.seen: list[Request_] = []
        self.hold_page: int | None = None
        self.held = threading.Event()  # set when the held page was asked for
        self.release = threading.Event()
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/events", self._events, methods=["GET"])])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="error", lifespan="off", ws="none", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def requests_for_pages(self) -> list[Request_]:
        return [r for r in self.seen if r.path == "/events"]

    async def _events(self, request: Request) -> Response:
        params = dict(request.query_params)
        with self._lock:
            self.seen.append(Request_(request.url.path, params, dict(request.headers)))
            bad = self.script.pop(0) if self.script else None
        if bad is not None:
            if bad.delay:
                await asyncio.sleep(bad.delay)
            return Response(bad.body, bad.status, headers=bad.headers)
        chosen = self.items
        since = params.get("updated_since")
        if since:
            chosen = [i for i in chosen if i["updated_at"] >= since]
        if self.mode == "cursor":
            start = int(params.get("cursor") or 0)
        elif self.mode == "link":
            start = (int(params.get("p") or 1) - 1) * self.per_page
        else:
            start = (int(params.get("page") or 1) - 1) * self.per_page
        page_number = start // self.per_page + 1
        if self.hold_page == page_number:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        data = chosen[start : start + self.per_page]
        more = start + self.per_page < len(chosen)
        body: dict[str, Any] = {"data": data}
        headers = {"content-type": "application/json"}
        if self.mode == "cursor":
            body["next_cursor"] = str(start + self.per_page) if more else None
        if self.mode == "link" and more:
            query = f"p={page_number + 1}" + (f"&updated_since={since}" if since else "")
            headers["link"] = f'<{self.url}/events?{query}>; rel="next"'
        return Response(orjson.dumps(body), 200, headers=headers)

    def start(self) -> CrmApi:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("CRM stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def crm() -> Iterator[CrmApi]:
    server = CrmApi().start()
    yield server
    server.stop()


def add_tenant(engine: Engine, slug: str) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Tenant).values(slug=slug, name=slug, active=True, created_at=utcnow())
            ).inserted_primary_key[0]
        )


def sync_config(crm: CrmApi, **overrides: Any) -> SyncConfig:
    raw: dict[str, Any] = {
        "source": "crm",
        "schedule": "15m",
        "request": {"url": crm.url, "path": "/events", "timeout": "2s"},
        "pagination": {"kind": "page", "param": "page"},
        "window": {"param": "updated_since", "field": "$.updated_at", "overlap": "10m"},
        "items": "$.data",
        "event_id": {"jsonpath": "$.id"},
        "event_type": {"jsonpath": "$.event"},
        "retry": {"max_attempts": 3, "base": "10ms", "max_delay": "1s"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return SyncConfig.model_validate(yaml.safe_load(orjson.dumps(raw)))


def job_id(engine: Engine, name: str = "crm-events", slug: str = "clinic-1") -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(SyncJob.id)
                .join(Tenant, Tenant.id == SyncJob.tenant_id)
                .where(SyncJob.name == name, Tenant.slug == slug)
            )
        )


def job(engine: Engine, jid: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(SyncJob).where(SyncJob.id == jid)).one()


@pytest.fixture
def tenant(engine: Engine) -> int:
    return add_tenant(engine, "clinic-1")


def applied(engine: Engine, crm: CrmApi, name: str = "crm-events", **overrides: Any) -> int:
    apply_syncs(engine, {name: sync_config(crm, **overrides)})
    return job_id(engine, name)
