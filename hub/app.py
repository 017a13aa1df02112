"""The web application, assembled: `create_app(settings)` mounts each package's routes and owns
the engine and Redis clients they share (built in the lifespan, kept on `app.state`).

`app_factory()` is what uvicorn imports (`hub serve`): it reads settings from the environment and
puts `FastIngress` in front, so webhooks skip the router.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from hub.console.routes import CONSOLE
from hub.core import collector, logs
from hub.core.crypto import Cipher
from hub.core.db import create_db_engine
from hub.core.errors import HubError
from hub.core.queues import connect_redis
from hub.core.responses import error_response
from hub.core.settings import Settings
from hub.ingress import route as ingress
from hub.ingress.route import FastIngress
from hub.mapping import simulate
from hub.ops import admin, auditlog, erasure, openapi, status, tenant_routes
from hub.ops.dashboard import create_dashboard
from hub.ops.health import create_probe_engine, health


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
        app.state.cipher = Cipher.from_settings(settings)
        app.state.health_redis = health_redis
        app.state.health_engine = health_engine
        try:
            async with ingress.serving(app.state):
                # what start-up built lives as long as the process: out of the collector's way
                collector.settle()
                yield
        finally:
            redis.close()
            health_redis.close()
            health_engine.dispose()
            engine.dispose()

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        *ingress.ROUTES,
        *simulate.ROUTES,
        *admin.ROUTES,
        *tenant_routes.ROUTES,
        *erasure.ROUTES,
        *auditlog.ROUTES,
        *status.ROUTES,
        *openapi.ROUTES,
        CONSOLE,
        Mount("/rq", app=create_dashboard(settings)),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HubError: _hub_error, HTTPException: _http_error},
    )


def app_factory() -> Any:
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    return FastIngress(create_app(settings))
