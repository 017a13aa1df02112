"""GET /health: liveness always, readiness of the database and Redis with short timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis import Redis
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse

from hub.core.db import CONNECT_TIMEOUT, check_database, create_db_engine
from hub.core.errors import HubError
from hub.core.queues import check_redis
from hub.core.settings import Settings

CHECK_TIMEOUT = 1.0  # seconds; /health must answer within about a second
PROBE_TIMEOUT = 2  # seconds a probe's socket may wait, so a hung server frees its thread


def create_probe_engine(settings: Settings) -> Engine:
    """A small engine for /health whose MySQL sockets give up quickly.

    PyMySQL waits for the server's greeting without any timeout unless `read_timeout` is set, so
    a server that accepts connections and says nothing would hold a thread forever per probe.
    """
    engine = create_db_engine(settings)
    if engine.dialect.name not in ("mysql", "mariadb"):
        return engine
    engine.dispose()
    return create_db_engine(
        settings,
        pool_size=2,
        max_overflow=2,
        connect_args={
            "connect_timeout": min(CONNECT_TIMEOUT, PROBE_TIMEOUT),
            "read_timeout": PROBE_TIMEOUT,
            "write_timeout": PROBE_TIMEOUT,
            "charset": "utf8mb4",
        },
    )


def _timed(check: Any, *args: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        check(*args)
    except HubError as exc:
        return {"status": "down", "error": exc.message}
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def _check(check: Any, *args: Any) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(asyncio.to_thread(_timed, check, *args), CHECK_TIMEOUT)
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {CHECK_TIMEOUT:.0f}s"}


async def readiness(engine: Engine, redis: Redis, settings: Settings) -> dict[str, Any]:
    database, redis_check = await asyncio.gather(
        _check(check_database, engine), _check(check_redis, redis, settings)
    )
    checks = {"database": database, "redis": redis_check}
    ok = all(c["status"] == "ok" for c in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    body = await readiness(state.health_engine, state.health_redis, state.settings)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
