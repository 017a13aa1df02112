"""google_calendar endpoints: appointments upserted and cancelled in a tenant's Google Calendar.

The route says `operation: upsert | cancel` and `appointment_key` (a path into the event); its
body is the calendar event: `{summary, description, location, start, end, attendees, ...}` where
`start` / `end` are ISO-8601 date-times (without an offset: in the route's `timezone`, else the
endpoint's, America/Sao_Paulo) or dates (all-day). A time that does not parse is permanent.

    upsert  the link (calendar_links) names the event → PATCH it; no link → look the key up in
            the calendar (`privateExtendedProperty=hubAppointmentKey=<key>`) → PATCH that one, or
            INSERT a new event carrying the key; the link is stored either way. A retry after a
            timeout or a replay therefore never makes a second entry. A linked event that is gone
            (404 / 410) is inserted again.
    cancel  DELETE the linked (or looked-up) event; already gone or never made is done.

Access tokens come from the refresh-token grant (authlib's OAuth2 client on httpx) and are
cached in Redis until a minute before they expire; a 401 drops the cached token and tries once
more with a fresh one; a refused refresh (invalid_grant: revoked or expired consent) is
permanent. Calendar answers: 429 and 403 rate limits honour Retry-After, 5xx are retried, other
4xx are permanent.

This module (with httpx and authlib) is loaded by the first google_calendar send in a process
(hub.delivery.kinds): a worker that never sends one does not carry it.
"""

from __future__ import annotations

import re
import ssl
import threading
import warnings
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpcore
import httpx
import orjson
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from hub.core.errors import ConfigError
from hub.core.models import CalendarLink, utcnow
from hub.core.queues import CALENDAR_TOKEN_KEY

# authlib 1.9 prefers httpx2 and says so at every import (`hub up` printed it); hub stays on
# httpx. authlib.deprecate installs an "always" filter when imported, so it is imported first.
with warnings.catch_warnings():
    import authlib.deprecate

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from hub.delivery.adapters import (
    DeliveryRef,
    Outcome,
    OutgoingRequest,
    Target,
    Verdict,
    clip,
    config_failure,
    http_outcome,
)
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import CALENDAR_API
from hub.delivery.retry import parse_retry_after
from hub.delivery.senders import USER_AGENT, tls_context

KEY_PROPERTY = "hubAppointmentKey"
EXPIRY_MARGIN = 60  # seconds before expiry a cached token is no longer used
RATE_LIMITED = re.compile(r"rateLimitExceeded|userRateLimitExceeded|quotaExceeded")


