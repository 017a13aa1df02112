"""`deliver_batch`: send a batch of deliveries, each endpoint's group on its own lane.

    load the batch · per endpoint: room in its lane (hub.delivery.lanes), then a lease on each
    delivery (one UPDATE: `delivering` until its rounds of sends at the endpoint's timeout plus
    a margin) · circuit breaker, outgoing rate limit · send on the endpoint's own threads · as
    soon as a group's last send returns: record its attempts (one multi-row INSERT), then each
    one is delivered, retrying (a `retry_queue` row: the schedule lives in the database, so it
    survives a Redis flush) or dead (a `dead_letter` row; the event becomes `failed`)

A slow endpoint fills its own lane, never the threads of another: a group to a fast target is
finished while a slow one's sends are still out. The worker's job does not wait for the sends
(`wait=False`): it takes the next job while the lanes work, and each lane takes at most a few
rounds of sends; the rest wait in the database. A send starts only while the lease leaves its
whole timeout (the total send deadline): otherwise it is deferred, not sent late.

A delivery that meets an open circuit, the endpoint's rate limit or a full lane is deferred:
rescheduled without using an attempt; so is a deactivated tenant's, every TENANT_HOLD seconds
until it is activated again. Every write is conditional on still holding the lease, so a worker
that lost its lease (it stalled past it and the sweeper handed the delivery on) changes nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import OperationalError

from hub.core import clock, dead_letters, metrics
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
from hub.delivery.lanes import MAX_CONCURRENCY, Lane, Lanes, Reservation, margin
from hub.delivery.registry import EndpointRegistry
from hub.delivery.retry import next_delay, policy_for
from hub.delivery.throttle import Throttle

log = logging.getLogger("hub.delivery.jobs")

CHUNK = 100  # deliveries leased and sent together
MAX_ENDPOINT_TIMEOUT = 300.0  # EndpointConfig's bound
DEFER_SPREAD = 0.2  # deferred deliveries come back spread over 20 % more time
TENANT_HOLD = 30.0  # seconds between looks at a deactivated tenant's waiting deliveries
RUNTIME_KEY = "delivery"
UNKNOWN_ENDPOINT_LEASE = 30.0  # seconds; such deliveries end dead at once (configuration)

TAKEABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


def job_timeout_floor(settings: Settings) -> int:
    """An RQ job timeout always longer than any lease (a job killed mid-send duplicates it)."""
    longest = MAX_ENDPOINT_TIMEOUT * CHUNK + margin(MAX_ENDPOINT_TIMEOUT)
    return max(settings.job_timeout, int(longest) + 60)


class DeliveryRuntime:
    """Per worker process: adapters with pooled clients, endpoint lanes, caches, Redis helpers."""

    def __init__(self, ctx: JobContext) -> None:
        egress = EgressPolicy.from_setting(ctx.settings.egress_allow)
        self.adapters = Adapters(MAX_CONCURRENCY, engine=ctx.engine, redis=ctx.redis, egress=egress)
        self.lanes = Lanes()
        self.registry = EndpointRegistry(ctx.engine, ctx.redis)
        self.secrets = SecretCache(ctx.engine, ctx.cipher, ctx.redis)
        self.throttle = Throttle(ctx.redis)
        self.redis = ctx.redis
        self.groups: set[Future[Counter[str]]] = set()  # handed to lanes, not yet finished
        self._groups_lock = threading.Lock()

    def track(self, group: Future[Counter[str]]) -> None:
        with self._groups_lock:
            self.groups.add(group)

        def forget(done: Future[Counter[str]]) -> None:
            with self._groups_lock:
                self.groups.discard(done)

        group.add_done_callback(forget)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every group handed to a lane is finished (a burst worker's last step)."""
        with self._groups_lock:
            groups = list(self.groups)
        wait_all(groups, timeout=timeout)

    def breaker(self, name: str, config: EndpointConfig) -> CircuitBreaker:
        return CircuitBreaker(
            self.redis, name, failures=config.circuit.failures, recovery=config.circuit.recovery
        )

    def close(self) -> None:
        self.lanes.close()  # waits for the sends in flight, which finish their groups
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
    defer_wait: float | None = None  # seconds from the decision until it is tried again
    defer_reason: str | None = None

    @property
    def attempt(self) -> int:
        return self.attempts + 1


@dataclass
class Group:
    """One endpoint's leased deliveries of a chunk, sharing a lease token and a lane."""

    endpoint: str
    config: EndpointConfig | None
    lane: Lane | None
    room: Reservation | None
    token: datetime
    send_by: float  # time.monotonic() after which no send starts (the lease would not cover it)
    ids: list[str] = field(default_factory=list)  # leased
    over: list[str] = field(default_factory=list)  # no room in the lane: deferred
    items: list[Item] = field(default_factory=list)


