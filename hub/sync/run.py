"""One run of a sync job: pages pulled, items stored as events, the high-water mark advanced.

Each page's items go through the event store as a batch (`hub.ingress.events.store_events`),
keyed like webhooks by (tenant, source, event id): an item already received as a webhook, or by
an earlier run, is a duplicate and creates nothing; the others are the webhooks the source never
sent, and are enqueued for the mappings on `low` (a catch-up never delays live traffic).

The window starts at the job's high-water mark minus the overlap. Only a complete run moves the
mark, to the latest update time it saw; a failed or killed run leaves it, so the next run asks
for the same window again and nothing is skipped. A dry run pulls and counts without writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from pydantic import ValidationError
from sqlalchemy import Engine, select

from hub.core import metrics
from hub.core.context import JobContext
from hub.core.crypto import Cipher
from hub.core.errors import HubError, RedisUnavailable
from hub.core.models import IntegrationEvent, SyncJob, Tenant, utcnow
from hub.core.queues import QueueName
from hub.ingress.events import NewEvent, enqueue_events, store_events
from hub.ingress.route import ValueGetter, compile_extractor
from hub.sync.config import SyncConfig
from hub.sync.pull import NO_HEADERS, Page, Puller, getter, parse_time
from hub.sync.schedule import Started, finish, renew, start_run

log = logging.getLogger("hub.sync.run")

SYNC_HEADER = "x-hub-sync"
CLIENT_KEY = "sync_http_client"


@dataclass
class Progress:
    pages: int = 0
    items: int = 0
    created: int = 0
    duplicates: int = 0
    errors: int = 0
    retries: int = 0

    def values(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunResult:
    job_id: int
    name: str
    tenant: str
    run_id: str | None  # None: a dry run
    ok: bool
    progress: Progress
    since: datetime | None
    mark: datetime | None
    error: str | None = None


ProgressLine = Callable[[Progress], None]


def http_client(cache: dict[str, Any]) -> httpx.Client:
    """The worker's pooled client for source APIs (kept in the JobContext cache)."""
    client = cache.get(CLIENT_KEY)
    if not isinstance(client, httpx.Client):
        client = httpx.Client(follow_redirects=False)
        cache[CLIENT_KEY] = client
    return client


def window_start(sync: SyncConfig, mark: datetime | None, now: datetime) -> datetime | None:
    if sync.window is None:
        return None
    if mark is not None:
        return mark - timedelta(seconds=sync.window.overlap)
    if sync.window.initial is not None:
        return now - timedelta(seconds=sync.window.initial)
    return None


def run_job(
    ctx: JobContext,
    job_id: int,
    *,
    trigger: str = "schedule",
    since: datetime | None = None,
    progress_line: ProgressLine | None = None,
) -> RunResult | None:
    """Run sync job `job_id` if this caller can take it (None: another run holds it)."""
    lease = ctx.settings.sync_lease
    with ctx.sessions() as session:
        job = session.get(SyncJob, job_id)
        if job is None:
            return None
        try:
            sync = SyncConfig.model_validate(job.definition or {})
        except ValidationError:
            sync = None
        start = since
        if start is None and sync is not None:
            start = window_start(sync, job.high_water_mark, utcnow())
    started = start_run(ctx.engine, job_id, lease=lease, trigger=trigger, since=start)
    if started is None:
        return None
    progress = Progress()

    def failed(message: str) -> RunResult:
        finish(ctx.engine, started, sync, ok=False, progress=progress.values(), mark=None,
               error=message)  # fmt: skip
        metrics.sync_run(started.name, "failed")
        log.warning("sync.failed", extra={"run_id": started.run_id, "reason": message})
        return _result(started, False, progress, start, None, message)

    if sync is None:
        return failed("the applied definition no longer validates: run `hub mappings apply`")
    log.info("sync.started", extra={"run_id": started.run_id, "tenant_id": started.tenant_id})
    try:
        mark = _pull(ctx, sync, started, start, progress, progress_line, lease)
    except _LeaseLost:
        log.warning("sync.lease_lost", extra={"run_id": started.run_id})
        return _result(started, False, progress, start, None, "lease lost")
    except HubError as exc:
        return failed(exc.message)
    except Exception as exc:  # a bug or a driver error: recorded, then RQ sees it too
        failed(f"{type(exc).__name__}: {exc}")
        raise
    new_mark = max(filter(None, (mark, started.high_water_mark)), default=None)
    if not finish(ctx.engine, started, sync, ok=True, progress=progress.values(), mark=new_mark):
        return _result(started, False, progress, start, None, "lease lost")
    metrics.sync_run(started.name, "succeeded")
    log.info(
        "sync.finished",
        extra={"run_id": started.run_id, "count": progress.created, "status": "succeeded"},
    )
    return _result(started, True, progress, start, new_mark)


class _LeaseLost(Exception):
    pass


