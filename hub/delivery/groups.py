"""One endpoint's part of a chunk: claimed, prepared, admitted, sent on its lane.

    claim: room in the endpoint's lane (hub.delivery.lanes), then a lease on each delivery (one
    UPDATE: `delivering` until its rounds of sends at the endpoint's timeout plus a margin) and
    the leased rows read back, every group of a chunk in one transaction · prepare (decrypt
    the request) · admit: circuit breaker, outgoing rate limit · send
    on the endpoint's own threads · the last send to return finishes the group
    (hub.delivery.outcomes)

A delivery that meets an open circuit, the endpoint's rate limit or a full lane is deferred:
rescheduled without using an attempt; so is a deactivated tenant's, every TENANT_HOLD seconds
until it is activated again. A send starts only while the lease leaves its whole timeout (the
total send deadline): otherwise it is deferred, not sent late.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from redis.exceptions import RedisError
from sqlalchemy import and_, bindparam, or_, select, update

from hub.core.context import JobContext
from hub.core.crypto import DecryptionError
from hub.core.models import DeliveryStatus, WebhookDelivery, utcnow
from hub.delivery.adapters import DeliveryRef, Outcome, OutgoingRequest, Target, Verdict
from hub.delivery.breaker import CircuitState, Gate
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.lanes import ROOM_WAIT, Lane, Reservation, margin
from hub.delivery.outcomes import Item, finish_safely
from hub.delivery.runtime import DeliveryRuntime

log = logging.getLogger("hub.delivery.jobs")  # the deliver job's lines keep one logger

DEFER_SPREAD = 0.2  # deferred deliveries come back spread over 20 % more time
TENANT_HOLD = 30.0  # seconds between looks at a deactivated tenant's waiting deliveries
UNKNOWN_ENDPOINT_LEASE = 30.0  # seconds; such deliveries end dead at once (configuration)

TAKEABLE = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


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


def _takeable(now: Any, soon: Any) -> Any:
    return and_(
        or_(
            WebhookDelivery.status.in_(TAKEABLE),
            and_(
                WebhookDelivery.status == DeliveryStatus.DELIVERING,
                WebhookDelivery.lease_expires_at < now,
            ),
        ),
        or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= soon),
    )


SOON = timedelta(seconds=1)  # a delivery due this close is taken now


def takeable(now: datetime) -> Any:
    """The deliveries a job may lease at `now`."""
    return _takeable(now, now + SOON)


# the same, for statements built once: with takeable_at(now)'s parameters
TAKEABLE_NOW = _takeable(bindparam("b_now"), bindparam("b_soon"))


def takeable_at(now: datetime) -> dict[str, datetime]:
    """The parameters of TAKEABLE_NOW at `now`."""
    return {"b_now": now, "b_soon": now + SOON}


# a deliver chunk's lease and read-back, built once (building costs more CPU than running them)
_LEASE = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id.in_(bindparam("b_ids", expanding=True)), TAKEABLE_NOW)
    .values(
        status=DeliveryStatus.DELIVERING,
        lease_expires_at=bindparam("b_token"),
        updated_at=bindparam("b_now"),
    )
)
_LEASED = (
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
        WebhookDelivery.id.in_(bindparam("b_ids", expanding=True)),
        WebhookDelivery.status == DeliveryStatus.DELIVERING,
        WebhookDelivery.lease_expires_at == bindparam("b_token"),
    )
    .order_by(WebhookDelivery.id)  # oldest first (ids sort by creation time)
)


def claim(
    ctx: JobContext, rt: DeliveryRuntime, by_endpoint: dict[str, list[str]], now: datetime
) -> tuple[list[Group], list[Any]]:
    """Room in each endpoint's lane, then a lease on its deliveries (the whole group: the ones
    left without room are deferred under the same lease), and the leased rows: one transaction
    for every group of a chunk (the ones another worker took in between are not among them)."""
    groups = [_plan(rt, name, ids, now) for name, ids in by_endpoint.items()]
    rows: list[Any] = []
    with ctx.engine.begin() as conn:
        for group in groups:
            conn.execute(
                _LEASE,
                {"b_ids": group.ids + group.over, "b_token": group.token, **takeable_at(now)},
            )
        for group in groups:
            rows.extend(
                conn.execute(_LEASED, {"b_ids": group.ids + group.over, "b_token": group.token})
            )
    return groups, rows


@dataclass
class Routed:
    """Deliveries a routing job inserts leased to itself, to send once its commit is done."""

    groups: list[Group] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    def release(self) -> None:
        """The insert did not commit: give the lanes back their room."""
        for group in self.groups:
            if group.lane is not None and group.room is not None:
                group.lane.release(group.room.taken)
        self.groups, self.items = [], []


def lease_routed(
    rt: DeliveryRuntime,
    deliveries: list[dict[str, Any]],
    requests: dict[str, dict[str, Any]],
    now: datetime,
) -> Routed:
    """Lease new deliveries (`webhook_deliveries` values, about to be inserted; `requests`:
    each one's request as the route built it) to this process where their endpoint's lane has
    room now (no wait: routing goes on): each taken one is marked `delivering` under its
    group's token in place, and becomes an item ready to send. The others stay as they are."""
    by_endpoint: dict[str, list[dict[str, Any]]] = {}
    for values in deliveries:
        if rt.registry.endpoint(values["endpoint"]) is not None:
            by_endpoint.setdefault(values["endpoint"], []).append(values)
    routed = Routed()
    for name, group_values in by_endpoint.items():
        group = _plan(rt, name, [v["id"] for v in group_values], now, wait=0.0)
        group.over = []  # without room: left pending, for a deliver job
        if not group.ids:
            continue
        routed.groups.append(group)
        for values in group_values[: len(group.ids)]:
            values["status"] = DeliveryStatus.DELIVERING
            values["lease_expires_at"] = group.token
            routed.items.append(
                Item(
                    id=values["id"],
                    event_id=values["event_id"],
                    tenant_id=values["tenant_id"],
                    endpoint=name,
                    queue=values["queue"],
                    attempts=0,
                    correlation_id=values["correlation_id"],
                    config=group.config,
                    request=OutgoingRequest.from_dict(requests[values["id"]]),
                )
            )
    return routed


def _plan(
    rt: DeliveryRuntime, name: str, ids: list[str], now: datetime, *, wait: float = ROOM_WAIT
) -> Group:
    """The group's room in its lane and its lease (the claim token)."""
    config = rt.registry.endpoint(name)
    lane = room = None
    lease = UNKNOWN_ENDPOINT_LEASE
    if config is not None:
        lane = rt.lanes.get(name, config)
        room = lane.reserve(len(ids), config.timeout, wait=wait)
        lease = room.lease
    # the lease's expiry doubles as the group's claim token: unique to the microsecond
    token = now + timedelta(seconds=lease, microseconds=random.randrange(1_000_000))
    taken = room.taken if room is not None else len(ids)
    timeout = config.timeout if config is not None else 0.0
    # a send must be able to take its whole timeout and leave half the margin for the writes
    send_by = time.monotonic() + lease - timeout - margin(timeout) / 2
    return Group(name, config, lane, room, token, send_by, ids[:taken], ids[taken:])


def prepare(ctx: JobContext, rt: DeliveryRuntime, row: Any) -> Item:
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


def hold_inactive_tenants(items: list[Item], inactive: set[int]) -> None:
    """A deactivated tenant's deliveries wait, whatever their state, without using an attempt
    (`inactive`: the tenants found deactivated when the chunk was read)."""
    held = [item for item in items if item.tenant_id in inactive]
    for item in held:
        item.outcome = None
    _defer(held, TENANT_HOLD, "tenant_inactive")


def admit(rt: DeliveryRuntime, group: Group) -> list[Item]:
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


def defer_over(group: Group, over: list[Item], busy_wait: float) -> None:
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


def send_group(
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

    # a few tasks that take the sends one after another, not a task (and a Future) per send:
    # as many sends run at once as the lane has threads
    waiting = deque(to_send)

    def take_turns() -> None:
        while True:
            try:
                item = waiting.popleft()
            except IndexError:
                return
            send(item)

    rt.track(done)
    for _ in range(min(len(to_send), lane.concurrency)):
        lane.submit(take_turns)
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
        done.set_result(finish_safely(ctx, sent, group.token))
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
