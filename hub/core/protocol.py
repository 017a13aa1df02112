"""The HTTP protocol `hub serve` runs: uvicorn's httptools protocol, each response of a known
length written to the socket once.

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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a OneWrite transport (`uvicorn.run(http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWrite(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
