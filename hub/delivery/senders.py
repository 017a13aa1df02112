"""The one-request HTTP sends of the webhook, zapi and WhatsApp Cloud adapters, on libcurl.

Each sending thread keeps its own curl handle, whose connection cache keeps its connections
alive: a send is synchronous on its thread, so it never waits for another's connection, and
nothing is shared under a lock. libcurl does the request and reads the answer in C with the GIL
released; Python runs only to set the options and in three callbacks (the answer's body, its
header lines, a new connection's socket).

Connections are made only where the egress policy allows (hub.delivery.egress): the host is
resolved by the policy (its answer kept `RESOLVED_TTL` seconds) and curl is handed those
addresses only (`CURLOPT_RESOLVE`), and each socket curl opens is checked against them again, so
no other address is ever connected to (no redirects, no proxies, http and https only). TLS
verifies the certificate and the host name against SSL_CERT_FILE or certifi's bundle. At most
MAX_RESPONSE_BYTES of an answer are read (the connection is then dropped), a send takes at most
its timeout in all, and nothing is retried here (a retry is the delivery's next attempt).

Why libcurl (pycurl) and not urllib3 or httpx (which the Calendar adapter keeps: authlib's OAuth
client is built on it): a 1 KB POST to `hub.bench.target` on loopback took 84-103 µs of the
sending thread's CPU on pycurl, 466-527 µs on urllib3 and about twice that on httpx on this
project's machine, and sends were a third of a worker's time.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import certifi
import pycurl
from urllib3.exceptions import LocationValueError
from urllib3.util import parse_url

from hub.delivery.egress import EgressPolicy

MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer
USER_AGENT = "hub-webhooks/0.1"
PARSED_URLS = 1000  # parsed URLs kept (an endpoint's URL, with each route's path)
RESOLVED_TTL = 30.0  # seconds a host's checked addresses are kept
_PROTOCOLS = pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS

Origin = tuple[str, str, int, bool]  # scheme, host, port, whether the host is an address


@dataclass(frozen=True)
class Answer:
    status: int
    text: str  # at most MAX_RESPONSE_BYTES of the body, decoded leniently
    retry_after: str | None


class SendFailed(Exception):
    """A send that got no answer. `kind`: "timeout", "connection_error" or "invalid_url" (its
    message never quotes the URL: a Z-API URL carries its token)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def ca_bundle() -> str:
    """Certificates from SSL_CERT_FILE when set (as httpx and OpenSSL read it), else certifi's."""
    return os.environ.get("SSL_CERT_FILE") or certifi.where()


def tls_context() -> ssl.SSLContext:
    """The same certificates as a context, for the clients that are not curl's."""
    return ssl.create_default_context(cafile=ca_bundle())


@dataclass
class _Handle:
    """One sending thread's curl handle, and what its callbacks gather during a send."""

    curl: Any = field(default_factory=pycurl.Curl)
    body: bytearray = field(default_factory=bytearray)
    over: bool = False  # the answer was longer than MAX_RESPONSE_BYTES
    retry_after: str | None = None
    addresses: tuple[str, ...] = ()  # where this send may connect
    other_method: bool = False  # the last send was not a POST: its options must go
    secure: bool = False  # the CA bundle is set

    def __post_init__(self) -> None:
        self.setup()

    def setup(self) -> None:
        """The options every send shares (its connections and caches stay)."""
        curl = self.curl
        curl.reset()
        curl.setopt(pycurl.OPENSOCKETFUNCTION, self.open_socket)
        curl.setopt(pycurl.PROTOCOLS, _PROTOCOLS)
        curl.setopt(pycurl.PROXY, "")  # never the environment's proxies
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.WRITEFUNCTION, self.write)
        curl.setopt(pycurl.HEADERFUNCTION, self.header)
        self.other_method = self.secure = False

    def write(self, chunk: bytes) -> int | None:
        room = MAX_RESPONSE_BYTES - len(self.body)
        if len(chunk) > room:
            self.body += chunk[:room]
            self.over = True
            return 0  # curl stops reading (and drops the connection)
        self.body += chunk
        return None

    def header(self, line: bytes) -> None:
        if line[:12].lower() == b"retry-after:":
            self.retry_after = line[12:].decode("latin-1").strip()
        elif line.startswith(b"HTTP/"):  # a new answer (after a 1xx): its own headers
            self.retry_after = None

    def open_socket(self, _purpose: int, address: Any) -> Any:
        """A socket for one of this send's checked addresses; any other is refused."""
        if _canonical(str(address.addr[0])) not in self.addresses:
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)


