"""Faults for tests: a TCP proxy on loopback that can cut every connection through it.

    with TcpProxy("127.0.0.1", 3306) as proxy:       # point hub at proxy.port instead
        ...
        proxy.cut()       # every open connection is reset, new ones are accepted and reset
        ...
        proxy.restore()   # connections go through again

A cut is what a service restart or a network partition looks like to a client: the connection
drops (RST), and reconnecting fails until the service is back.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType

from sqlalchemy.engine import make_url

BUFFER = 65536


def redis_proxy(url: str) -> TcpProxy:
    """A proxy in front of the Redis at `url` (redis://host:port/db or unix://path)."""
    if url.startswith("unix://"):
        return TcpProxy(url.removeprefix("unix://").split("?", 1)[0])
    parsed = make_url(url.replace("redis://", "mysql://", 1))
    return TcpProxy(parsed.host or "127.0.0.1", parsed.port or 6379)


def database_proxy(url: str) -> TcpProxy:
    """A proxy in front of the MySQL/MariaDB server of `url`."""
    parsed = make_url(url)
    return TcpProxy(parsed.host or "127.0.0.1", parsed.port or 3306)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, one thread per connection."""

    def __init__(self, target_host: str, target_port: int = 0) -> None:
        """`target_host` may be a unix socket path (then `target_port` is ignored)."""
        self.target: tuple[str, int] | str = (
            target_host if target_host.startswith("/") else (target_host, target_port)
        )
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._closed = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def url_for(self, url: str) -> str:
        """`url` (a database or Redis URL) with its host and port replaced by the proxy's."""
        if url.startswith("unix://"):
            db = url.split("db=", 1)[1].split("&", 1)[0] if "db=" in url else "0"
            return f"redis://127.0.0.1:{self.port}/{db}"
        if url.startswith("redis://"):
            rest = url.removeprefix("redis://").split("/", 1)
            db = rest[1] if len(rest) > 1 else "0"
            return f"redis://127.0.0.1:{self.port}/{db}"
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(False)

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        """Reset every connection and every new one until `restore()`."""
        self._cut.set()
        with self._lock:
            sockets = list(self._open)
            self._open.clear()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = self._connect()
            except OSError:
                _reset(client)
                continue
            self.accepted += 1
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(
                target=self._pipe, args=(client, upstream), name="tcp-proxy-pipe", daemon=True
            ).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target, timeout=5)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            try:
                for sock in peers:  # a cut may have reset them before this thread ran
                    sock.setblocking(False)
                    sel.register(sock, selectors.EVENT_READ)
                while not self._cut.is_set():
                    for key, _ in sel.select(timeout=0.2):
                        src: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = src.recv(BUFFER)
                        if not data:
                            raise ConnectionResetError
                        peers[src].setblocking(True)
                        peers[src].sendall(data)
                        peers[src].setblocking(False)
            except (OSError, ValueError):  # ValueError: registering a socket closed meanwhile
                pass
        with self._lock:
            self._open.discard(client)
            self._open.discard(upstream)
        _reset(client)
        _reset(upstream)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed server or a dropped route looks."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
