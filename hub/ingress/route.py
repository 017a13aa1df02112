"""`POST /webhooks/{source}`: a webhook in, a durable event out (and `GET`: Meta's handshake).

    authenticate → find the source → may this key and address send here → rate limit
    → content type and size → read the body (streamed, capped) → verify the signature
    → parse JSON → event id and type → store (group commit) → respond 202 / 200 duplicate

A 202 is sent only after the event row is committed; the enqueue of `process_events` follows
(batched, see hub.ingress.writer). Everything a request needs that can be done once is done
ahead: the applied sources compiled (signature verifier, extractors, networks) whenever the config
version moves (hub.ingress.applied), keys cached (hub.ingress.apikeys). Until the sources are
first loaded (the database was down at the start), webhooks are answered 503.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hub.core import envrefs, metrics
from hub.core.crypto import Cipher, PersonHasher, person_hasher
from hub.core.db import create_db_engine
from hub.core.errors import (
    AddressNotAllowed,
    BadRequest,
    DatabaseUnavailable,
    HubError,
    InvalidApiKey,
    InvalidJson,
    MissingApiKey,
    MissingEventField,
    PayloadTooLarge,
    SettingError,
    SignatureNotConfigured,
    SourceNotAllowed,
    UnknownSource,
    UnsupportedMediaType,
    VerificationRefused,
)
from hub.core.queues import redis_url
from hub.core.responses import error_response
from hub.core.secrets import SecretCache
from hub.core.settings import Settings
from hub.ingress import meta
from hub.ingress.apikeys import USAGE_FLUSH_INTERVAL, KeyCache, KeyRecord, UsageTracker
from hub.ingress.applied import AppliedSources, LiveSources
from hub.ingress.events import NewEvent, Stored
from hub.ingress.persons import PersonPaths
from hub.ingress.principals import presented_key
from hub.ingress.ratelimit import RateLimiter
from hub.ingress.signatures import SignatureScheme, scheme_for
from hub.ingress.sources import Extractor, SourceConfig
from hub.ingress.writer import WRITERS, EventWriter

log = logging.getLogger("hub.ingress.route")

CORRELATION_HEADER = "x-correlation-id"
SECRETS_CHECK_INTERVAL = 2.0  # seconds between looks at the tenant secrets' version
FIRST_LOAD_WAIT = 5.0  # seconds the start waits for the applied sources (then: 503 until loaded)
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_SIMPLE_PATH = re.compile(r"^\$((?:\.[A-Za-z_][A-Za-z0-9_\-]*)+)$")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
# never stored with the event: credentials and anything that looks like one
_SECRET_HEADER = re.compile(r"authorization|api-key|apikey|cookie|token|secret|signature|password")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ValueGetter = Callable[[Headers, Any], object]


# -- sources compiled once ------------------------------------------------------------------------


def compile_extractor(extractor: Extractor) -> ValueGetter:
    """A function (headers, parsed body) -> value or None, for a source's event_id / event_type."""
    if extractor.const is not None:
        value = extractor.const
        return lambda _headers, _body: value
    if extractor.header is not None:
        header = extractor.header.lower()
        return lambda headers, _body: headers.get(header)
    assert extractor.jsonpath is not None
    simple = _SIMPLE_PATH.match(extractor.jsonpath)
    if simple:
        steps = simple.group(1).split(".")[1:]

        def walk(_headers: Headers, body: Any) -> object:
            for step in steps:
                if not isinstance(body, dict):
                    return None
                body = body.get(step)
            return body

        return walk
    from jsonpath_ng.ext import parse

    compiled = parse(extractor.jsonpath)

    def find(_headers: Headers, body: Any) -> object:
        matches = compiled.find(body)
        return matches[0].value if matches else None

    return find


