"""`deliver_batch`: send a batch of deliveries concurrently, each keeping its own fate.

    load the batch · take a lease on each (one UPDATE: `delivering` until the adapter timeout
    plus a margin) · per endpoint: circuit breaker, outgoing rate limit · send concurrently on
    the process's pooled clients · record every attempt (one multi-row INSERT) · then each one is
    delivered, retrying (a `retry_queue` row: the schedule lives in the database, so it survives
    a Redis flush) or dead (a `dead_letter` row; the event becomes `failed`)

A delivery that meets an open circuit or the endpoint's rate limit is deferred: rescheduled
without using an attempt; so is a deactivated tenant's, every TENANT_HOLD seconds until it is
activated again. Every write is conditional on still holding the lease, so a worker that
lost its lease (it stalled past it and the sweeper handed the delivery on) changes nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import OperationalError

from hub.core import dead_letters, metrics
from hub.core.context import JobContext
from hub.core.crypto import DecryptionError
from hub.core.models import (
    DeadLetterStage,
    DeliveryAttempt,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from hub.core.secrets import SecretCache
from hub.core.settings import Settings
from hub.delivery import pauses
from hub.delivery.adapters import DeliveryRef, Outcome, OutgoingRequest, Target, Verdict
from hub.delivery.breaker import CircuitBreaker, CircuitState, Gate
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from hub.delivery.registry import EndpointRegistry
from hub.delivery.retry import next_delay, policy_for
from hub.delivery.throttle import Throttle

log = logging.getLogger("hub.delivery.jobs")

SEND_THREADS = 16  # sends in flight per worker process (more only adds GIL contention)
CHUNK = 100  # deliveries leased, sent and recorded together
LEASE_MIN_MARGIN = 2.0  # seconds added to the adapter timeout, at least
MAX_ENDPOINT_TIMEOUT = 300.0  # EndpointConfig's bound
DEFER_SPREAD = 0.2  # deferred deliveries come back spread over 20 % more time
TENANT_HOLD = 30.0  # seconds between looks at a deactivated tenant's waiting deliveries
RUNTIME_KEY = "delivery"

TAKEABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


def lease_seconds(timeout: float, count: int = 1) -> float:
    """How long `count` deliveries sent together stay `delivering`: their rounds of sends on
    SEND_THREADS threads, each up to the adapter timeout, plus a margin (the timeout, >= 2 s)."""
    rounds = -(-count // SEND_THREADS)
    return timeout * rounds + max(LEASE_MIN_MARGIN, timeout)


def job_timeout_floor(settings: Settings) -> int:
    """An RQ job timeout always longer than any lease (a job killed mid-send duplicates it)."""
    return max(settings.job_timeout, int(lease_seconds(MAX_ENDPOINT_TIMEOUT, CHUNK)) + 60)


class DeliveryRuntime:
    """Per worker process: adapters with pooled clients, send threads, caches, Redis helpers."""

    def __init__(self, ctx: JobContext) -> None:
        egress = EgressPolicy.from_setting(ctx.settings.egress_allow)
        self.adapters = Adapters(SEND_THREADS, engine=ctx.engine, redis=ctx.redis, egress=egress)
        self.executor = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="deliver")
        self.registry = EndpointRegistry(ctx.engine, ctx.redis)
        self.secrets = SecretCache(ctx.engine, ctx.cipher, ctx.redis)
        self.throttle = Throttle(ctx.redis)
        self.redis = ctx.redis

    def breaker(self, name: str, config: EndpointConfig) -> CircuitBreaker:
        return CircuitBreaker(
            self.redis, name, failures=config.circuit.failures, recovery=config.circuit.recovery
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.adapters.close()


def runtime(ctx: JobContext) -> DeliveryRuntime:
    found = ctx.cache.get(RUNTIME_KEY)
    if not isinstance(found, DeliveryRuntime):
        found = ctx.cache[RUNTIME_KEY] = DeliveryRuntime(ctx)
    return found


@dataclass
class Item:
    """One leased delivery on its way."""

    id: str
    event_id: str
    tenant_id: int
    endpoint: str
    queue: str
    attempts: int
    correlation_id: str | None
    last_error: str | None = None
    config: EndpointConfig | None = None
    request: OutgoingRequest | None = None
    outcome: Outcome | None = None
    started_at: datetime | None = None
    duration_ms: int = 0
    defer_until: datetime | None = None
    defer_reason: str | None = None

    @property
    def attempt(self) -> int:
        return self.attempts + 1


def deliver_batch(ctx: JobContext, delivery_ids: Sequence[str]) -> dict[str, int]:
    """Deliver each id (skipping any already delivered, dead, or leased by another worker)."""
    rt = runtime(ctx)
    rt.registry.refresh()
    rt.secrets.refresh()
    unique = list(dict.fromkeys(delivery_ids))
    totals: Counter[str] = Counter()
    for start in range(0, len(unique), CHUNK):
        totals.update(_deliver_chunk(ctx, rt, unique[start : start + CHUNK]))
    return dict(totals)


def _takeable(now: datetime) -> Any:
    return and_(
        or_(
            WebhookDelivery.status.in_(TAKEABLE),
            and_(
                WebhookDelivery.status == DeliveryStatus.DELIVERING,
                WebhookDelivery.lease_expires_at < now,
            ),
        ),
        or_(
            WebhookDelivery.next_attempt_at.is_(None),
            WebhookDelivery.next_attempt_at <= now + timedelta(seconds=1),
        ),
    )


def _deliver_chunk(ctx: JobContext, rt: DeliveryRuntime, ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    now = utcnow()
    with ctx.engine.connect() as conn:
        heads = conn.execute(
            select(WebhookDelivery.id, WebhookDelivery.endpoint).where(
                WebhookDelivery.id.in_(ids), _takeable(now)
            )
        ).all()
    counts["skipped"] = len(ids) - len(heads)
    if heads:  # deliveries to a paused endpoint wait, untried (hub.delivery.pauses)
        heads, parked = pauses.hold_back(ctx.engine, heads, _takeable(now))
        if parked:
            counts["paused"] = parked
    if not heads:
        return counts
    timeouts = [c.timeout for _, name in heads if (c := rt.registry.endpoint(name)) is not None]
    lease = lease_seconds(max(timeouts, default=10.0), len(heads))
    # the lease's expiry doubles as our claim token: unique to the microsecond
    token = now + timedelta(seconds=lease, microseconds=random.randrange(1_000_000))
    head_ids = [row.id for row in heads]
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(head_ids), _takeable(now))
            .values(status=DeliveryStatus.DELIVERING, lease_expires_at=token, updated_at=now)
        )
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.event_id,
                WebhookDelivery.tenant_id,
                WebhookDelivery.endpoint,
                WebhookDelivery.queue,
                WebhookDelivery.attempts,
                WebhookDelivery.correlation_id,
                WebhookDelivery.last_error,
                WebhookDelivery.request,
            )
            .where(
                WebhookDelivery.id.in_(head_ids),
                WebhookDelivery.status == DeliveryStatus.DELIVERING,
                WebhookDelivery.lease_expires_at == token,
            )
            .order_by(WebhookDelivery.id)  # oldest first (ids sort by creation time)
        ).all()
    counts["skipped"] += len(head_ids) - len(rows)
    items = [_prepare(ctx, rt, row) for row in rows]
    _hold_inactive_tenants(ctx, items)
    to_send = _admit(rt, items, lease)
    _send_all(rt, to_send)
    try:
        counts.update(_finish(ctx, items, token))
    except OperationalError:  # a deadlock or a lost connection: the transaction rolled back
        log.warning("delivery.finish_retried", extra={"count": len(items)})
        counts.update(_finish(ctx, items, token))
    return counts


def _prepare(ctx: JobContext, rt: DeliveryRuntime, row: Any) -> Item:
    item = Item(
        id=row.id,
        event_id=row.event_id,
        tenant_id=row.tenant_id,
        endpoint=row.endpoint,
        queue=row.queue,
        attempts=row.attempts,
        correlation_id=row.correlation_id,
        last_error=row.last_error,
    )
    item.config = rt.registry.endpoint(row.endpoint)
    if item.config is None:
        item.outcome = Outcome(
            Verdict.DEAD, error_class="config", error=rt.registry.problem(row.endpoint)
        )
        return item
    if row.request is None:
        item.outcome = Outcome(Verdict.DEAD, error_class="purged", error="request was purged")
        return item
    try:
        item.request = OutgoingRequest.from_json(ctx.cipher.decrypt(row.request))
    except (DecryptionError, ValueError) as exc:
        item.outcome = Outcome(Verdict.DEAD, error_class="config", error=str(exc)[:200])
    return item


def _hold_inactive_tenants(ctx: JobContext, items: list[Item]) -> None:
    """A deactivated tenant's deliveries wait, whatever their state, without using an attempt."""
    tenant_ids = {item.tenant_id for item in items}
    with ctx.engine.connect() as conn:
        inactive = set(
            conn.scalars(
                select(Tenant.id).where(Tenant.id.in_(tenant_ids), Tenant.active.is_(False))
            )
        )
    held = [item for item in items if item.tenant_id in inactive]
    for item in held:
        item.outcome = None
    _defer(held, TENANT_HOLD, "tenant_inactive")