def _pull(
    ctx: JobContext,
    sync: SyncConfig,
    started: Started,
    since: datetime | None,
    progress: Progress,
    progress_line: ProgressLine | None,
    lease: float,
) -> datetime | None:
    def on_retry(delay: float, reason: str) -> None:
        progress.retries += 1
        log.warning("sync.retry", extra={"run_id": started.run_id, "reason": reason})
        if not renew(ctx.engine, started, delay + lease, progress.values()):
            raise _LeaseLost()

    puller = Puller(
        sync, started.tenant_slug, http_client(ctx.cache), since=since, on_retry=on_retry
    )
    extractors = _extractors(sync)
    mark: datetime | None = None
    for page in puller.pages():
        found, page_mark = _identify(page, extractors, progress)
        mark = max(filter(None, (mark, page_mark)), default=None)
        known = stored_ids(ctx.engine, started.tenant_id, sync.source, [f[0] for f in found])
        events = [
            _event(
                sync, started, external_id, kind, ctx.cipher.encrypt(orjson.dumps(item)), ctx.cipher
            )
            for external_id, kind, item in found
            if external_id not in known
        ]
        stored = store_events(ctx.engine, events)  # a webhook arriving meanwhile: a duplicate
        fresh = [(s.event_id, QueueName.LOW.value) for s in stored if s.created]
        duplicates = len(found) - len(fresh)
        progress.pages += 1
        progress.items += len(page.items)
        progress.created += len(fresh)
        progress.duplicates += duplicates
        metrics.sync_items(sync.source, len(fresh), duplicates)
        if fresh:
            try:
                enqueue_events(ctx.engine, ctx.redis, fresh)
            except RedisUnavailable:
                pass  # stored `received`: the sweeper's relay enqueues them
        if not renew(ctx.engine, started, lease, progress.values()):
            raise _LeaseLost()
        if progress_line is not None:
            progress_line(progress)
    return mark


def _extractors(sync: SyncConfig) -> tuple[ValueGetter, ValueGetter, ValueGetter | None]:
    mark_of = getter(sync.window.field) if sync.window else None
    return compile_extractor(sync.event_id), compile_extractor(sync.event_type), mark_of


def _identify(
    page: Page,
    extractors: tuple[ValueGetter, ValueGetter, ValueGetter | None],
    progress: Progress,
) -> tuple[list[tuple[str, str, Any]], datetime | None]:
    """(event id, event type, item) of each item of the page (one without an id or a type
    counts as an error), and the latest update time among them."""
    event_id, event_type, mark_of = extractors
    mark: datetime | None = None
    found: list[tuple[str, str, Any]] = []
    for item in page.items:
        external_id = _text(event_id(NO_HEADERS, item))
        kind = _text(event_type(NO_HEADERS, item))
        if not external_id or not kind:
            progress.errors += 1
            continue
        if mark_of is not None:
            when = parse_time(mark_of(NO_HEADERS, item))
            if when is not None and (mark is None or when > mark):
                mark = when
        found.append((external_id, kind, item))
    return found, mark


def stored_ids(engine: Engine, tenant_id: int, source: str, external_ids: list[str]) -> set[str]:
    """Which of `external_ids` the tenant's source already has (one query on the unique key):
    those are not encrypted nor inserted again."""
    if not external_ids:
        return set()
    with engine.connect() as conn:
        return set(
            conn.scalars(
                select(IntegrationEvent.external_id).where(
                    IntegrationEvent.tenant_id == tenant_id,
                    IntegrationEvent.source == source,
                    IntegrationEvent.external_id.in_(set(external_ids)),
                )
            )
        )


def _event(
    sync: SyncConfig, who: Started, external_id: str, kind: str, payload: bytes, cipher: Cipher
) -> NewEvent:
    return NewEvent(
        tenant_id=who.tenant_id,
        source=sync.source,
        external_id=external_id,
        event_type=kind,
        queue=QueueName.LOW.value,
        payload=payload,
        sealed_headers=cipher.encrypt(orjson.dumps({SYNC_HEADER: who.name})),
        correlation_id=who.run_id,
    )


# -- a dry run ------------------------------------------------------------------------------------


def dry_run(
    ctx: JobContext,
    job_id: int,
    *,
    since: datetime | None = None,
    progress_line: ProgressLine | None = None,
) -> RunResult:
    """Pull and count what a run would create and what is already stored; writes nothing."""
    with ctx.sessions() as session:
        job = session.get(SyncJob, job_id)
        if job is None:
            raise HubError(f"no sync job {job_id}")
        tenant = session.get(Tenant, job.tenant_id)
        sync = SyncConfig.model_validate(job.definition or {})
        who = Started("", job_id, job.tenant_id, tenant.slug if tenant else "?", job.name, {}, None)
        start = since if since is not None else window_start(sync, job.high_water_mark, utcnow())
    progress = Progress()
    extractors = _extractors(sync)
    puller = Puller(sync, who.tenant_slug, http_client(ctx.cache), since=start)
    mark: datetime | None = None
    try:
        for page in puller.pages():
            found, page_mark = _identify(page, extractors, progress)
            mark = max(filter(None, (mark, page_mark)), default=None)
            ids = {external_id for external_id, _, _ in found}
            new = ids - stored_ids(ctx.engine, who.tenant_id, sync.source, list(ids))
            progress.pages += 1
            progress.items += len(page.items)
            progress.created += len(new)
            progress.duplicates += len(found) - len(new)
            if progress_line is not None:
                progress_line(progress)
    except HubError as exc:
        return _result(who, False, progress, start, None, exc.message)
    return _result(who, True, progress, start, mark)


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value)
    return text if 0 < len(text) <= 255 else None


def _result(
    started: Started,
    ok: bool,
    progress: Progress,
    since: datetime | None,
    mark: datetime | None,
    error: str | None = None,
) -> RunResult:
    return RunResult(
        started.job_id, started.name, started.tenant_slug, started.run_id, ok, progress, since,
        mark, error,
    )  # fmt: skip