def deliver_batch(
    ctx: JobContext, delivery_ids: Sequence[str], *, wait: bool = True
) -> dict[str, int]:
    """Deliver each id (skipping any already delivered, dead, or leased by another worker).

    With `wait` (tests, replay) it returns once every group is finished, with the counts by
    outcome; without (the worker's job) once every group is finished or handed to its lane,
    counting the handed ones as `sending`.
    """
    rt = runtime(ctx)
    rt.registry.refresh()
    rt.secrets.refresh()
    unique = list(dict.fromkeys(delivery_ids))
    totals: Counter[str] = Counter()
    pending: list[Future[Counter[str]]] = []
    for start in range(0, len(unique), CHUNK):
        totals.update(_deliver_chunk(ctx, rt, unique[start : start + CHUNK], pending))
    if wait:
        for future in pending:
            totals.update(future.result())
    else:
        totals["sending"] += len(pending)
    return {key: value for key, value in totals.items() if value or key == "skipped"}


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


def _deliver_chunk(
    ctx: JobContext, rt: DeliveryRuntime, ids: list[str], pending: list[Future[Counter[str]]]
) -> Counter[str]:
    counts: Counter[str] = Counter()
    now = clock.now(ctx.engine)  # leases are compared on every host: the database's clock
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
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for row in heads:
        by_endpoint[row.endpoint].append(row.id)
    groups = [_claim(ctx, rt, name, group_ids, now) for name, group_ids in by_endpoint.items()]
    rows = _load(ctx, groups)
    counts["skipped"] += sum(len(g.ids) + len(g.over) for g in groups) - len(rows)
    items = {row.id: _prepare(ctx, rt, row) for row in rows}
    _hold_inactive_tenants(ctx, list(items.values()))
    for group in groups:
        group.items = [items[i] for i in group.ids + group.over if i in items]
        over = [items[i] for i in group.over if i in items and items[i].outcome is None]
        to_send = _admit(rt, group)
        if over and group.room is not None:
            _defer_over(group, over, group.room.wait)
        if group.lane is not None and group.room is not None:
            group.lane.release(group.room.taken - len(to_send))
        now_done = [item for item in group.items if item not in to_send]
        if now_done:
            counts.update(_finish_safely(ctx, now_done, group.token))
        if to_send:
            pending.append(_send_group(ctx, rt, group, to_send))
    return counts


def _claim(ctx: JobContext, rt: DeliveryRuntime, name: str, ids: list[str], now: datetime) -> Group:
    """Room in the endpoint's lane, then a lease on its deliveries (the whole group: the ones
    left without room are deferred under the same lease)."""
    config = rt.registry.endpoint(name)
    lane = room = None
    lease = UNKNOWN_ENDPOINT_LEASE
    if config is not None:
        lane = rt.lanes.get(name, config)
        room = lane.reserve(len(ids), config.timeout)
        lease = room.lease
    # the lease's expiry doubles as the group's claim token: unique to the microsecond
    token = now + timedelta(seconds=lease, microseconds=random.randrange(1_000_000))
    with ctx.engine.begin() as conn:
        conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), _takeable(now))
            .values(status=DeliveryStatus.DELIVERING, lease_expires_at=token, updated_at=now)
        )
    taken = room.taken if room is not None else len(ids)
    timeout = config.timeout if config is not None else 0.0
    # a send must be able to take its whole timeout and leave half the margin for the writes
    send_by = time.monotonic() + lease - timeout - margin(timeout) / 2
    return Group(name, config, lane, room, token, send_by, ids[:taken], ids[taken:])


def _load(ctx: JobContext, groups: list[Group]) -> list[Any]:
    """The leased rows (the ones another worker took in between are not among them)."""
    rows: list[Any] = []
    with ctx.engine.connect() as conn:
        for group in groups:
            rows.extend(
                conn.execute(
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
                        WebhookDelivery.id.in_(group.ids + group.over),
                        WebhookDelivery.status == DeliveryStatus.DELIVERING,
                        WebhookDelivery.lease_expires_at == group.token,
                    )
                    .order_by(WebhookDelivery.id)  # oldest first (ids sort by creation time)
                ).all()
            )
    return rows


def _finish_safely(ctx: JobContext, items: list[Item], token: datetime) -> Counter[str]:
    try:
        return _finish(ctx, items, token)
    except OperationalError:  # a deadlock or a lost connection: the transaction rolled back
        log.warning("delivery.finish_retried", extra={"count": len(items)})
        return _finish(ctx, items, token)


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


