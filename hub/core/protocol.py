"""The HTTP protocol `hub serve` runs: uvicorn's httptools protocol, each response of a known
length written to the socket once, and webhooks on a short path (`HttpProtocol`).

uvicorn writes a response's status line and headers when the app sends `http.response.start`,
and its body when the app sends `http.response.body`: two writes, two system calls, two packets
that the client reads apart. On the ingress path those two writes were a sixth of the web
process's time. Here a head that declares its `content-length` is held until the body's first
write and goes out with it; when the response is complete anything still held goes at once (a
HEAD answer, an empty body). Chunked (streaming) responses, `100 Continue` and uvicorn's own
error answers are written as uvicorn writes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HIGH_WATER_LIMIT, STATUS_LINE, HttpToolsProtocol

_HEAD = b"HTTP/1.1 "
_LENGTH = b"\r\ncontent-length: "  # uvicorn writes header names in lower case
_END = b"\r\n\r\n"


class OneWrite:
    """A transport that holds a response's head (with a content-length) for the body's write."""

    __slots__ = ("_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif (
            isinstance(data, bytes)
            and data.startswith(_HEAD)
            and data.endswith(_END)
            and _LENGTH in data
        ):
            self._held = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write what is held (the response is complete, or the connection closes)."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class BufferedApp(Protocol):
    """An ASGI app that also answers some requests read whole (`FastIngress`, for webhooks)."""

    def takes(self, method: bytes, path: bytes) -> str | None:
        """What the short path passes `buffered` for this request (None: the ASGI path)."""

    async def buffered(
        self, what: str, headers: list[tuple[bytes, bytes]], query: bytes,
        client: tuple[str, int] | None, body: bytes,
    ) -> Response: ...  # fmt: skip


class _NoEvent:
    @staticmethod
    def set() -> None:
        pass


class _Buffered:
    """A request read whole before its handler runs: the part of uvicorn's RequestResponseCycle
    that the protocol's own callbacks touch (`on_body`, `connection_lost`, `shutdown`)."""

    __slots__ = (
        "body", "more_body", "response_complete", "disconnected", "keep_alive", "what",
        "query", "headers",
    )  # fmt: skip
    message_event = _NoEvent()

    def __init__(
        self, keep_alive: bool, what: str, query: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.body = b""
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = keep_alive
        self.what = what
        self.query = query
        self.headers = headers


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a OneWrite transport (`uvicorn.run(http=...)`), with a
    short path for the requests its app `takes` (see `BufferedApp`).

    On the short path a request with a `content-length` body of at most 64 KiB (what uvicorn
    buffers without pausing the socket) is read whole, handed to the app's `buffered` and its
    response written in one piece: no ASGI scope, receive and send messages, Request or Response
    call. uvicorn's own state (keep-alive, its timeout, pipelined requests, the concurrency
    limit, shutdown) is kept as it keeps it. Anything else (a chunked or larger body,
    `Expect: 100-continue`, an upgrade, HTTP/1.0, a request pipelined behind one still
    answering) goes the ASGI path, so the app answers it as an ASGI app would.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWrite(transport)  # type: ignore[assignment]
        self._short: BufferedApp | None = self.app if hasattr(self.app, "buffered") else None

    def on_message_begin(self) -> None:
        # uvicorn's builds the ASGI scope here; the short path needs none (see _asgi_scope)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def _asgi_scope(self) -> None:
        """The scope uvicorn's on_message_begin builds, for a request read so far."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers.extend(headers)  # the scope's list

    def on_headers_complete(self) -> None:
        if self._short is not None and self._take():
            return
        self._asgi_scope()
        super().on_headers_complete()

    def _take(self) -> bool:
        """Whether the short path takes this request (its state is then set up)."""
        parser = self.parser
        path, _, query = self.url.partition(b"?")
        what = self._short.takes(parser.get_method(), path)  # type: ignore[union-attr]
        if (
            what is None
            or self.expect_100_continue
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
            or (self.cycle is not None and not self.cycle.response_complete)
            or self._over_limit()
        ):
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return False
        if length is None or not length.isdigit() or int(length) > HIGH_WATER_LIMIT:
            return False
        self.cycle = _Buffered(  # type: ignore[assignment]
            parser.should_keep_alive(), what, query, self.headers
        )
        return True

    def _over_limit(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not _Buffered:
            super().on_message_complete()
            return
        cycle.more_body = False
        task = self.loop.create_task(self._answer(cycle))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, cycle: _Buffered) -> None:
        app = self._short
        assert app is not None
        try:
            response = await app.buffered(
                cycle.what, cycle.headers, cycle.query, self.client, cycle.body
            )
            data, close = self._serialize(response)
        except Exception:  # noqa: BLE001 - as uvicorn does for an app that raises: a 500, logged
            self.logger.exception("Exception in the short path of the HTTP protocol")
            data, close = _CRASHED, True
        cycle.response_complete = True
        if cycle.disconnected:
            return
        self.transport.write(data)
        if close:
            cycle.keep_alive = False
        self.on_response_complete()
        if not cycle.keep_alive:
            self.transport.close()

    def _serialize(self, response: Response) -> tuple[bytes, bool]:
        """A complete (not streaming) response as bytes; whether it asks to close."""
        body = bytes(response.body)
        parts = [STATUS_LINE[response.status_code]]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        close = False
        length = False
        for name, value in response.raw_headers:
            if name == b"connection":
                close = value.lower() == b"close"
            elif name == b"content-length":
                length = True
            parts += (name, b": ", value, b"\r\n")
        if not length:
            parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts), close

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()


_CRASHED = (
    STATUS_LINE[500]
    + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n\r\n"
    + b"Internal Server Error"
)
