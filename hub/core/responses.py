"""The error tree as HTTP answers: the JSON error body every route answers with.

    {"error": {"code": "invalid_signature", "message": "…", "request_id": "req_…"}}

with the error's status code, and `Retry-After` on a 429.
"""

from __future__ import annotations

import secrets

from starlette.responses import JSONResponse

from hub.core.errors import HubError, RateLimited


def error_response(exc: HubError, request_id: str | None = None) -> JSONResponse:
    """The JSON error body of docs/architecture.md (HTTP API)."""
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