@dataclass(frozen=True)
class Source:
    """An applied source (sources.yaml, through `hub mappings apply`), ready for requests."""

    name: str
    queue: str
    max_body: int
    rate_limit: str | None
    networks: tuple[Network, ...]
    scheme: SignatureScheme | None
    secret_refs: tuple[str, ...]
    event_type: ValueGetter
    event_type_desc: str
    event_id: ValueGetter | None
    event_id_desc: str
    event_id_optional: bool  # from a header: absent means the SHA-256 of the body
    persons: PersonPaths  # declared personal identifiers (empty: none hashed)
    verify_tokens: tuple[str, ...] = ()  # references: GET answers Meta's handshake
    allow_query_key: bool = False  # ?api_key= accepted (providers that only take a URL)

    @classmethod
    def compile(cls, name: str, config: SourceConfig, settings: Settings) -> Source:
        scheme = None
        if config.signature is not None:
            sig = config.signature
            scheme = scheme_for(
                sig.scheme.value,
                header=sig.header,
                encoding="base64" if sig.encoding == "base64" else "hex",
                prefix=sig.prefix,
            )
        event_type: ValueGetter = compile_extractor(config.event_type)
        event_type_desc = _describe(config.event_type)
        event_id = compile_extractor(config.event_id) if config.event_id else None
        event_id_desc = _describe(config.event_id) if config.event_id else ""
        optional = config.event_id is not None and config.event_id.header is not None
        if config.preset == "whatsapp_cloud":
            if "event_type" not in config.model_fields_set:
                event_type, event_type_desc = meta.event_type, "preset whatsapp_cloud"
            if config.event_id is None:
                event_id, event_id_desc, optional = meta.event_id, "preset whatsapp_cloud", True
        return cls(
            name=name,
            queue=config.effective_queue.value,
            max_body=config.max_body or settings.body_limit,
            rate_limit=config.rate_limit,
            networks=tuple(config.allowed_ips),
            scheme=scheme,
            secret_refs=tuple(config.signature.secrets) if config.signature else (),
            event_type=event_type,
            event_type_desc=event_type_desc,
            event_id=event_id,
            event_id_desc=event_id_desc,
            event_id_optional=optional,
            persons=PersonPaths(config.personal),
            verify_tokens=(config.verify_token,) if config.verify_token else (),
            allow_query_key=config.allow_query_key,
        )


def _describe(extractor: Extractor) -> str:
    if extractor.header is not None:
        return f"header {extractor.header}"
    if extractor.jsonpath is not None:
        return extractor.jsonpath
    return "constant"


def compile_sources(applied: AppliedSources, settings: Settings) -> dict[str, Source]:
    """The applied sources that take webhooks, compiled (amqp sources are read by `hub consume`)."""
    return {
        name: Source.compile(name, config, settings)
        for name, config in applied.configs.items()
        if config.amqp is None
    }


def parse_networks(cidrs: list[str]) -> tuple[Network, ...]:
    """HUB_TRUSTED_PROXIES as networks; a bad entry is a SettingError naming it."""
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError as exc:
        raise SettingError("HUB_TRUSTED_PROXIES", f"not a list of CIDRs ({exc})") from exc


# -- the steps ------------------------------------------------------------------------------------