def _admit(rt: DeliveryRuntime, group: Group) -> list[Item]:
    """Which of the group's items go now: the circuit breaker, then the rate limit."""
    taken = set(group.ids)
    items = [i for i in group.items if i.id in taken and i.outcome is None and i.defer_wait is None]
    if not items:
        return []
    name, config = group.endpoint, group.config
    assert config is not None and group.room is not None
    lease = group.room.lease
    try:
        gate = rt.breaker(name, config).allow(probe_lease=lease)
    except RedisError:  # fail open: Redis holds counters, not the deliveries
        log.warning("delivery.breaker_unavailable", extra={"endpoint": name})
        gate = Gate(CircuitState.CLOSED, 0.0)
    if not gate.allowed:
        wait = gate.wait if gate.state == CircuitState.OPEN else max(gate.wait, 1.0)
        _defer(items, wait, "circuit_open")
        return []
    if gate.state == CircuitState.PROBE:
        _defer(items[1:], lease, "circuit_half_open")
        items = items[:1]
    if config.rate_limit:
        try:
            admitted, wait = rt.throttle.admit(name, config.rate_limit, len(items))
        except RedisError:
            log.warning("delivery.rate_limit_unavailable", extra={"endpoint": name})
            admitted, wait = len(items), 0.0
        _defer(items[admitted:], wait, "rate_limited")
        items = items[:admitted]
    return items


def _defer_over(group: Group, over: list[Item], busy_wait: float) -> None:
    """The items without room in the lane wait: as long as the circuit or the rate limit makes
    the group's others wait when that is what holds the endpoint, else until the lane drains."""
    held = [i for i in group.items if i.defer_reason in ("circuit_open", "rate_limited")]
    if held:
        latest = max(held, key=lambda i: cast(float, i.defer_wait))
        assert latest.defer_wait is not None and latest.defer_reason is not None
        for item in over:  # already spread: as long as that one
            item.defer_wait, item.defer_reason = latest.defer_wait, latest.defer_reason
    else:
        _defer(over, busy_wait, "endpoint_busy")


def _defer(items: Iterable[Item], wait: float, reason: str) -> None:
    for item in items:
        spread = wait * random.uniform(0, DEFER_SPREAD)
        item.defer_wait = wait + spread
        item.defer_reason = reason


def _send_group(
    ctx: JobContext, rt: DeliveryRuntime, group: Group, to_send: list[Item]
) -> Future[Counter[str]]:
    """Hand the sends to the endpoint's lane; the last one to return finishes the group."""
    assert group.lane is not None
    lane = group.lane
    done: Future[Counter[str]] = Future()
    lock = threading.Lock()
    returned: list[Item] = []
    failures: list[bool] = []  # of the sends made, in completion order, for the breaker

    def send(item: Item) -> None:
        try:
            if time.monotonic() > group.send_by:  # the lease would not cover the whole send
                _defer([item], 1.0, "send_deadline")
            else:
                _send_one(rt, item)
                lane.observe(item.duration_ms / 1000)
        finally:
            lane.release(1)
            with lock:
                returned.append(item)
                if item.outcome is not None:
                    failures.append(item.outcome.is_endpoint_failure)
                last = len(returned) == len(to_send)
            if last:
                _complete(ctx, rt, group, to_send, failures, done)

    rt.track(done)
    for item in to_send:
        lane.submit(lambda item=item: send(item))  # type: ignore[misc]
    return done


def _complete(
    ctx: JobContext,
    rt: DeliveryRuntime,
    group: Group,
    sent: list[Item],
    failures: list[bool],
    done: Future[Counter[str]],
) -> None:
    try:
        _record_breaker(rt, group, failures)
        done.set_result(_finish_safely(ctx, sent, group.token))
    except Exception as exc:  # noqa: BLE001 - the lease hands the group on; logged here
        log.exception("delivery.finish_failed", extra={"endpoint": group.endpoint})
        done.set_exception(exc)


def _record_breaker(rt: DeliveryRuntime, group: Group, failures: list[bool]) -> None:
    """Tell the endpoint's breaker how the sends went, in completion order."""
    assert group.config is not None
    breaker = rt.breaker(group.endpoint, group.config)
    last_success = max((i for i, failed in enumerate(failures) if not failed), default=-1)
    trailing = len(failures) - last_success - 1
    try:
        if last_success >= 0:
            breaker.record_success()
        if trailing:
            breaker.record_failure(trailing)
    except RedisError:
        log.warning("delivery.breaker_unavailable", extra={"endpoint": group.endpoint})


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
            item,
            DeliveryStatus.RETRYING,
            item.attempts,
            now + timedelta(seconds=item.defer_wait or 0.0),
            item.defer_reason,
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
    now = clock.now(ctx.engine)  # due times are the sweeper's to compare: the database's clock
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
