"""A fast delivery target for `hub bench e2e`: answers 200 and remembers when each webhook-id
arrived (wall clock), so the bench can count duplicates and end-to-end latency afterwards.

An asyncio protocol over httptools' parser (what uvicorn uses), without uvicorn's ASGI cycle:
it shares the machine's cores with what it measures, so the less it costs, the more of the
figure is hub's. `GET /_records` answers the arrivals as JSON.

    python -m hub.bench.target --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import httptools
import orjson

ARRIVALS: list[tuple[str, float]] = []
_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"


class _Target(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.webhook_id = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() == b"GET" and self.url == b"/_records":
            body = orjson.dumps({"arrivals": ARRIVALS})
            self.transport.write(_JSON_HEAD % len(body) + body)
        else:
            ARRIVALS.append((self.webhook_id.decode(), time.time()))
            self.transport.write(_OK)
        self.url = self.webhook_id = b""
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Target, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