class Senders:
    """The sending threads' curl handles of one process.

    `send` raises SendFailed and EgressRefused; the adapters turn them into outcomes. The
    handles of a thread that has ended are closed when the next thread makes its own."""

    def __init__(self, egress: EgressPolicy | None = None) -> None:
        self.egress = egress or EgressPolicy()
        self._cafile = ca_bundle()
        self._local = threading.local()
        self._handles: dict[int, _Handle] = {}  # by thread
        self._parsed: dict[str, Origin] = {}  # url -> its origin
        self._resolved: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, timeout: float
    ) -> Answer:
        scheme, host, port, literal = self._parse(url)
        addresses = self._addresses(host, port)  # EgressRefused: nothing is sent
        handle = self._handle()
        handle.body = bytearray()
        handle.over = False
        handle.retry_after = None
        handle.addresses = addresses
        curl = handle.curl
        if handle.other_method:  # the last send set a method's options: start afresh
            handle.setup()
        curl.setopt(pycurl.URL, url)
        # a name resolves to the checked addresses only (an address is not resolved at all)
        resolve = [] if literal else [f"{host}:{port}:{','.join(_bracketed(addresses))}"]
        curl.setopt(pycurl.RESOLVE, resolve)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
        curl.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        if scheme == "https" and not handle.secure:
            curl.setopt(pycurl.CAINFO, self._cafile)
            handle.secure = True
        lines = [f"{name}: {value}" if value else f"{name};" for name, value in headers.items()]
        lines.append("Expect:")  # no 100-continue round trip before a body
        names = {name.lower() for name in headers}
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        handle.other_method = method != "POST"
        if method == "GET" and not body:
            curl.setopt(pycurl.HTTPGET, 1)
        elif method == "HEAD":
            curl.setopt(pycurl.NOBODY, 1)
        else:
            curl.setopt(pycurl.POSTFIELDS, body)
            if method != "POST":
                curl.setopt(pycurl.CUSTOMREQUEST, method)
            if "content-type" not in names:
                lines.append("Content-Type:")  # not curl's form default
        curl.setopt(pycurl.HTTPHEADER, lines)
        try:
            curl.perform()
        except pycurl.error as exc:
            code, message = exc.args[0], str(exc.args[1])
            if not (code == pycurl.E_WRITE_ERROR and handle.over):  # else: the answer, cut
                raise _failure(code, message) from None
        status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        text = handle.body.decode("utf-8", "replace")
        return Answer(status, text, handle.retry_after)

    def _parse(self, url: str) -> Origin:
        found = self._parsed.get(url)
        if found is None:
            try:
                parsed = parse_url(url)
            except LocationValueError as exc:  # not str(exc): it may quote the URL
                raise SendFailed("invalid_url", type(exc).__name__) from None
            scheme = (parsed.scheme or "").lower()
            if scheme not in ("http", "https"):
                raise SendFailed("invalid_url", f"scheme {scheme or '(none)'!r} is not http(s)")
            if not parsed.host:
                raise SendFailed("invalid_url", "no host in the URL")
            port = parsed.port or (443 if scheme == "https" else 80)
            host = parsed.host.strip("[]")
            try:
                ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                found = (scheme, host, port, False)
            else:
                found = (scheme, host, port, True)
            if len(self._parsed) >= PARSED_URLS:
                self._parsed.clear()
            self._parsed[url] = found
        return found

    def _addresses(self, host: str, port: int) -> tuple[str, ...]:
        """The policy's allowed addresses of `host`, kept a while (a name is not resolved on
        every send); a refusal is never kept."""
        now = time.monotonic()
        kept = self._resolved.get((host, port))
        if kept is not None and kept[0] > now:
            return kept[1]
        addresses = tuple(_canonical(a) for a in self.egress.allowed_addresses(host, port))
        if len(self._resolved) >= PARSED_URLS:
            self._resolved.clear()
        self._resolved[(host, port)] = (now + RESOLVED_TTL, addresses)
        return addresses

    def _handle(self) -> _Handle:
        mine: _Handle | None = getattr(self._local, "handle", None)
        if mine is None:
            mine = self._local.handle = self._new_thread()
        return mine

    def _new_thread(self) -> _Handle:
        """This thread's handle; the handles of threads that have ended are closed."""
        handle = _Handle()
        with self._lock:
            alive = {thread.ident for thread in threading.enumerate()}
            ident = threading.get_ident()
            for ended in [i for i in self._handles if i not in alive or i == ident]:
                self._handles.pop(ended).curl.close()  # `ident`: reused from an ended one
            self._handles[ident] = handle
        return handle

    def connections(self) -> int:
        """Connections kept open by every thread's handle (for tests and diagnostics)."""
        with self._lock:
            handles = list(self._handles.values())
        return sum(1 for h in handles if h.curl.getinfo(pycurl.ACTIVESOCKET) != -1)

    def close(self) -> None:
        with self._lock:
            for handle in self._handles.values():
                handle.curl.close()
            self._handles.clear()
        self._local = threading.local()


def _canonical(address: str) -> str:
    """An address as text in one spelling (`0:0::1` and `::1` alike), without an IPv6 zone."""
    return str(ipaddress.ip_address(address.split("%")[0]))


def _bracketed(addresses: tuple[str, ...]) -> list[str]:
    return [f"[{a}]" if ":" in a else a for a in addresses]


def _failure(code: int, message: str) -> SendFailed:
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return SendFailed("timeout", f"timeout (curl {code}: {message[:160]})")
    if code in (pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL):
        return SendFailed("invalid_url", f"curl {code}")  # its message may quote the URL
    return SendFailed("connection_error", f"curl {code}: {message[:160]}")
