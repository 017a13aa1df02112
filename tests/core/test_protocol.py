"""The HTTP protocol `hub serve` runs: uvicorn's, with a response of known length in one write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hub.core.protocol import HttpProtocol, OneWrite
from hub.local.processes import free_port


class Socket:
    """What a transport writes, write by write (the one thing OneWrite changes)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


HEAD = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


def test_a_head_with_a_content_length_goes_out_with_the_body() -> None:
    sock = Socket()
    transport = OneWrite(sock)  # type: ignore[arg-type]
    transport.write(HEAD)
    assert sock.writes == []
    transport.write(b"{}")
    assert sock.writes == [HEAD + b"{}"]


def test_what_is_held_goes_out_when_the_response_completes_or_the_connection_closes() -> None:
    sock = Socket()
    transport = OneWrite(sock)  # type: ignore[arg-type]
    transport.write(HEAD)  # a HEAD answer: no body write follows
    transport.flush()
    transport.write(HEAD)
    transport.close()
    assert sock.writes == [HEAD, HEAD]
    assert sock.closed


def test_chunked_heads_continue_and_whole_answers_are_written_at_once() -> None:
    sock = Socket()
    transport = OneWrite(sock)  # type: ignore[arg-type]
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    whole = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad"
    transport.write(chunked)
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    transport.write(whole)
    assert sock.writes == [chunked, b"HTTP/1.1 100 Continue\r\n\r\n", whole]
    assert transport.get_extra_info("peername") == "info:peername"


# -- served: what a client sees ------------------------------------------------------------------

released = threading.Event()


async def _json(request: Request) -> Response:
    return JSONResponse({"method": request.method, "body": (await request.body()).decode()})


async def _empty(_request: Request) -> Response:
    return Response(status_code=204)


async def _stream(_request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b"first;"
        while not released.is_set():
            await asyncio.sleep(0.01)
        yield b"second"

    return StreamingResponse(parts(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/json", _json, methods=["GET", "POST", "HEAD"]),
        Route("/empty", _empty),
        Route("/stream", _stream),
    ]
)


@contextmanager
def served() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=HttpProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_responses_over_one_kept_alive_connection() -> None:
    with served() as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(5):
            answer = client.post("/json", content=f"n{i}")
            assert answer.status_code == 200
            assert answer.json() == {"method": "POST", "body": f"n{i}"}
        head = client.head("/json")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        empty = client.get("/empty")
        assert empty.status_code == 204 and empty.content == b""
        assert client.get("/json").json()["method"] == "GET"  # the connection still works


def test_a_streamed_response_is_not_held_back() -> None:
    released.clear()
    with served() as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        seen = b""
        while b"first;" not in seen:  # head and first chunk arrive while the second waits
            seen += sock.recv(4096)
        assert b"transfer-encoding: chunked" in seen and b"second" not in seen
        released.set()
        while not seen.endswith(b"0\r\n\r\n"):
            seen += sock.recv(4096)
        assert b"second" in seen


def test_a_server_answer_to_a_bad_request_still_arrives() -> None:
    with served() as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        seen = b""
        while chunk := sock.recv(4096):
            seen += chunk
        assert seen.startswith(b"HTTP/1.1 400")