@dataclass
class Ingress:
    """What the route needs, built once per web process (see `serving`)."""

    settings: Settings
    sources: dict[str, Source]
    keys: KeyCache
    usage: UsageTracker
    limiter: RateLimiter
    writer: EventWriter
    cipher: Cipher
    trusted_proxies: tuple[Network, ...]
    secrets: SecretCache
    hasher: PersonHasher
    sources_version: int | None = None  # the config version in force; None: not loaded yet

    def use_sources(self, applied: AppliedSources) -> None:
        """Serve `applied` from now on (LiveSources calls it when the config version moves)."""
        sources = compile_sources(applied, self.settings)
        self.sources, self.sources_version = sources, applied.version
        log.info(
            "ingress.sources_loaded", extra={"version": applied.version, "count": len(sources)}
        )
        if not applied.configs:
            log.warning(
                "ingress.no_sources",
                extra={"version": applied.version, "reason": "none applied: hub mappings apply"},
            )

    async def authenticate(self, request: Request) -> KeyRecord:
        """The key of the request: in a header, or in `?api_key=` where the source opts in
        (`allow_query_key: true`: a key in a URL ends up in proxies' logs)."""
        source = self.sources.get(request.path_params["source"])
        if source is not None and source.allow_query_key:
            secret = presented_key(request.headers, query=request.query_params)
        else:
            secret = presented_key(request.headers)
        if not secret:
            if "api_key" in request.query_params:
                raise MissingApiKey(
                    "this source takes the API key only in X-API-Key or Authorization: Bearer "
                    "(?api_key= needs allow_query_key: true in sources.yaml)"
                )
            raise MissingApiKey("an API key is required: X-API-Key or Authorization: Bearer")
        key = await self.keys.authenticate(secret)
        if key is None:
            raise InvalidApiKey("the API key is not valid (unknown, revoked or expired)")
        self.usage.note(key.id)
        return key

    def source(self, name: str, key: KeyRecord) -> Source:
        if self.sources_version is None:
            raise DatabaseUnavailable(
                "the applied sources are not loaded yet (the database is unreachable); retry"
            )
        source = self.sources.get(name)
        if source is None:
            raise UnknownSource(f"no source named {name!r}")
        if key.tenant_id is None:
            raise SourceNotAllowed("an operator key cannot send webhooks: use a tenant's key")
        if not key.allows(name):
            raise SourceNotAllowed(f"this API key may not send to source {name!r}")
        return source

    def check_address(self, request: Request, source: Source) -> None:
        if not source.networks:
            return
        address = client_address(request, self.trusted_proxies)
        if address is None or not any(address in net for net in source.networks):
            raise AddressNotAllowed(f"address {address} may not send to source {source.name!r}")

    async def limit(self, key: KeyRecord, source: Source) -> None:
        assert key.tenant_id is not None
        await self.limiter.check(key.tenant_id, source.name, source.rate_limit)

    def verify(self, source: Source, key: KeyRecord, headers: Headers, body: bytes) -> None:
        if source.scheme is None:
            return
        resolved = [
            envrefs.resolve_optional(ref, key.tenant_slug, secrets=self.secrets)
            for ref in source.secret_refs
        ]
        in_force = [s for s in resolved if s]
        if not in_force:
            names = [envrefs.variable_name(r, key.tenant_slug) for r in source.secret_refs]
            log.error(
                "ingress.signature_not_configured",
                extra={"source": source.name, "tenant": key.tenant_slug, "reason": ",".join(names)},
            )
            raise SignatureNotConfigured(
                f"source {source.name!r} requires a signature but no signing secret is set "
                "for this tenant"
            )
        source.scheme.verify(headers, body, in_force, time.time())

    def identify(
        self, source: Source, headers: Headers, body: bytes, payload: Any
    ) -> tuple[str, str]:
        event_type = _text(source.event_type(headers, payload))
        if not event_type:
            raise MissingEventField(f"event type not found ({source.event_type_desc})")
        if source.event_id is None:
            return hashlib.sha256(body).hexdigest(), event_type
        external_id = _text(source.event_id(headers, payload))
        if not external_id:
            if source.event_id_optional:  # an optional header such as Idempotency-Key
                return hashlib.sha256(body).hexdigest(), event_type
            raise MissingEventField(f"event id not found ({source.event_id_desc})")
        return external_id, event_type

    async def store(
        self,
        key: KeyRecord,
        source: Source,
        ids: tuple[str, str],
        body: bytes,
        headers: Headers,
        correlation_id: str,
        payload: Any = None,
    ) -> Stored:
        assert key.tenant_id is not None
        external_id, event_type = ids
        event = NewEvent(
            tenant_id=key.tenant_id,
            source=source.name,
            external_id=external_id,
            event_type=event_type,
            queue=source.queue,
            payload=self.cipher.encrypt(body),
            sealed_headers=self.cipher.encrypt(orjson.dumps(storable_headers(headers))),
            correlation_id=correlation_id,
            persons=source.persons.digests(payload, self.hasher) if source.persons else (),
        )
        return await self.writer.store(event)


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    if len(text) > 255:
        raise BadRequest("event id and type are at most 255 characters")
    return text or None


