"""A fast delivery target for `hub bench e2e`: answers 200 and remembers when each webhook-id
arrived (wall clock), so the bench can count duplicates and end-to-end latency afterwards.

A bare ASGI app, without a framework's routing: it shares the machine's cores with what it
measures, so the less it costs, the more of the figure is hub's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

ARRIVALS: list[tuple[str, float]] = []

_OK = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
_OK_BODY = {"type": "http.response.body", "body": b"ok"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":  # startup: nothing to do
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET" and scope["path"] == "/_records":
        body = orjson.dumps({"arrivals": ARRIVALS})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:  # the body, read and dropped
        message = await receive()
        more = message.get("more_body", False)
    webhook_id = next((v for k, v in scope["headers"] if k == b"webhook-id"), b"")
    ARRIVALS.append((webhook_id.decode(), time.time()))
    await send(_OK)
    await send(_OK_BODY)