def _admit(rt: DeliveryRuntime, items: list[Item], lease: float) -> list[Item]:
    """Which items go now: per endpoint, the circuit breaker, then the rate limit."""
    by_endpoint: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        if item.outcome is None and item.defer_until is None:
            by_endpoint[item.endpoint].append(item)
    go: list[Item] = []
    for name, group in by_endpoint.items():
        config = group[0].config
        assert config is not None
        try:
            gate = rt.breaker(name, config).allow(probe_lease=lease)
        except RedisError:  # fail open: Redis holds counters, not the deliveries
            log.warning("delivery.breaker_unavailable", extra={"endpoint": name})
            gate = Gate(CircuitState.CLOSED, 0.0)
        if not gate.allowed:
            wait = gate.wait if gate.state == CircuitState.OPEN else max(gate.wait, 1.0)
            _defer(group, wait, "circuit_open")
            continue
        if gate.state == CircuitState.PROBE:
            _defer(group[1:], lease, "circuit_half_open")
            group = group[:1]
        if config.rate_limit:
            try:
                admitted, wait = rt.throttle.admit(name, config.rate_limit, len(group))
            except RedisError:
                log.warning("delivery.rate_limit_unavailable", extra={"endpoint": name})
                admitted, wait = len(group), 0.0
            _defer(group[admitted:], wait, "rate_limited")
            group = group[:admitted]
        go.extend(group)
    return go


