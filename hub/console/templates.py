"""The console's pages as Jinja2 templates shipped in the package (`hub/console/templates/`).

`render` adds what every page needs (who is signed in, the CSRF token for its forms, the current
path); `error` answers a HubError as a page for a browser and as the JSON error body otherwise.
Filters: `since` (a time as "3 min ago"), `masked` (a header value hidden when the name says it
is a secret) and `json_html` (pretty, syntax-highlighted JSON, escaped).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.core.errors import HubError
from hub.core.models import utcnow
from hub.core.responses import error_response

FOLDER = Path(__file__).parent / "templates"
SECRET_HEADER = re.compile(r"auth|key|token|secret|signature|cookie|password|session", re.I)
JSON_TOKEN = re.compile(
    r'(?P<key>"(?:[^"\\]|\\.)*"(?=\s*:))|(?P<str>"(?:[^"\\]|\\.)*")'
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<lit>true|false|null)"
)


def since(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.rstrip("Z"))
    seconds = (utcnow() - value).total_seconds()
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def masked(value: str, name: str) -> str:
    """The header's value, or a mask when its name says it holds a secret."""
    if SECRET_HEADER.search(name):
        return "•••• (hidden)"
    return value


def json_html(value: Any) -> Markup:
    """`value` as indented JSON with spans per token kind (key, str, num, lit)."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    out: list[str] = []
    last = 0
    for match in JSON_TOKEN.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        kind = match.lastgroup
        out.append(f'<span class="j-{kind}">{escape(match.group())}</span>')
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


ENV = Environment(
    loader=FileSystemLoader(FOLDER),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(since=since, masked=masked, json_html=json_html)


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    page = ENV.get_template(name).render(
        principal=getattr(request.state, "principal", None),
        csrf=getattr(request.state, "csrf", ""),
        path=request.url.path,
        query=request.query_params,
        **context,
    )
    return HTMLResponse(
        page,
        status_code=status_code,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        },
    )


def error(request: Request, exc: HubError) -> Response:
    """A HubError as a page (browsers) or the JSON error body (anything else)."""
    request_id = getattr(request.state, "request_id", None)
    if "text/html" not in request.headers.get("accept", ""):
        return error_response(exc, request_id)
    body = error_response(exc, request_id).body
    detail = orjson.loads(body)["error"]
    return render(request, "error.html", status_code=exc.status_code, error=detail)