def client_address(
    request: Request, trusted: tuple[Network, ...]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    if request.client is None:
        return None
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:
        return None
    if not any(peer in net for net in trusted):
        return peer
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded:
        return peer
    for hop in reversed([h.strip() for h in forwarded.split(",")]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not any(address in net for net in trusted):
            return address
    return peer


def check_content_type(headers: Headers) -> None:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not _JSON_TYPE.match(media):
        raise UnsupportedMediaType(
            f"content type {media or '(none)'!r} is not accepted: send application/json"
        )


async def read_body(
    request: Request | BufferedWebhook, limit: int, what: str = "this source's limit"
) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (never held whole when too large).

    Every route that reads a body reads it here (`what` names the limit in the 413)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the body is larger than {what} of {limit} bytes")
    if type(request) is BufferedWebhook:  # read whole already (and as long as it declared)
        return request.body
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body is larger than {what} of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise BadRequest("the client disconnected before sending the whole body") from exc
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(
            f"invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}"
        ) from exc


def storable_headers(headers: Headers) -> dict[str, str]:
    """The request's headers without credentials (API key, tokens, signatures, cookies)."""
    return {k: v for k, v in headers.items() if _storable_name(k)}


@functools.lru_cache(maxsize=1024)  # the same few header names arrive with every request
def _storable_name(name: str) -> bool:
    return not _SECRET_HEADER.search(name)


def correlation_of(headers: Headers) -> str:
    given = headers.get(CORRELATION_HEADER)
    if given and _CORRELATION_RE.match(given):
        return given
    return f"cor_{_PROCESS_TAG}{next(_counter):x}"


def _request_id(request: Request) -> str:
    """A new request id, kept on the request for the error handlers."""
    request_id = request.state.request_id = f"req_{_PROCESS_TAG}{next(_counter):x}"
    return request_id


# unique, not secret: a random tag per process and a counter (no syscall per request)
_PROCESS_TAG = secrets.token_hex(6)
_counter = itertools.count(1)


# -- the route ------------------------------------------------------------------------------------


async def receive_webhook(request: Request) -> Response:
    started = time.perf_counter()
    ingress: Ingress = request.app.state.ingress
    headers = request.headers
    correlation_id = correlation_of(headers)
    request_id = _request_id(request)
    try:
        key = await ingress.authenticate(request)
        source = ingress.source(request.path_params["source"], key)
        ingress.check_address(request, source)
        await ingress.limit(key, source)
        check_content_type(headers)
        body = await read_body(request, source.max_body)
        ingress.verify(source, key, headers, body)
        payload = parse_json(body)
        ids = ingress.identify(source, headers, body, payload)
        stored = await ingress.store(key, source, ids, body, headers, correlation_id, payload)
    except HubError as exc:
        name = request.path_params["source"]
        label = name if name in ingress.sources else metrics.UNKNOWN_SOURCE
        metrics.webhook_received(label, exc.code, time.perf_counter() - started)
        response = error_response(exc, request_id)
        response.headers["X-Correlation-Id"] = correlation_id
        if isinstance(exc, PayloadTooLarge):
            response.headers["Connection"] = "close"  # do not read the rest of a huge body
        return response
    outcome = "accepted" if stored.created else "duplicate"
    metrics.webhook_received(source.name, outcome, time.perf_counter() - started)
    return respond(stored, correlation_id)


def respond(stored: Stored, correlation_id: str) -> Response:
    status = "accepted" if stored.created else "duplicate"
    return _Answer(
        orjson.dumps({"event_id": stored.event_id, "status": status}),
        202 if stored.created else 200,
        correlation_id,
    )


class _Answer(Response):
    """A JSON answer with its raw headers built directly (Response's generic header handling
    costs more than the rest of it on the hottest path)."""

    def __init__(self, body: bytes, status_code: int, correlation_id: str) -> None:
        self.body = body
        self.status_code = status_code
        self.background = None
        self.raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]


async def verify_subscription(request: Request) -> Response:
    """`GET /webhooks/{source}`: Meta's subscription handshake (hub.ingress.meta), for a source
    with a `verify_token`; the key (`?api_key=` in the callback URL) names the tenant."""
    ingress: Ingress = request.app.state.ingress
    request_id = _request_id(request)
    try:
        key = await ingress.authenticate(request)
        source = ingress.source(request.path_params["source"], key)
        ingress.check_address(request, source)
        tokens = [envrefs.resolve_optional(r, key.tenant_slug) for r in source.verify_tokens]
        if not any(tokens):
            raise VerificationRefused(f"source {source.name!r} has no verify token for this tenant")
        challenge = meta.check_handshake(request.query_params, [t for t in tokens if t])
    except HubError as exc:
        return error_response(exc, request_id)
    log.info("ingress.subscription_verified", extra={"source": source.name})
    return Response(challenge, media_type="text/plain")


ROUTES: list[BaseRoute] = [
    Route("/webhooks/{source}", receive_webhook, methods=["POST"]),
    Route("/webhooks/{source}", verify_subscription, methods=["GET"]),
]


class RequestHeaders(Headers):
    """A request's headers decoded once into a dict: the ingress path looks up a dozen names per
    webhook, and Headers scans and decodes its list for each. Read-only, as Headers; where a
    name repeats, a lookup gives the first value and `items()` every pair, as Headers does."""

    def __init__(self, scope: Any) -> None:
        super().__init__(scope=scope)
        self._items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._list]
        self._first = dict(reversed(self._items))

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._items

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key.lower()]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._first


class _IngressRequest(Request):
    @property
    def headers(self) -> Headers:
        headers: Headers | None = self.__dict__.get("_headers")
        if headers is None:
            headers = self._headers = RequestHeaders(self.scope)
        return headers


class _Client(tuple[str, int]):
    """The peer as Starlette's `Address` gives it (`.host`)."""

    __slots__ = ()

    @property
    def host(self) -> str:
        return self[0]


class _State:
    __slots__ = ("request_id",)