def _defer(items: Iterable[Item], wait: float, reason: str) -> None:
    now = utcnow()
    for item in items:
        spread = wait * random.uniform(0, DEFER_SPREAD)
        item.defer_until = now + timedelta(seconds=wait + spread)
        item.defer_reason = reason


def _send_all(rt: DeliveryRuntime, items: list[Item]) -> None:
    """Send concurrently; then tell each endpoint's breaker how it went, in completion order."""
    if not items:
        return
    futures = {rt.executor.submit(_send_one, rt, item): item for item in items}
    failures: dict[str, list[bool]] = defaultdict(list)
    for future in as_completed(futures):
        item = futures[future]
        future.result()
        assert item.outcome is not None
        failures[item.endpoint].append(item.outcome.is_endpoint_failure)
    for name, results in failures.items():
        config = _config_of(items, name)
        breaker = rt.breaker(name, config)
        last_success = max((i for i, failed in enumerate(results) if not failed), default=-1)
        trailing = len(results) - last_success - 1
        try:
            if last_success >= 0:
                breaker.record_success()
            if trailing:
                breaker.record_failure(trailing)
        except RedisError:
            log.warning("delivery.breaker_unavailable", extra={"endpoint": name})


def _config_of(items: list[Item], name: str) -> EndpointConfig:
    config = next(item.config for item in items if item.endpoint == name)
    assert config is not None
    return config


