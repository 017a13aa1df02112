"""Pulling pages from a source system's API: the request, pagination, and retries.

`Puller(sync, tenant, client, since=…).pages()` yields each page's items in order. Every request
is retried on the source's misbehaviour with the sync's retry policy (the endpoints' shape, see
hub.delivery.retry): connection errors and timeouts, 5xx, 408, 425, 429 (honouring Retry-After)
and a 2xx page that is not JSON or has no list where `items` points. Another 4xx, or the retries
used up, raises SyncFailed: the run fails and its high-water mark stays where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
from starlette.datastructures import Headers

from hub.core import envrefs
from hub.core.errors import SyncFailed
from hub.delivery.retry import is_retryable_status, next_delay, parse_retry_after
from hub.ingress.route import ValueGetter, compile_extractor
from hub.ingress.sources import Extractor
from hub.sync.config import PageKind, SyncConfig

NO_HEADERS = Headers()
USER_AGENT = "hub-sync/1"


@dataclass(frozen=True)
class Page:
    number: int  # 1-based, in this run
    url: str
    items: list[Any]


class BadPage(Exception):
    """A 2xx page we cannot read: retried like a 5xx."""


def getter(path: str) -> ValueGetter:
    return compile_extractor(Extractor(jsonpath=path))


def format_since(since: datetime, fmt: str) -> str:
    if fmt == "unix":
        return str(int(since.replace(tzinfo=UTC).timestamp()))
    return since.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """An item's update time as naive UTC: ISO 8601, or epoch seconds or milliseconds."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if value > 100_000_000_000 else value
            return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            return parsed
    except (ValueError, OverflowError, OSError):
        return None
    return None


class Puller:
    """The pages of one sync for one tenant, each request retried per the sync's policy."""

    def __init__(
        self,
        sync: SyncConfig,
        tenant_slug: str,
        client: httpx.Client,
        *,
        since: datetime | None = None,
        on_retry: Callable[[float, str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sync = sync
        self.client = client
        self.on_retry = on_retry
        self.sleep = sleep
        self.policy = sync.retry_policy()
        request = sync.request
        where = f"sync {tenant_slug}"
        base = envrefs.resolve(request.url, tenant_slug, where=f"{where} request.url")
        self.url = base.rstrip("/") + request.path if request.path else base
        self.headers = {
            name: envrefs.resolve(value, tenant_slug, where=f"{where} request.headers.{name}")
            for name, value in request.headers.items()
        }
        self.headers.setdefault("accept", "application/json")
        self.headers.setdefault("user-agent", USER_AGENT)
        self.params: dict[str, str] = {k: _param(v) for k, v in request.params.items()}
        if since is not None and sync.window is not None:
            self.params[sync.window.param] = format_since(since, sync.window.format)
        self.items = getter(sync.items)
        self.cursor = getter(sync.pagination.cursor) if sync.pagination.cursor else None

    def pages(self) -> Iterator[Page]:
        pagination = self.sync.pagination
        url: str | None = self.url
        params = dict(self.params)
        page_number = pagination.start
        seen_cursors: set[str] = set()
        if pagination.kind == PageKind.PAGE:
            assert pagination.param
            params[pagination.param] = str(page_number)
        for number in range(1, pagination.max_pages + 1):
            assert url is not None
            response, body, items = self._fetch(url, params)
            yield Page(number, str(response.url), items)
            if pagination.kind == PageKind.NONE:
                return
            if pagination.kind == PageKind.PAGE:
                if not items:
                    return
                assert pagination.param
                page_number += 1
                params[pagination.param] = str(page_number)
            elif pagination.kind == PageKind.CURSOR:
                assert self.cursor is not None and pagination.param
                value = self.cursor(NO_HEADERS, body)
                if value is None or value == "" or isinstance(value, dict | list):
                    return
                cursor = str(value)
                if cursor in seen_cursors:
                    raise SyncFailed(f"the source returned cursor {cursor!r} twice (a loop)")
                seen_cursors.add(cursor)
                params[pagination.param] = cursor
            else:  # LINK
                nxt = response.links.get("next", {}).get("url")
                if not nxt:
                    return
                url = self._same_origin(urljoin(str(response.url), nxt))
                params = {}  # the next link carries its own query
        raise SyncFailed(f"more than {pagination.max_pages} pages (pagination.max_pages)")

    def _same_origin(self, url: str) -> str:
        first, nxt = urlsplit(self.url), urlsplit(url)
        if (first.scheme, first.netloc) != (nxt.scheme, nxt.netloc):
            raise SyncFailed(
                f"the Link header's next page is on {nxt.scheme}://{nxt.netloc}, not "
                f"{first.scheme}://{first.netloc}: not sending the credentials there"
            )
        return url

    def _fetch(self, url: str, params: dict[str, str]) -> tuple[httpx.Response, Any, list[Any]]:
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self.client.get(
                    url,
                    params=params or None,
                    headers=self.headers,
                    timeout=self.sync.request.timeout,
                )
                if response.status_code >= 300:
                    reason = f"HTTP {response.status_code} from {_where(url)}"
                    if not is_retryable_status(response.status_code):
                        raise SyncFailed(f"{reason} (not retried)")
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                else:
                    body, items = self._read(response)
                    return response, body, items
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__} on {_where(url)}"
            except BadPage as exc:
                reason = f"{exc} from {_where(url)}"
            delay = next_delay(attempt, self.policy, retry_after)
            if delay is None:
                raise SyncFailed(f"{reason}; gave up after {attempt} attempts")
            if self.on_retry is not None:
                self.on_retry(delay, reason)
            self.sleep(delay)

    def _read(self, response: httpx.Response) -> tuple[Any, list[Any]]:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise BadPage(f"a page that is not JSON ({exc.msg} at byte {exc.pos})") from exc
        items = self.items(NO_HEADERS, body)
        if items is None and self.sync.pagination.kind == PageKind.PAGE:
            items = []  # past the last page, some APIs leave the list out
        if not isinstance(items, list):
            raise BadPage(f"a page without a list at {self.sync.items}")
        return body, items


def _param(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: it may hold tokens
