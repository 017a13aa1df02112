"""The one-request HTTP sends of the webhook, zapi and WhatsApp Cloud adapters, on urllib3.

Each sending thread keeps its own connections (a `urllib3.PoolManager` per thread, one kept-alive
connection per host): a send is synchronous on its thread, so it never waits for another's
connection, and no pool is shared under a lock. Connections are made only where the egress
policy allows (hub.delivery.egress), TLS verifies the host name against one shared context, at
most MAX_RESPONSE_BYTES of an answer are read, and nothing is retried or redirected here (a
retry is the delivery's next attempt).

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

from hub.delivery.egress import EgressPolicy, guarded_pools

MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer
USER_AGENT = "hub-webhooks/0.1"


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
    adapters turn them into outcomes. A pool manager whose thread has ended is cleared when the
    next is made."""

    def __init__(self, egress: EgressPolicy | None = None) -> None:
        self.egress = egress or EgressPolicy()
        self._pool_classes = guarded_pools(self.egress)
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._managers: dict[int, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Answer:
        headers.setdefault("User-Agent", USER_AGENT)
        response = self._manager().urlopen(
            method,
            url,
            body=body,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
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

    def _manager(self) -> urllib3.PoolManager:
        manager: urllib3.PoolManager | None = getattr(self._local, "manager", None)
        if manager is None:
            manager = self._local.manager = self._new()
        return manager

    def _new(self) -> urllib3.PoolManager:
        with self._lock:
            if self._tls is None:
                self._tls = tls_context()  # loading the CA bundle takes a while: once
            manager = urllib3.PoolManager(
                num_pools=16, maxsize=1, block=False, ssl_context=self._tls
            )
            manager.pool_classes_by_scheme = self._pool_classes
            alive = {thread.ident for thread in threading.enumerate()}
            for ident in [ident for ident in self._managers if ident not in alive]:
                self._managers.pop(ident).clear()
            ident = threading.get_ident()
            if ident in self._managers:  # an ended thread's, whose ident this thread reuses
                self._managers[ident].clear()
            self._managers[ident] = manager
        return manager

    def connections(self) -> int:
        """Connections kept open by every thread's pools (for tests and diagnostics)."""
        with self._lock:
            pools = [m.pools[key] for m in self._managers.values() for key in m.pools.keys()]
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
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()
        self._local = threading.local()