def _send_one(rt: DeliveryRuntime, item: Item) -> None:
    assert item.config is not None and item.request is not None
    slug = rt.registry.tenant_slug(item.tenant_id)
    target = Target(item.endpoint, item.config, slug, rt.secrets)
    ref = DeliveryRef(item.id, item.attempt, item.correlation_id)
    item.started_at = utcnow()
    start = time.perf_counter()
    try:
        item.outcome = rt.adapters.for_kind(item.config.kind).send(item.request, target, ref)
    except Exception as exc:  # noqa: BLE001 - a bug must not strand the lease; retried later
        log.exception("delivery.adapter_crashed", extra={"delivery_id": item.id})
        item.outcome = Outcome(Verdict.RETRY, error_class="internal", error=type(exc).__name__)
    item.duration_ms = int((time.perf_counter() - start) * 1000)


@dataclass
class Decision:
    item: Item
    status: DeliveryStatus
    attempts: int
    next_at: datetime | None = None
    reason: str | None = None  # retry_queue reason, or the dead letter's reason
    error: str | None = None


def _decide(item: Item, now: datetime) -> Decision:
    if item.outcome is None:  # deferred: no attempt used
        return Decision(
            item, DeliveryStatus.RETRYING, item.attempts, item.defer_until, item.defer_reason
        )
    outcome = item.outcome
    error = outcome.error or outcome.error_class
    sent = item.started_at is not None
    attempts = item.attempt if sent else item.attempts
    if outcome.verdict == Verdict.DELIVERED:
        return Decision(item, DeliveryStatus.DELIVERED, attempts)
    if outcome.verdict == Verdict.DEAD:
        return Decision(
            item, DeliveryStatus.DEAD, attempts, reason=f"permanent: {error}", error=error
        )
    assert item.config is not None
    delay = next_delay(
        item.attempt, policy_for(item.config.kind, item.config.retry), outcome.retry_after
    )
    if delay is None:
        reason = f"gave up after {attempts} attempts: {error}"
        return Decision(item, DeliveryStatus.DEAD, attempts, reason=reason, error=error)
    return Decision(
        item,
        DeliveryStatus.RETRYING,
        attempts,
        next_at=now + timedelta(seconds=delay),
        reason=outcome.error_class,
        error=error,
    )


def _finish(ctx: JobContext, items: list[Item], token: datetime) -> Counter[str]:
    now = utcnow()
    decisions = [_decide(item, now) for item in items]
    counts: Counter[str] = Counter()
    with ctx.engine.begin() as conn:
        held = set(
            conn.scalars(
                select(WebhookDelivery.id)
                .where(
                    WebhookDelivery.id.in_([d.item.id for d in decisions]),
                    WebhookDelivery.status == DeliveryStatus.DELIVERING,
                    WebhookDelivery.lease_expires_at == token,
                )
                .with_for_update()
            )
        )
        _insert_attempts(conn, decisions)
        mine = [d for d in decisions if d.item.id in held]
        for lost in (d for d in decisions if d.item.id not in held):
            log.warning("delivery.lease_lost", extra={"delivery_id": lost.item.id})
            counts["lease_lost"] += 1
        _write_statuses(conn, mine, now)
        _write_retry_queue(conn, mine)
        _write_dead(conn, [d for d in mine if d.status == DeliveryStatus.DEAD], now)
    for decision in mine:
        outcome = _log_decision(decision, now)
        counts[outcome] += 1
        seconds = decision.item.duration_ms / 1000 if decision.item.started_at else None
        metrics.delivery_attempted(decision.item.endpoint, outcome, seconds)
    return counts


def _insert_attempts(conn: Connection, decisions: list[Decision]) -> None:
    rows = []
    for d in decisions:
        item, outcome = d.item, d.item.outcome
        if outcome is None or item.started_at is None:
            continue
        rows.append(
            {
                "delivery_id": item.id,
                "number": item.attempt,
                "started_at": item.started_at,
                "duration_ms": item.duration_ms,
                "status_code": outcome.status_code,
                "response_excerpt": outcome.excerpt,
                "error_class": outcome.error_class,
                "outcome": "retry" if d.status == DeliveryStatus.RETRYING else d.status.value,
            }
        )
    if rows:
        conn.execute(insert(DeliveryAttempt), rows)


