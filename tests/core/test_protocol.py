"""The HTTP protocol `hub serve` runs: uvicorn's, with a response of known length in one write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
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


async def _asgi_short(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"path": "asgi", "name": request.path_params["name"], "size": len(body)})


app = Starlette(
    routes=[
        Route("/json", _json, methods=["GET", "POST", "HEAD"]),
        Route("/empty", _empty),
        Route("/stream", _stream),
        Route("/short/{name}", _asgi_short, methods=["POST"]),
    ]
)


class ShortPathApp:
    """The app above, which also takes `POST /short/{name}` on the protocol's short path
    (hub.core.protocol.BufferedApp, as FastIngress takes webhooks)."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    @staticmethod
    def takes(method: bytes, path: bytes) -> str | None:
        if method == b"POST" and path.startswith(b"/short/"):
            return path[7:].decode()
        return None

    async def buffered(
        self,
        what: str,
        headers: list[tuple[bytes, bytes]],
        query: bytes,
        client: tuple[str, int] | None,
        body: bytes,
    ) -> Response:
        self.taken.append(what)
        if what == "crash":
            raise RuntimeError("the handler failed")
        if what == "slow":
            await asyncio.sleep(0.3)
        if what == "bye":
            return Response(b"bye", headers={"Connection": "close"})
        return JSONResponse(
            {
                "path": "short",
                "name": what,
                "query": query.decode(),
                "size": len(body),
                "peer": client[0] if client else None,
                "agent": dict(headers).get(b"user-agent", b"").decode(),
            }
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)


@contextmanager
def running(asgi: Any) -> Iterator[tuple[uvicorn.Server, threading.Thread, int]]:
    """uvicorn serving `asgi` over HttpProtocol in a thread: the server, its thread, its port."""
    port = free_port()
    config = uvicorn.Config(
        asgi,
        host="127.0.0.1",
        port=port,
        http=HttpProtocol,
        log_level="warning",
        lifespan="off",
        proxy_headers=False,  # as `hub serve`: a wrapped app is not the one that takes requests
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield server, thread, port
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def served(asgi: Any = app) -> Iterator[int]:
    with running(asgi) as (_server, _thread, port):
        yield port


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


# -- the short path: a request read whole, answered in one piece ---------------------------------


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` complete answers (each with a content-length) from `sock`, in order."""
    seen, answers = b"", list[bytes]()
    while len(answers) < count:
        head_end = seen.find(b"\r\n\r\n")
        if head_end >= 0:
            head = seen[:head_end].decode()
            length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
            end = head_end + 4 + length
            if len(seen) >= end:
                answers.append(seen[:end])
                seen = seen[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(answers)} answers"
        seen += chunk
    return answers


def test_requests_the_app_takes_are_answered_on_the_short_path_over_a_kept_alive_connection() -> (
    None
):
    short = ShortPathApp()
    with served(short) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(3):
            answer = client.post(f"/short/n{i}?x=1", content=b"{}", headers={"User-Agent": "t"})
            assert answer.status_code == 200
            assert answer.json() == {
                "path": "short", "name": f"n{i}", "query": "x=1", "size": 2,
                "peer": "127.0.0.1", "agent": "t",
            }  # fmt: skip
            assert answer.headers["server"] == "uvicorn" and "date" in answer.headers
        assert client.get("/json").json()["method"] == "GET"  # the ASGI path, same connection
        assert client.post("/short/again", content=b"x").json()["path"] == "short"
        assert client.post("/json", content=b"plain").json()["body"] == "plain"
    assert short.taken == ["n0", "n1", "n2", "again"]


def test_what_the_short_path_does_not_read_whole_goes_the_asgi_path() -> None:
    short = ShortPathApp()
    with served(short) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        large = client.post("/short/large", content=b"x" * (64 * 1024 + 1))
        assert large.json() == {"path": "asgi", "name": "large", "size": 64 * 1024 + 1}
        chunked = client.post("/short/chunked", content=iter([b"ab", b"cd"]))
        assert chunked.json() == {"path": "asgi", "name": "chunked", "size": 4}
        expect = client.post("/short/expect", content=b"ab", headers={"Expect": "100-continue"})
        assert expect.json()["path"] == "asgi"
    with served(short) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /short/old HTTP/1.0\r\ncontent-length: 2\r\n\r\nab")
        assert b'"path":"asgi"' in read_answers(sock, 1)[0]
    assert short.taken == []


def test_pipelined_requests_are_answered_in_order() -> None:
    short = ShortPathApp()
    with served(short) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = b"POST /short/%s HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
        sock.sendall(
            request % b"slow" + request % b"next" + b"GET /json HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        first, second, third = read_answers(sock, 3)
    assert b'"name":"slow"' in first and b'"path":"short"' in first
    # behind one still answering, a request waits its turn on the ASGI path
    assert b'"name":"next"' in second and b'"path":"asgi"' in second
    assert b'"method":"GET"' in third
    assert short.taken == ["slow"]


def test_a_close_asked_by_either_side_closes_after_the_answer() -> None:
    short = ShortPathApp()
    with served(short) as port:
        for request in (
            b"POST /short/one HTTP/1.1\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
            b"POST /short/bye HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                seen = b""
                while chunk := sock.recv(4096):  # ends: the server closed
                    seen += chunk
                assert seen.startswith(b"HTTP/1.1 200") and seen.count(b"HTTP/1.1") == 1
    assert short.taken == ["one", "bye"]


def test_a_handler_that_raises_gets_a_500_and_the_server_goes_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    short = ShortPathApp()
    with served(short) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        crashed = client.post("/short/crash", content=b"{}")
        assert crashed.status_code == 500 and crashed.headers["connection"] == "close"
        assert client.post("/short/after", content=b"{}").json()["name"] == "after"
    assert "RuntimeError: the handler failed" in capfd.readouterr().err  # uvicorn's log


def test_a_client_gone_before_its_answer_costs_nothing_else() -> None:
    short = ShortPathApp()
    with served(short) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /short/slow HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
        time.sleep(0.5)  # the handler finishes after the client left
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.post("/short/later", content=b"{}").json()["name"] == "later"
    assert short.taken == ["slow", "later"]


def test_a_shutdown_answers_the_request_in_hand_then_closes() -> None:
    short = ShortPathApp()
    with running(short) as (server, thread, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /short/slow HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
            time.sleep(0.1)  # in the handler
            server.should_exit = True
            seen = b""
            while chunk := sock.recv(4096):
                seen += chunk
        thread.join(10)
        assert not thread.is_alive()
    assert seen.startswith(b"HTTP/1.1 200") and b'"name":"slow"' in seen
