"""`deliver_batch`: send a batch of deliveries, each endpoint's group on its own lane.

    load the batch · per endpoint: room in its lane, a lease on each delivery, the breaker and
    the rate limit, sends on the endpoint's own threads (hub.delivery.groups) · as soon as a
    group's last send returns: its attempts, statuses, retries and dead letters in one
    transaction (hub.delivery.outcomes) · the process's adapters, lanes and caches live across
    jobs (hub.delivery.runtime)

A slow endpoint fills its own lane, never the threads of another: a group to a fast target is
finished while a slow one's sends are still out. The worker's job does not wait for the sends
(`wait=False`): it takes the next job while the lanes work, and each lane takes at most a few
rounds of sends; the rest wait in the database.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future

from sqlalchemy import bindparam, select

from hub.core import clock
from hub.core.context import JobContext
from hub.core.models import EndpointPause, Tenant, WebhookDelivery
from hub.core.settings import Settings
from hub.delivery import pauses
from hub.delivery.groups import (
    TAKEABLE_NOW,
    Group,
    Routed,
    admit,
    claim,
    defer_over,
    hold_inactive_tenants,
    prepare,
    send_group,
    takeable,
    takeable_at,
)
from hub.delivery.lanes import margin
from hub.delivery.outcomes import Item, finish_safely
from hub.delivery.runtime import DeliveryRuntime, runtime

CHUNK = 100  # deliveries leased and sent together
MAX_ENDPOINT_TIMEOUT = 300.0  # EndpointConfig's bound

# a chunk's deliveries still to take, with their endpoint's pause and tenant's state (built once)
_HEADS = (
    select(
        WebhookDelivery.id,
        WebhookDelivery.endpoint,
        WebhookDelivery.tenant_id,
        EndpointPause.endpoint.is_not(None).label("paused"),
        Tenant.active,
    )
    .join(Tenant, Tenant.id == WebhookDelivery.tenant_id)
    .outerjoin(EndpointPause, EndpointPause.endpoint == WebhookDelivery.endpoint)
    .where(WebhookDelivery.id.in_(bindparam("b_ids", expanding=True)), TAKEABLE_NOW)
)


def job_timeout_floor(settings: Settings) -> int:
    """An RQ job timeout always longer than any lease (a job killed mid-send duplicates it)."""
    longest = MAX_ENDPOINT_TIMEOUT * CHUNK + margin(MAX_ENDPOINT_TIMEOUT)
    return max(settings.job_timeout, int(longest) + 60)


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


def _deliver_chunk(
    ctx: JobContext, rt: DeliveryRuntime, ids: list[str], pending: list[Future[Counter[str]]]
) -> Counter[str]:
    counts: Counter[str] = Counter()
    now = clock.now(ctx.engine)  # leases are compared on every host: the database's clock
    with ctx.engine.connect() as conn:  # with its endpoint's pause and its tenant's state
        heads = conn.execute(_HEADS, {"b_ids": ids, **takeable_at(now)}).all()
    counts["skipped"] = len(ids) - len(heads)
    inactive = {row.tenant_id for row in heads if not row.active}
    if any(row.paused for row in heads):  # they wait, untried (hub.delivery.pauses)
        heads, parked = pauses.hold_back(ctx.engine, heads, takeable(now))
        if parked:
            counts["paused"] = parked
    by_endpoint: dict[str, list[str]] = defaultdict(list)
    for row in heads:
        by_endpoint[row.endpoint].append(row.id)
    groups, rows = claim(ctx, rt, by_endpoint, now) if by_endpoint else ([], [])
    counts["skipped"] += sum(len(g.ids) + len(g.over) for g in groups) - len(rows)
    items = {row.id: prepare(ctx, rt, row) for row in rows}
    counts.update(_start(ctx, rt, groups, items, inactive, pending))
    return counts


def send_routed(ctx: JobContext, routed: Routed) -> Counter[str]:
    """Send the deliveries `process_events` created already leased (`lease_routed`), right
    after its commit: no deliver job, no second read of what the routing job just wrote."""
    pending: list[Future[Counter[str]]] = []
    items = {item.id: item for item in routed.items}
    counts = _start(ctx, runtime(ctx), routed.groups, items, set(), pending)
    counts["sending"] += len(pending)
    return counts


def _start(
    ctx: JobContext,
    rt: DeliveryRuntime,
    groups: list[Group],
    items: dict[str, Item],
    inactive: set[int],
    pending: list[Future[Counter[str]]],
) -> Counter[str]:
    """Admit each group's sends of the leased items and hand them to its lane; finish at once
    what does not go (deferred, dead on its configuration)."""
    counts: Counter[str] = Counter()
    hold_inactive_tenants(list(items.values()), inactive)
    for group in groups:
        group.items = [items[i] for i in group.ids + group.over if i in items]
        over = [items[i] for i in group.over if i in items and items[i].outcome is None]
        to_send = admit(rt, group)
        if over and group.room is not None:
            defer_over(group, over, group.room.wait)
        if group.lane is not None and group.room is not None:
            group.lane.release(group.room.taken - len(to_send))
        sending = {item.id for item in to_send}
        now_done = [item for item in group.items if item.id not in sending]
        if now_done:
            counts.update(finish_safely(ctx, now_done, group.token))
        if to_send:
            pending.append(send_group(ctx, rt, group, to_send))
    return counts
