"""The one-request HTTP sends of the webhook, zapi and WhatsApp Cloud adapters, on urllib3.

Each sending thread keeps its own connections (a urllib3 connection pool per thread and
origin, holding one kept-alive connection): a send is synchronous on its thread, so it never
waits for another's connection, and no pool is shared under a lock. An endpoint's URL is parsed
once, not on every send (urllib3's PoolManager parses and keys each request anew).
Connections are made only where the egress policy allows (hub.delivery.egress), TLS verifies
the host name against one shared context, at most MAX_RESPONSE_BYTES of an answer are read,
and nothing is retried or redirected here (a retry is the delivery's next attempt).

Why urllib3 and not httpx, which the Calendar adapter keeps (authlib's OAuth client is built on
it): a 1 KB POST to `hub.bench.target` on loopback took 266 µs of the sending thread's CPU on
urllib3 against 606 µs on httpx on this project's machine, and sends were a third of a
worker's time.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import LocationValueError, URLSchemeUnknown
from urllib3.util import parse_url

from hub.delivery.egress import EgressPolicy, guarded_pools

MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer
USER_AGENT = "hub-webhooks/0.1"
PARSED_URLS = 1000  # parsed URLs kept (an endpoint's URL, with each route's path)

Origin = tuple[str, str, int | None]  # scheme, host, port


@dataclass(frozen=True)
class Answer:
    status: int
    text: str  # at most MAX_RESPONSE_BYTES of the body, decoded leniently
    retry_after: str | None


def tls_context() -> ssl.SSLContext:
    """Certificates from SSL_CERT_FILE when set (as httpx and OpenSSL read it), else certifi's."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class Senders:
    """The sending threads' connection pools of one process.

    `send` raises urllib3's errors (`urllib3.exceptions.HTTPError`) and EgressRefused; the
    adapters turn them into outcomes. The pools of a thread that has ended are closed when the
    next thread makes its own."""

    def __init__(self, egress: EgressPolicy | None = None) -> None:
        self.egress = egress or EgressPolicy()
        self._plain, self._secure = guarded_pools(self.egress)
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._pools: dict[int, dict[Origin, HTTPConnectionPool]] = {}  # by thread
        self._parsed: dict[str, tuple[Origin, str]] = {}  # url -> its origin and target
        self._lock = threading.Lock()

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Answer:
        origin, target = self._parse(url)
        headers.setdefault("User-Agent", USER_AGENT)
        response = self._pool(origin).urlopen(
            method,
            target,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            data = response.read(MAX_RESPONSE_BYTES)
            if len(data) >= MAX_RESPONSE_BYTES:  # more may follow: the connection is not reused
                response.close()
        finally:
            response.release_conn()
        return Answer(
            response.status, data.decode("utf-8", "replace"), response.headers.get("retry-after")
        )

    def _parse(self, url: str) -> tuple[Origin, str]:
        found = self._parsed.get(url)
        if found is None:
            parsed = parse_url(url)  # LocationParseError
            scheme = (parsed.scheme or "").lower()
            if scheme not in ("http", "https"):
                raise URLSchemeUnknown(scheme)
            if not parsed.host:
                raise LocationValueError("no host in the URL")
            found = (scheme, parsed.host, parsed.port), parsed.request_uri
            if len(self._parsed) >= PARSED_URLS:
                self._parsed.clear()
            self._parsed[url] = found
        return found

    def _pool(self, origin: Origin) -> HTTPConnectionPool:
        mine: dict[Origin, HTTPConnectionPool] | None = getattr(self._local, "pools", None)
        if mine is None:
            mine = self._local.pools = self._new_thread()
        pool = mine.get(origin)
        if pool is None:
            scheme, host, port = origin
            if scheme == "https":
                pool = self._secure(host, port, maxsize=1, block=False, ssl_context=self._context())
            else:
                pool = self._plain(host, port, maxsize=1, block=False)
            mine[origin] = pool
        return pool

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = tls_context()  # loading the CA bundle takes a while: once
            return self._tls

    def _new_thread(self) -> dict[Origin, HTTPConnectionPool]:
        """This thread's pools; the pools of threads that have ended are closed."""
        pools: dict[Origin, HTTPConnectionPool] = {}
        with self._lock:
            alive = {thread.ident for thread in threading.enumerate()}
            ident = threading.get_ident()
            for ended in [i for i in self._pools if i not in alive or i == ident]:
                for pool in self._pools.pop(ended).values():  # `ident`: reused from an ended one
                    pool.close()
            self._pools[ident] = pools
        return pools

    def connections(self) -> int:
        """Connections kept open by every thread's pools (for tests and diagnostics)."""
        with self._lock:
            pools = [pool for mine in self._pools.values() for pool in mine.values()]
        return len(
            [
                conn
                for pool in pools
                for conn in list(pool.pool.queue)  # type: ignore[union-attr]
                if conn is not None and conn.sock is not None
            ]
        )

    def close(self) -> None:
        with self._lock:
            for mine in self._pools.values():
                for pool in mine.values():
                    pool.close()
            self._pools.clear()
        self._local = threading.local()
