"""rq-dashboard inside the web app, at `/rq`, behind the operator key.

rq-dashboard is a Flask blueprint; it runs here as a WSGI app wrapped for ASGI by a2wsgi and
mounted by `hub.app`. Browsers authenticate with HTTP Basic (any user name, the operator key as
password): a 401 carries `WWW-Authenticate` so the browser asks. Requests that change something
(POST: requeue, delete, empty) from a page of another origin are refused, since a browser sends
the Basic credentials along with any cross-site form.

Requeuing a failed job re-runs the same job function with the same ids: hub's jobs read the
database state of each id first, so a requeued replay or delivery ends in a correct state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from a2wsgi import WSGIMiddleware
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.core.errors import Forbidden, HubError, Unauthorized
from hub.core.queues import SERIALIZER, redis_url
from hub.core.responses import error_response
from hub.core.settings import Settings
from hub.ingress.principals import authenticate

REALM = 'Basic realm="hub operator key", charset="UTF-8"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONSOLE_LINK = (
    '<div style="padding:6px 16px;background:#111827"><a href="/console" '
    'style="color:#fff">← hub console</a></div>'
)


def create_flask_app(settings: Settings) -> object:
    """The rq-dashboard Flask app for hub's Redis (imported lazily: Flask is only needed here)."""
    import rq_dashboard
    from flask import Flask
    from rq_dashboard.web import config as dashboard_config
    from rq_dashboard.web import setup_rq_connection

    dashboard_config.serializer = SERIALIZER  # hub's jobs are JSON

    # the app's own static route serves the blueprint's folder: both build /static/... URLs
    static = Path(rq_dashboard.__file__).parent / "static"
    app = Flask("hub.ops.dashboard", static_folder=str(static), static_url_path="/static")
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url(settings)
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = 5000
    app.register_blueprint(rq_dashboard.blueprint)
    setup_rq_connection(app)

    @app.after_request
    def link_to_console(response: Any) -> Any:
        """A link back to the hub console on every page (the console links here too)."""
        if response.mimetype == "text/html" and not response.direct_passthrough:
            page = response.get_data(as_text=True)
            response.set_data(page.replace("<body>", "<body>" + CONSOLE_LINK, 1))
        return response

    return app


def _same_origin(headers: Headers) -> bool:
    origin = headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == headers.get("host")


class OperatorOnly:
    """ASGI middleware: only requests with a valid operator key reach `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            await authenticate(request, operator_only=True)
            if request.method not in SAFE_METHODS and not _same_origin(request.headers):
                raise Forbidden("the dashboard takes changes only from its own pages")
        except HubError as exc:
            response = error_response(exc)
            if isinstance(exc, Unauthorized):
                response.headers["WWW-Authenticate"] = REALM
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_dashboard(settings: Settings) -> ASGIApp:
    """The mountable ASGI app: rq-dashboard behind `OperatorOnly`."""
    flask_app = create_flask_app(settings)
    return OperatorOnly(WSGIMiddleware(flask_app))  # type: ignore[arg-type]