def _write_statuses(conn: Connection, mine: list[Decision], now: datetime) -> None:
    delivered = [d for d in mine if d.status == DeliveryStatus.DELIVERED]
    if delivered:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([d.item.id for d in delivered]))
            .values(
                status=DeliveryStatus.DELIVERED,
                attempts=WebhookDelivery.attempts + 1,
                delivered_at=now,
                lease_expires_at=None,
                next_attempt_at=None,
                last_error=None,
                updated_at=now,
            )
        )
    others = [d for d in mine if d.status != DeliveryStatus.DELIVERED]
    if others:
        table = cast(Table, WebhookDelivery.__table__)
        conn.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                last_error=bindparam("b_error"),
                lease_expires_at=None,
                updated_at=now,
            ),
            [
                {
                    "b_id": d.item.id,
                    "b_status": d.status,
                    "b_attempts": d.attempts,
                    "b_next": d.next_at,
                    "b_error": d.error if d.error is not None else d.item.last_error,
                }
                for d in others
            ],
        )


def _write_retry_queue(conn: Connection, mine: list[Decision]) -> None:
    if not mine:
        return
    conn.execute(delete(RetryQueue).where(RetryQueue.delivery_id.in_([d.item.id for d in mine])))
    rows = [
        {
            "delivery_id": d.item.id,
            "next_retry_at": d.next_at,
            "attempt": d.attempts,
            "reason": (d.reason or "")[:255] or None,
            "created_at": utcnow(),
        }
        for d in mine
        if d.status == DeliveryStatus.RETRYING and d.next_at is not None
    ]
    if rows:
        conn.execute(insert(RetryQueue), rows)


def _write_dead(conn: Connection, dead: list[Decision], now: datetime) -> None:
    if not dead:
        return
    event_ids = sorted({d.item.event_id for d in dead})
    sources = dict(
        conn.execute(
            select(IntegrationEvent.id, IntegrationEvent.source).where(
                IntegrationEvent.id.in_(event_ids)
            )
        ).all()
    )
    dead_letters.create_many(
        conn,
        [
            dead_letters.new_row(
                tenant_id=d.item.tenant_id,
                event_id=d.item.event_id,
                delivery_id=d.item.id,
                source=sources.get(d.item.event_id, "?"),
                endpoint=d.item.endpoint,
                stage=DeadLetterStage.DELIVERY,
                reason=d.reason or "dead",
                last_error=d.error,
                attempts=d.attempts,
                now=now,
            )
            for d in dead
        ],
    )
    table = cast(Table, IntegrationEvent.__table__)
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(status=EventStatus.FAILED, error=bindparam("b_error"), updated_at=now),
        [
            {
                "b_id": d.item.event_id,
                "b_error": f"delivery {d.item.id} to {d.item.endpoint}: {d.reason}",
            }
            for d in dead
        ],
    )


def _log_decision(d: Decision, now: datetime) -> str:
    item, outcome = d.item, d.item.outcome
    if outcome is None:
        delay = (d.next_at - now).total_seconds() if d.next_at else None
        log.info(
            "delivery.deferred",
            extra={
                "delivery_id": item.id,
                "endpoint": item.endpoint,
                "reason": d.reason,
                "delay_s": delay,
                "correlation_id": item.correlation_id,
            },
        )
        return "deferred"
    fields = {
        "delivery_id": item.id,
        "event_id": item.event_id,
        "endpoint": item.endpoint,
        "attempt": item.attempt,
        "status_code": outcome.status_code,
        "duration_ms": item.duration_ms,
        "error_class": outcome.error_class,
        "correlation_id": item.correlation_id,
    }
    if d.status == DeliveryStatus.DELIVERED:
        log.info("delivery.delivered", extra=fields)
        return "delivered"
    if d.status == DeliveryStatus.DEAD:
        log.warning("delivery.dead", extra=fields)  # the reason may quote the target: not logged
        return "dead"
    delay = (d.next_at - now).total_seconds() if d.next_at else None
    log.info("delivery.retry", extra=fields | {"delay_s": delay})
    return "retrying"