class BufferedWebhook:
    """A webhook the protocol read whole (hub.core.protocol's short path): the part of a
    Starlette Request that receive_webhook reads, built from the raw request."""

    __slots__ = ("app", "path_params", "headers", "client", "_query", "body", "state")

    def __init__(
        self,
        app: Any,
        source: str,
        headers: list[tuple[bytes, bytes]],
        query: bytes,
        client: tuple[str, int] | None,
        body: bytes,
    ) -> None:
        self.app = app
        self.path_params = {"source": source}
        self.headers = RequestHeaders({"headers": headers})
        self.client = _Client(client) if client else None
        self._query = query
        self.body = body
        self.state = _State()

    @property
    def query_params(self) -> QueryParams:
        return QueryParams(self._query)

    async def stream(self) -> AsyncIterator[bytes]:
        yield self.body


class FastIngress:
    """`POST /webhooks/{source}` straight to its handler; everything else through the app.

    The ingress handler answers every HubError itself, so Starlette's router and its two
    exception middlewares add nothing on the hottest path but their cost.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/webhooks/") and "/" not in path[10:] and len(path) > 10:
                scope["app"] = self.app
                scope["path_params"] = {"source": path[10:]}
                response = await _answer(_IngressRequest(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # the protocol's short path (hub.core.protocol.BufferedApp): a webhook read whole

    @staticmethod
    def takes(method: bytes, path: bytes) -> str | None:
        """The source a `POST /webhooks/{source}` names (None: not a webhook, or a path with
        escapes, which the ASGI path decodes)."""
        if method == b"POST" and path.startswith(b"/webhooks/") and len(path) > 10:
            name = path[10:]
            if b"/" not in name and b"%" not in name and name.isascii():
                return name.decode("ascii")
        return None

    async def buffered(
        self,
        source: str,
        headers: list[tuple[bytes, bytes]],
        query: bytes,
        client: tuple[str, int] | None,
        body: bytes,
    ) -> Response:
        return await _answer(BufferedWebhook(self.app, source, headers, query, client, body))


async def _answer(request: Any) -> Response:
    try:
        return await receive_webhook(request)
    except Exception:  # noqa: BLE001 - as ServerErrorMiddleware would: a 500, logged
        log.exception("ingress.crashed")
        return error_response(HubError("internal error"), None)


# -- lifetime -------------------------------------------------------------------------------------


@asynccontextmanager
async def serving(state: Any) -> AsyncIterator[Ingress]:
    """Build the Ingress on `state` (the app's: settings, engine, redis), run it, drain it."""
    settings: Settings = state.settings
    trusted = parse_networks(settings.trusted_proxies)
    limiter = RateLimiter.for_engine(state.engine, redis_url(settings), settings.default_rate_limit)
    # the writer's own connections (a connection the server dropped gets one retry, see events),
    # which take a group commit's statements in one round trip where the driver can
    writer_engine = create_db_engine(settings, pool_size=WRITERS + 1, multi_statements=True)
    writer = await EventWriter(writer_engine, state.redis).start()
    cipher = Cipher.from_settings(settings)
    secrets = SecretCache(state.engine, cipher, state.redis)
    # in a daemon thread of its own: a hung database must not hold the start, /health or the exit
    secrets.watch(SECRETS_CHECK_INTERVAL)
    ingress = Ingress(
        settings=settings,
        sources={},
        keys=KeyCache.for_engine(state.engine),
        usage=UsageTracker(),
        limiter=limiter,
        writer=writer,
        cipher=cipher,
        trusted_proxies=trusted,
        secrets=secrets,
        hasher=person_hasher(settings),
    )
    # the applied sources, reloaded when the config version moves; the database may be down now
    live = LiveSources(state.engine, state.redis, ingress.use_sources)
    live.watch()
    await asyncio.to_thread(live.wait_first, FIRST_LOAD_WAIT)
    state.ingress = ingress
    housekeeping = asyncio.create_task(_housekeeping(ingress, state.engine))
    try:
        yield ingress
    finally:
        housekeeping.cancel()
        live.stop()
        ingress.secrets.stop()
        with suppress(asyncio.CancelledError):
            await housekeeping
        await writer.stop()
        writer_engine.dispose()
        await asyncio.to_thread(ingress.usage.flush, state.engine)


async def _housekeeping(ingress: Ingress, engine: Any) -> None:
    """Write keys' last use once a minute."""
    while True:
        await asyncio.sleep(USAGE_FLUSH_INTERVAL)
        await asyncio.to_thread(ingress.usage.flush, engine)
