"""`hub bench sync`: one sync of N items from a paged API on loopback, on scratch data.

A Starlette app under uvicorn in a thread stands in for the source system: `GET /items?page=N`
answers pages of `per_page` items (serialised once, before the clock starts). The sync is
applied for the scratch tenant and run twice in this process, as a `low` worker would: the first
run finds every item missing (each becomes an event, enqueued for the mappings), the second finds
every item already stored (all duplicates). Both are timed end to end, HTTP included.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import uvicorn
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.bench.scratch import scratch
from hub.core.crypto import Cipher
from hub.core.db import session_factory
from hub.core.errors import HubError
from hub.core.models import SyncJob
from hub.core.settings import Settings
from hub.sync.config import SyncConfig
from hub.sync.run import run_job
from hub.sync.schedule import apply_syncs

T0 = datetime(2026, 11, 1)


@dataclass
class BenchContext:
    """What a `low` worker hands a run (hub.core.context.JobContext)."""

    settings: Settings
    engine: Engine
    redis: Redis
    cipher: Cipher
    sessions: sessionmaker[Session]
    cache: dict[str, Any] = field(default_factory=dict)


class PagedSource:
    """The source system: fixed pages of items, prepared before the clock starts."""

    def __init__(self, items: int, per_page: int) -> None:
        self.pages: list[bytes] = []
        for start in range(0, items, per_page):
            data = [
                {
                    "id": f"bench-{n:07d}",
                    "type": "client.updated",
                    "updated_at": (T0 + timedelta(seconds=n)).isoformat() + "Z",
                    "client": {"id": f"CLI-{n}", "name": f"Client {n}", "plan": "premium"},
                }
                for n in range(start, min(start + per_page, items))
            ]
            self.pages.append(orjson.dumps({"data": data}))
        self.empty = orjson.dumps({"data": []})
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = Starlette(routes=[Route("/items", self._page, methods=["GET"])])
        config = uvicorn.Config(app, log_level="error", lifespan="off", ws="none", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    async def _page(self, request: Request) -> Response:
        number = int(request.query_params.get("page") or 1)
        body = self.pages[number - 1] if 0 < number <= len(self.pages) else self.empty
        return Response(body, media_type="application/json")

    def __enter__(self) -> PagedSource:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise HubError("bench: the source stand-in did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()


def bench_sync(
    settings: Settings,
    *,
    items: int = 50_000,
    per_page: int = 100,
    redis_db: int = 14,
    keep: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    with scratch(settings, redis_db=redis_db, keep=keep) as env:
        config = SyncConfig.model_validate(
            {
                "source": "crm",
                "schedule": "15m",
                "request": {"url": "http://127.0.0.1", "path": "/items"},
                "pagination": {"kind": "page", "param": "page"},
                "window": {"param": "updated_since", "field": "$.updated_at"},
                "items": "$.data",
                "event_id": {"jsonpath": "$.id"},
                "event_type": {"jsonpath": "$.type"},
            }
        )
        progress(f"sync: preparing {items} items in pages of {per_page}")
        with PagedSource(items, per_page) as source:
            config = config.model_copy(
                update={"request": config.request.model_copy(update={"url": source.url})}
            )
            apply_syncs(env.engine, {"bench": config})
            with Session(env.engine) as session:
                job_id = session.scalar(select(SyncJob.id).where(SyncJob.name == "bench"))
            assert job_id is not None
            ctx = BenchContext(
                env.settings,
                env.engine,
                env.redis,
                Cipher.from_settings(env.settings),
                session_factory(env.engine),
            )
            report: dict[str, Any] = {
                "benchmark": "sync",
                "items": items,
                "pages": len(source.pages),
                "database": env.database_label,
                "redis": env.redis_label,
            }
            for label in ("missed", "duplicates"):
                progress(f"sync: run with every item {label}")
                started = time.perf_counter()
                result = run_job(ctx, job_id, trigger="manual", since=T0)
                seconds = time.perf_counter() - started
                if result is None or not result.ok:
                    raise HubError(f"bench: the sync run failed: {result and result.error}")
                p = result.progress
                report[f"run_{label}"] = {
                    "seconds": round(seconds, 2),
                    "items_per_s": round(p.items / seconds),
                    "created": p.created,
                    "duplicates": p.duplicates,
                    "requests": p.pages,
                }
            for value in ctx.cache.values():
                value.close()
    return report