def transport_failure(exc: httpx.HTTPError) -> Outcome:
    if isinstance(exc, httpx.TimeoutException):
        return Outcome(
            Verdict.RETRY, error_class="timeout", error=f"timeout ({type(exc).__name__})"
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        # not str(exc): it may quote the URL, and a Z-API URL carries its token
        return Outcome(Verdict.DEAD, error_class="invalid_url", error=type(exc).__name__)
    return Outcome(
        Verdict.RETRY,
        error_class="connection_error",
        error=f"{type(exc).__name__}: {str(exc)[:160]}",
    )


class ClientPool:
    """An `httpx.Client` per endpoint and sending thread in this process, kept across jobs (the
    Calendar adapter's; the other HTTP kinds send on hub.delivery.senders).

    A send is synchronous on its thread, so one client per thread needs one connection, kept
    alive for that thread's next send. One client shared by an endpoint's lane of threads
    costs more than the sends: httpcore's pool looks at each of its connections (a poll per
    connection) for every request and every response closed, under one lock. The clients share
    one TLS context and the egress-guarded network backend; a client whose thread has ended is
    closed when the next is made.
    """

    def __init__(self, max_connections: int = 100, egress: EgressPolicy | None = None) -> None:
        self._clients: dict[tuple[int, str, float], httpx.Client] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=1)
        self._tls: ssl.SSLContext | None = None
        self.egress = egress or EgressPolicy()
        self._backend = GuardedBackend(self.egress)

    def get(self, endpoint: str, timeout: float) -> httpx.Client:
        mine: dict[tuple[str, float], httpx.Client] | None = getattr(self._local, "clients", None)
        if mine is None:
            mine = self._local.clients = {}
        client = mine.get((endpoint, timeout))
        if client is None:
            client = mine[(endpoint, timeout)] = self._new(endpoint, timeout)
        return client

    def _new(self, endpoint: str, timeout: float) -> httpx.Client:
        with self._lock:
            if self._tls is None:
                self._tls = tls_context()  # loading the CA bundle takes a while
            transport = httpx.HTTPTransport(verify=self._tls, limits=self._limits)
            # connect only where the egress policy allows (httpx has no parameter for
            # httpcore's network backend; the pool's is replaced before any request)
            transport._pool._network_backend = self._backend
            client = httpx.Client(
                transport=transport,
                timeout=httpx.Timeout(timeout, pool=timeout),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._close_orphans()
            key = (threading.get_ident(), endpoint, timeout)
            if key in self._clients:  # an ended thread's, whose ident this thread reuses
                self._clients[key].close()
            self._clients[key] = client
        return client

    def _close_orphans(self) -> None:
        """Close the clients of threads that have ended (a lane rebuilt, an executor shut)."""
        alive = {thread.ident for thread in threading.enumerate()}
        for key in [key for key in self._clients if key[0] not in alive]:
            self._clients.pop(key).close()

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self._local = threading.local()


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, connecting only where the egress policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.allowed_addresses(host, port)  # EgressRefused: nothing sent
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    address, port, timeout, local_address, socket_options or []
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class Permanent(Exception):
    """A delivery that can never succeed as it is; the text says why."""


class Answer(Exception):
    """The calendar answered something other than success: its outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class CalendarAdapter:
    def __init__(self, clients: ClientPool, engine: Engine | None, redis: Redis | None) -> None:
        self.clients = clients
        self.engine = engine
        self.redis = redis

    def send(self, request: OutgoingRequest, endpoint: Target, delivery: DeliveryRef) -> Outcome:
        if self.engine is None or self.redis is None:
            return Outcome(Verdict.DEAD, error_class="config", error="no database or Redis here")
        config = endpoint.config
        operation = request.options.get("operation")
        key = request.options.get("appointment_key")
        if operation not in ("upsert", "cancel") or key in (None, ""):
            return Outcome(
                Verdict.DEAD,
                error_class="bad_request",
                error="the route needs operation and an appointment_key that is not null",
            )
        try:
            calendar_id = endpoint.value("calendar_id", config.calendar_id) or ""
            call = Call(self, endpoint, calendar_id)
            zone = ZoneInfo(str(request.options.get("timezone") or config.timezone))
            if operation == "cancel":
                return call.cancel(str(key))
            return call.upsert(str(key), calendar_body(request.body, zone, str(key)))
        except ConfigError as exc:
            return config_failure(exc)
        except Permanent as exc:
            return Outcome(Verdict.DEAD, error_class="bad_request", error=str(exc)[:200])
        except Answer as exc:
            return exc.outcome
        except OAuthError as exc:
            return Outcome(
                Verdict.DEAD,
                error_class="oauth_refused",
                error=f"token refresh refused ({exc.error}): reauthorize the calendar"[:200],
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        except (SQLAlchemyError, RedisError) as exc:
            return Outcome(Verdict.RETRY, error_class="internal", error=type(exc).__name__)


class Call:
    """One delivery's conversation with the Calendar API."""

    def __init__(self, adapter: CalendarAdapter, endpoint: Target, calendar_id: str) -> None:
        config = endpoint.config
        self.adapter, self.endpoint, self.calendar_id = adapter, endpoint, calendar_id
        self.client = adapter.clients.get(endpoint.name, config.timeout)
        base = endpoint.value("url", config.url) or CALENDAR_API
        self.events = f"{base.rstrip('/')}/calendars/{_quote(calendar_id)}/events"
        self.tenant = endpoint.tenant_slug or ""

    # -- operations -------------------------------------------------------------------------------

    def upsert(self, key: str, body: dict[str, Any]) -> Outcome:
        event_id = self.linked(key) or self.find(key)
        if event_id is not None:
            response = self.request("PATCH", f"{self.events}/{_quote(event_id)}", body)
            if response.status_code not in (404, 410):
                self.link(key, event_id)
                return self.outcome(response, f"patched {event_id}")
            self.unlink(key)  # deleted in the calendar meanwhile: make it again
        response = self.request("POST", self.events, body)
        if response.is_success:
            self.link(key, str(response.json().get("id")))
        return self.outcome(response, "inserted")

    def cancel(self, key: str) -> Outcome:
        event_id = self.linked(key) or self.find(key)
        if event_id is None:
            return Outcome(Verdict.DELIVERED, excerpt="no calendar event for this key: nothing")
        response = self.request("DELETE", f"{self.events}/{_quote(event_id)}")
        if response.status_code in (404, 410) or response.is_success:
            self.unlink(key)
            return Outcome(Verdict.DELIVERED, response.status_code, excerpt=f"deleted {event_id}")
        return self.outcome(response, "")

    def find(self, key: str) -> str | None:
        """The event carrying this key in its private extended properties, if any."""
        params = {"privateExtendedProperty": f"{KEY_PROPERTY}={key}", "showDeleted": "false"}
        response = self.request("GET", self.events, params=params)
        if not response.is_success:
            raise Answer(self.outcome(response, ""))
        items = response.json().get("items") or []
        found = next((i for i in items if i.get("status") != "cancelled"), None)
        return str(found["id"]) if found else None

    # -- HTTP with a token ------------------------------------------------------------------------

    def request(
        self, method: str, url: str, body: Any = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        for fresh in (False, True):
            headers = {"authorization": f"Bearer {self.token(fresh)}"}
            content = orjson.dumps(body) if body is not None else None
            if content is not None:
                headers["content-type"] = "application/json"
            response = self.client.request(
                method, url, headers=headers, content=content, params=params
            )
            if response.status_code != 401:
                return response
        return response

    def token(self, fresh: bool) -> str:
        redis = self.adapter.redis
        assert redis is not None
        cache = CALENDAR_TOKEN_KEY.format(endpoint=self.endpoint.name, tenant=self.tenant)
        if not fresh:
            cached = redis.get(cache)
            if cached:
                return cached.decode() if isinstance(cached, bytes) else str(cached)
        config, value = self.endpoint.config, self.endpoint.value
        with OAuth2Client(
            value("client_id", config.client_id),
            value("client_secret", config.client_secret),
            timeout=config.timeout,
        ) as oauth:
            token = oauth.refresh_token(
                config.token_url, refresh_token=value("refresh_token", config.refresh_token)
            )
        access = str(token["access_token"])
        ttl = int(token.get("expires_in") or 3600) - EXPIRY_MARGIN
        if ttl > 0:
            redis.set(cache, access, ex=ttl)
        return access

    def outcome(self, response: httpx.Response, done: str) -> Outcome:
        text = response.text[:2000]
        if response.is_success:
            return Outcome(Verdict.DELIVERED, response.status_code, excerpt=done or clip(text))
        if response.status_code == 403 and RATE_LIMITED.search(text):
            after = parse_retry_after(response.headers.get("retry-after"))
            return Outcome(
                Verdict.RETRY, 403, "rate_limited", "HTTP 403 rate limit", clip(text), after
            )
        return http_outcome(response.status_code, clip(text), response.headers.get("retry-after"))

    # -- links ------------------------------------------------------------------------------------

    def _where(self, key: str) -> Any:
        return (
            (CalendarLink.tenant == self.tenant)
            & (CalendarLink.endpoint == self.endpoint.name)
            & (CalendarLink.appointment_key == key)
        )

    def linked(self, key: str) -> str | None:
        engine = self.adapter.engine
        assert engine is not None
        with engine.connect() as conn:
            found = conn.scalar(select(CalendarLink.calendar_event_id).where(self._where(key)))
        return str(found) if found else None

    def link(self, key: str, event_id: str) -> None:
        engine = self.adapter.engine
        assert engine is not None
        now = utcnow()
        with engine.begin() as conn:
            changed = conn.execute(
                update(CalendarLink)
                .where(self._where(key))
                .values(calendar_event_id=event_id, calendar_id=self.calendar_id, updated_at=now)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(CalendarLink).values(
                        tenant=self.tenant,
                        endpoint=self.endpoint.name,
                        appointment_key=key,
                        calendar_id=self.calendar_id,
                        calendar_event_id=event_id,
                        created_at=now,
                        updated_at=now,
                    )
                )

    def unlink(self, key: str) -> None:
        engine = self.adapter.engine
        assert engine is not None
        with engine.begin() as conn:
            conn.execute(delete(CalendarLink).where(self._where(key)))


def _quote(value: str) -> str:
    return quote(value, safe="")


def calendar_body(body: Any, zone: ZoneInfo, key: str) -> dict[str, Any]:
    """The Calendar API's event for the route's body; Permanent names a path that is wrong."""
    if not isinstance(body, dict):
        raise Permanent("body: a calendar event is an object (summary, start, end, ...)")
    out = dict(body)
    for name in ("start", "end"):
        if out.get(name) is None:
            raise Permanent(f"body.{name}: missing")
        out[name] = calendar_time(out[name], zone, f"body.{name}")
    private = {KEY_PROPERTY: key}
    extended = out.get("extendedProperties") or {}
    out["extendedProperties"] = {**extended, "private": {**extended.get("private", {}), **private}}
    return out


def calendar_time(value: Any, zone: ZoneInfo, path: str) -> dict[str, str]:
    """`{"dateTime", "timeZone"}` or `{"date"}` (all day)."""
    if isinstance(value, dict):  # already the API's shape
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return {"date": date.fromisoformat(text).isoformat()}
        except ValueError as exc:
            raise Permanent(f"{path}: {text!r} is not a date") from exc
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Permanent(f"{path}: {text!r} is not an ISO-8601 date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return {"dateTime": moment.isoformat(), "timeZone": zone.key}
