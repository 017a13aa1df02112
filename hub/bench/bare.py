"""The ceiling: a bare Starlette endpoint that answers 202 without storing anything."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ACCEPTED = b'{"event_id":"evt_bare","status":"accepted"}'


async def accept(request: Request) -> Response:
    await request.body()
    return Response(ACCEPTED, status_code=202, media_type="application/json")


app = Starlette(routes=[Route("/webhooks/{source}", accept, methods=["POST"])])


async def health(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app.router.routes.append(Route("/health", health, methods=["GET"]))
