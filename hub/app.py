"""The web application: `create_app(settings)` wires routes to the engine and Redis it owns.

`app_factory()` is what uvicorn imports (`hub serve`): it reads settings from the environment.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from hub import logs
from hub.db import create_db_engine
from hub.errors import HubError, RateLimited
from hub.health import create_probe_engine, health
from hub.queues import connect_redis
from hub.settings import Settings


def error_response(exc: HubError, request_id: str | None = None) -> JSONResponse:
    """The JSON error body of ARCHITECTURE.md §5."""
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "request_id": request_id or new_request_id(),
        }
    }
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 in the JSON error body of every other answer."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = HubError(str(exc.detail), code=codes.get(exc.status_code, "http_error"))
    error.status_code = exc.status_code
    response = error_response(error, getattr(request.state, "request_id", None))
    response.headers.update(exc.headers or {})
    return response


async def _hub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)
    return error_response(exc, getattr(request.state, "request_id", None))


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_db_engine(settings)
        redis = connect_redis(settings)
        health_redis = connect_redis(settings, timeout=0.5)
        health_engine = create_probe_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.redis = redis
        app.state.health_redis = health_redis
        app.state.health_engine = health_engine
        try:
            async with ingress.serving(app.state):
                yield
        finally:
            redis.close()
            health_redis.close()
            health_engine.dispose()
            engine.dispose()

    from hub import admin, ingress, simulate, status
    from hub.dashboard import create_dashboard

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        *ingress.ROUTES,
        *simulate.ROUTES,
        *admin.ROUTES,
        *status.ROUTES,
        Mount("/rq", app=create_dashboard(settings)),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HubError: _hub_error, HTTPException: _http_error},
    )


class FastIngress:
    """`POST /webhooks/{source}` straight to its handler; everything else through Starlette.

    The ingress handler answers every HubError itself, so Starlette's router and its two
    exception middlewares add nothing on the hottest path but their cost.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/webhooks/") and "/" not in path[10:] and len(path) > 10:
                from hub.ingress import receive_webhook

                scope["app"] = self.app
                scope["path_params"] = {"source": path[10:]}
                request = Request(scope, receive, send)
                try:
                    response = await receive_webhook(request)
                except Exception:  # noqa: BLE001 - as ServerErrorMiddleware would: a 500, logged
                    logging.getLogger("hub.app").exception("ingress.crashed")
                    response = error_response(HubError("internal error"), None)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_factory() -> Any:
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    return FastIngress(create_app(settings))
