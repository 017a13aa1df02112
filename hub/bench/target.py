"""A fast delivery target for `hub bench e2e`: answers 200 and remembers when each webhook-id
arrived (wall clock), so the bench can count duplicates and end-to-end latency afterwards."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ARRIVALS: list[tuple[str, float]] = []


async def receive(request: Request) -> Response:
    await request.body()
    ARRIVALS.append((request.headers.get("webhook-id", ""), time.time()))
    return Response(b"ok", status_code=200)


async def records(_request: Request) -> Response:
    return JSONResponse({"arrivals": ARRIVALS})


app = Starlette(
    routes=[
        Route("/_records", records, methods=["GET"]),
        Route("/{path:path}", receive, methods=["POST", "PUT", "PATCH"]),
    ]
)
