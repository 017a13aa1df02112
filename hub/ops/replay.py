"""Replay: put what failed back through, from the CLI, the admin API or the RQ dashboard.

Two halves, so the operator's command is quick and every state change happens in a worker:

Asking (`request_*`, called by `hub replay` and `/admin/...`): pick the dead letters or events,
say what would happen to each (`dry_run`), and enqueue jobs carrying their ids: one item on the
`retry` queue, a bulk run on `low`. Asking changes nothing stored; Redis down is a clear error.

Doing (the RQ jobs `workers.jobs.replay` and `workers.jobs.remap`):

- a delivery's dead letter: the same delivery (same `webhook-id`) is tried once more through
  `deliver_batch`. Delivered: the dead letter becomes `replayed` (and its event `processed` when
  nothing else of it is dead). Dead again: the dead letter stays open with the new error (the
  duplicate the delivery code opened is folded into it) and the job fails, so it shows among the
  dashboard's failed jobs, where "requeue" runs it again once the target is fixed. Retried
  (attempts were left): it stays open until a later attempt delivers it, when the sweeper task
  `close_delivered_dead_letters` closes it.
- remap (`--remap`, and dead letters of the mapping stage): the event runs through today's
  mappings again: missing deliveries are created, and deliveries not yet delivered get today's
  body before being sent again.

Replaying something already delivered, or a dead letter already closed, does nothing and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from redis import Redis
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from hub.core import audit, dead_letters, metrics
from hub.core.context import JobContext, SweepContext
from hub.core.dead_letters import DeadLetterFilter
from hub.core.errors import BadRequest, NotFound, ReplayFailed
from hub.core.models import (
    DeadLetter,
    DeadLetterStage,
    DeadLetterStatus,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from hub.core.queues import REMAP, REPLAY, QueueName, enqueue_ids
from hub.core.tenants import TenantSettings
from hub.core.units import parse_duration

log = logging.getLogger("hub.ops.replay")

JOB_BATCH = 50  # ids per job
SCAN_CHUNK = 500  # dead letters read per query in a bulk run
IN_FLIGHT = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING, DeliveryStatus.RETRYING)


# -- what was asked, and what was done about it ----------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One thing a replay looked at: `action` is replay, remap or skip (with the reason)."""

    kind: str  # dead_letter | event
    id: str
    action: str
    reason: str | None = None
    event_id: str | None = None
    delivery_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Report:
    dry_run: bool
    items: list[Item] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    queue: str | None = None

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)

    @property
    def enqueued(self) -> int:
        return 0 if self.dry_run else self.count("replay") + self.count("remap")

    def summary(self) -> str:
        verb = "would replay" if self.dry_run else "replaying"
        parts = [f"{verb} {self.count('replay')}"]
        if self.count("remap"):
            parts.append(f"{'would remap' if self.dry_run else 'remapping'} {self.count('remap')}")
        parts.append(f"skipped {self.count('skip')}")
        tail = "" if self.dry_run or not self.queue else f" (jobs on the {self.queue} queue)"
        return ", ".join(parts) + tail

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "replay": self.count("replay"),
            "remap": self.count("remap"),
            "skipped": self.count("skip"),
            "queue": None if self.dry_run else self.queue,
            "jobs": self.jobs,
            "items": [i.as_dict() for i in self.items],
            "summary": self.summary(),
        }


# -- filters ---------------------------------------------------------------------------------------


MAX_AGE = 100 * 365 * 86400.0  # seconds: "since" reaches back at most a century
MAX_AGE_TEXT = "36500d"


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC unless it says otherwise) or a duration ago ("2h", "3d")."""
    text = value.strip()
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        if seconds > MAX_AGE:
            raise BadRequest(f"not a time: {value!r} (an age is at most {MAX_AGE_TEXT})")
        return (now or utcnow()) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise BadRequest(
            f"not a time: {value!r} (use an ISO time like 2026-01-31T12:00 or an age like 2h)"
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def tenant_id_of(session: Session, slug: str) -> int:
    found = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if found is None:
        raise BadRequest(f"no tenant {slug!r}")
    return int(found)


# -- asking ----------------------------------------------------------------------------------------


def _judge_dead_letter(session: Session, letter: DeadLetter, remap: bool) -> Item:
    base = {"kind": "dead_letter", "id": letter.id, "event_id": letter.event_id}
    if letter.delivery_id:
        base["delivery_id"] = letter.delivery_id
    if letter.status != DeadLetterStatus.OPEN:
        return Item(**base, action="skip", reason=f"dead letter already {letter.status.value}")
    if letter.delivery_id is None or letter.stage != DeadLetterStage.DELIVERY:
        return Item(**base, action="remap")
    status = session.scalar(
        select(WebhookDelivery.status).where(WebhookDelivery.id == letter.delivery_id)
    )
    if status == DeliveryStatus.DELIVERED:
        return Item(
            **base, action="skip", reason=f"delivery {letter.delivery_id} already delivered"
        )
    if status in IN_FLIGHT:
        return Item(
            **base,
            action="skip",
            reason=f"delivery {letter.delivery_id} is {DeliveryStatus(status).value}: "
            "it is being tried already",
        )
    return Item(**base, action="remap" if remap else "replay")


def _enqueue(redis: Redis, report: Report, queue: QueueName) -> None:
    if report.dry_run:
        return
    report.queue = queue.value
    replays = [i.id for i in report.items if i.action == "replay"]
    remaps = list(
        dict.fromkeys(
            i.event_id if i.kind == "dead_letter" else i.id
            for i in report.items
            if i.action == "remap"
        )
    )
    report.jobs += enqueue_ids(redis, REPLAY, queue, replays, batch_size=JOB_BATCH)
    report.jobs += enqueue_ids(redis, REMAP, queue, [r for r in remaps if r], batch_size=JOB_BATCH)
    for item in report.items:
        if item.action in ("replay", "remap"):
            log.info(
                "replay.requested",
                extra={
                    "dead_letter_id": item.id if item.kind == "dead_letter" else None,
                    "event_id": item.event_id or item.id,
                    "delivery_id": item.delivery_id,
                    "queue": queue.value,
                    "outcome": item.action,
                },
            )
    metrics.replay_requested("dead_letter", "enqueued", len(replays))
    metrics.replay_requested("remap", "enqueued", len(remaps))


def _audit(
    engine: Engine, actor: str, report: Report, tenant_id: int | None, target: str | None
) -> None:
    """A replay that enqueued something goes into the audit log (a dry run does not)."""
    if report.dry_run or not report.enqueued:
        return
    detail = {"replay": report.count("replay"), "remap": report.count("remap")}
    audit.record_now(engine, actor, "replay", tenant_id=tenant_id, target=target, detail=detail)


def request_dead_letter(
    engine: Engine,
    redis: Redis,
    dead_letter_id: str,
    *,
    tenant_id: int | None = None,
    remap: bool = False,
    dry_run: bool = False,
    actor: str,
) -> Report:
    """Replay one dead letter (on the `retry` queue); DeadLetterNotFound for an unknown id."""
    with Session(engine) as session:
        letter = dead_letters.get(session, dead_letter_id, tenant_id=tenant_id)
        report = Report(dry_run, [_judge_dead_letter(session, letter, remap)])
    _enqueue(redis, report, QueueName.RETRY)
    _audit(engine, actor, report, letter.tenant_id, dead_letter_id)
    return report


def request_event(
    engine: Engine,
    redis: Redis,
    event_id: str,
    *,
    tenant_id: int | None = None,
    remap: bool = False,
    dry_run: bool = False,
    actor: str,
) -> Report:
    """Replay an event's open dead letters, or (`remap`) run it through today's mappings."""
    with Session(engine) as session:
        event = session.get(IntegrationEvent, event_id)
        if event is None or (tenant_id is not None and event.tenant_id != tenant_id):
            raise NotFound(f"event {event_id} not found", code="event_not_found")
        report = Report(dry_run)
        if remap:
            if event.payload is None:
                report.items.append(
                    Item("event", event.id, "skip", "the payload was purged; nothing to remap")
                )
            elif event.status in (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING):
                report.items.append(
                    Item(
                        "event",
                        event.id,
                        "skip",
                        f"event is {event.status.value}: still on its way",
                    )
                )
            else:
                report.items.append(Item("event", event.id, "remap", event_id=event.id))
        else:
            letters = session.scalars(
                select(DeadLetter)
                .where(DeadLetter.event_id == event.id, DeadLetter.status == DeadLetterStatus.OPEN)
                .order_by(DeadLetter.created_at)
            ).all()
            report.items.extend(_judge_dead_letter(session, letter, False) for letter in letters)
            if not letters:
                report.items.append(Item("event", event.id, "skip", _why_nothing(session, event)))
        owner = event.tenant_id
    _enqueue(redis, report, QueueName.RETRY)
    _audit(engine, actor, report, owner, event_id)
    return report


def _why_nothing(session: Session, event: IntegrationEvent) -> str:
    statuses = list(
        session.scalars(select(WebhookDelivery.status).where(WebhookDelivery.event_id == event.id))
    )
    if event.status == EventStatus.NO_ROUTE:
        return "the event matched no rule (use --remap to run today's mappings)"
    if event.status in (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING):
        return f"the event is {event.status.value}: still on its way"
    if statuses and all(s == DeliveryStatus.DELIVERED for s in statuses):
        return f"all {len(statuses)} deliveries already delivered"
    if any(s in IN_FLIGHT for s in statuses):
        return "its deliveries are still being tried; nothing is dead"
    return "no open dead letter for this event"


def iter_dead_letters(
    engine: Engine, where: DeadLetterFilter, limit: int | None
) -> Iterator[list[DeadLetter]]:
    """Open dead letters matching `where`, oldest first, in chunks (keyset paging on id)."""
    seen = 0
    after: str | None = None
    while limit is None or seen < limit:
        size = SCAN_CHUNK if limit is None else min(SCAN_CHUNK, limit - seen)
        with Session(engine) as session:
            query = select(DeadLetter).where(*dead_letters.clauses(where))
            if after is not None:
                query = query.where(DeadLetter.id > after)
            chunk = list(session.scalars(query.order_by(DeadLetter.id).limit(size)))
            session.expunge_all()
        if not chunk:
            return
        seen += len(chunk)
        after = chunk[-1].id
        yield chunk
        if len(chunk) < size:
            return


def count_dead_letters(engine: Engine, where: DeadLetterFilter) -> int:
    with Session(engine) as session:
        return dead_letters.count(session, where)


def request_bulk(
    engine: Engine,
    redis: Redis,
    where: DeadLetterFilter,
    *,
    limit: int | None = None,
    remap: bool = False,
    dry_run: bool = False,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Replay every open dead letter matching `where` (bulk: jobs on the `low` queue)."""
    where = DeadLetterFilter(**{**where.__dict__, "status": DeadLetterStatus.OPEN})
    report = Report(dry_run)
    for chunk in iter_dead_letters(engine, where, limit):
        part = Report(dry_run)
        with Session(engine) as session:
            part.items = [_judge_dead_letter(session, letter, remap) for letter in chunk]
        _enqueue(redis, part, QueueName.LOW)
        report.items += part.items
        report.jobs += part.jobs
        report.queue = part.queue
        if progress is not None:
            progress(len(chunk))
    _audit(engine, actor, report, where.tenant_id, None)
    return report


# -- doing (inside workers) ------------------------------------------------------------------------


def run_dead_letters(ctx: JobContext, dead_letter_ids: Sequence[str]) -> dict[str, int]:
    """The `replay` job: one more attempt of each dead letter's delivery (see module docstring)."""
    from hub.delivery.jobs import deliver_batch

    counts = {"replayed": 0, "failed": 0, "retrying": 0, "skipped": 0}
    taken: dict[str, str] = {}  # delivery id -> dead letter id
    remaps: list[str] = []
    with ctx.sessions() as session, session.begin():
        for letter_id in dict.fromkeys(dead_letter_ids):
            letter = session.get(DeadLetter, letter_id, with_for_update=True)
            if letter is None or letter.status != DeadLetterStatus.OPEN:
                counts["skipped"] += 1
                continue
            if letter.delivery_id is None:
                remaps.append(letter.event_id)
                continue
            delivery = session.get(WebhookDelivery, letter.delivery_id, with_for_update=True)
            if delivery is None or delivery.status != DeliveryStatus.DEAD:
                if delivery is not None and delivery.status == DeliveryStatus.DELIVERED:
                    _close(session, letter)
                    counts["replayed"] += 1
                else:
                    counts["skipped"] += 1
                continue
            delivery.status = DeliveryStatus.PENDING
            delivery.next_attempt_at = None
            delivery.lease_expires_at = None
            session.execute(delete(RetryQueue).where(RetryQueue.delivery_id == delivery.id))
            taken[delivery.id] = letter.id
    if remaps:
        run_remap(ctx, remaps)
    if taken:
        deliver_batch(ctx, list(taken))
    failed: list[str] = []
    with ctx.sessions() as session, session.begin():
        for delivery_id, letter_id in taken.items():
            outcome = _settle(session, delivery_id, letter_id)
            counts[outcome] += 1
            if outcome == "failed":
                failed.append(letter_id)
    metrics.replay_requested("dead_letter", "replayed", counts["replayed"])
    metrics.replay_requested("dead_letter", "failed", counts["failed"])
    if failed:
        raise ReplayFailed(
            f"{len(failed)} of {len(taken)} replayed deliveries failed again "
            f"(dead letters {', '.join(failed)}); requeue this job once the target is fixed"
        )
    return counts


def _close(session: Session, letter: DeadLetter) -> None:
    for name, value in dead_letters.resolve_values(DeadLetterStatus.REPLAYED).items():
        setattr(letter, name, value)


def _settle(session: Session, delivery_id: str, letter_id: str) -> str:
    """After the attempt: replayed, failed (dead again) or retrying (attempts were left)."""
    delivery = session.get(WebhookDelivery, delivery_id)
    letter = session.get(DeadLetter, letter_id, with_for_update=True)
    assert delivery is not None and letter is not None
    fields = {
        "dead_letter_id": letter.id,
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint": delivery.endpoint,
        "tenant_id": delivery.tenant_id,
        "correlation_id": delivery.correlation_id,
    }
    if delivery.status == DeliveryStatus.DELIVERED:
        _close(session, letter)
        _event_recovered(session, delivery.event_id)
        log.info("replay.delivered", extra=fields | {"status": "replayed"})
        return "replayed"
    if delivery.status == DeliveryStatus.DEAD:
        newer = session.scalars(
            select(DeadLetter).where(
                DeadLetter.delivery_id == delivery.id,
                DeadLetter.status == DeadLetterStatus.OPEN,
                DeadLetter.id != letter.id,
            )
        ).all()
        for other in newer:  # the delivery code opened a fresh one: fold it into ours
            letter.reason = other.reason
            letter.last_error = other.last_error
            session.delete(other)
        letter.attempts = delivery.attempts
        log.warning("replay.failed", extra=fields | {"status": "open"})
        return "failed"
    log.info("replay.retrying", extra=fields | {"status": delivery.status.value})
    return "retrying"


def _event_recovered(session: Session, event_id: str) -> None:
    """A failed event whose deliveries are no longer dead is processed again."""
    still_dead = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.event_id == event_id, WebhookDelivery.status == DeliveryStatus.DEAD
        )
    )
    open_mapping = session.scalar(
        select(DeadLetter.id).where(
            DeadLetter.event_id == event_id,
            DeadLetter.status == DeadLetterStatus.OPEN,
            DeadLetter.delivery_id.is_(None),
        )
    )
    if still_dead is None and open_mapping is None:
        session.execute(
            update(IntegrationEvent)
            .where(IntegrationEvent.id == event_id, IntegrationEvent.status == EventStatus.FAILED)
            .values(status=EventStatus.PROCESSED, error=None, updated_at=utcnow())
        )


def run_remap(ctx: JobContext, event_ids: Sequence[str]) -> dict[str, int]:
    """The `remap` job: each event through today's mappings, then its dead deliveries again."""
    from hub.mapping.live import live_mappings
    from hub.mapping.routing import process_events

    counts = {"remapped": 0, "failed": 0, "skipped": 0}
    ready: list[str] = []
    with ctx.sessions() as session, session.begin():
        for event_id in dict.fromkeys(event_ids):
            event = session.get(IntegrationEvent, event_id, with_for_update=True)
            if event is None or event.payload is None:
                counts["skipped"] += 1
                continue
            event.status = EventStatus.QUEUED  # process_events takes waiting events only
            ready.append(event_id)
    if not ready:
        return counts
    started = utcnow()
    process_events(ctx, ready)
    applied = live_mappings(ctx.cache).get(ctx.engine, ctx.redis)
    resend: list[str] = []
    failed: list[str] = []
    with ctx.sessions() as session, session.begin():
        for event_id in ready:
            event = session.get(IntegrationEvent, event_id)
            assert event is not None
            mapping_letters = session.scalars(
                select(DeadLetter)
                .where(
                    DeadLetter.event_id == event_id,
                    DeadLetter.status == DeadLetterStatus.OPEN,
                    DeadLetter.delivery_id.is_(None),
                )
                .order_by(DeadLetter.created_at)
            ).all()
            if event.status == EventStatus.FAILED and mapping_letters:
                _fold_new(session, list(mapping_letters), started)
                failed.append(event_id)
                counts["failed"] += 1
                continue
            for letter in mapping_letters:
                _close(session, letter)
            payload = orjson.loads(ctx.cipher.decrypt(cast(bytes, event.payload)))
            owner = session.get(Tenant, event.tenant_id)
            evaluation = applied.ruleset.evaluate(
                event.source,
                event.event_type,
                payload,
                tenant=TenantSettings.of(owner) if owner is not None else None,
            )
            for planned in evaluation.planned:
                delivery = session.scalar(
                    select(WebhookDelivery).where(
                        WebhookDelivery.event_id == event_id,
                        WebhookDelivery.mapping == planned.rule,
                        WebhookDelivery.route == planned.route,
                        WebhookDelivery.status == DeliveryStatus.DEAD,
                    )
                )
                if delivery is None:
                    continue
                delivery.request = ctx.cipher.encrypt(orjson.dumps(planned.request))
                delivery.endpoint = planned.endpoint
                delivery.endpoint_id = applied.endpoint_ids.get(planned.endpoint)
                delivery.queue = planned.queue
                resend.extend(
                    session.scalars(
                        select(DeadLetter.id).where(
                            DeadLetter.delivery_id == delivery.id,
                            DeadLetter.status == DeadLetterStatus.OPEN,
                        )
                    )
                )
            counts["remapped"] += 1
            log.info("replay.remapped", extra={"event_id": event_id, "status": event.status.value})
    if resend:
        run_dead_letters(ctx, resend)
    if failed:
        raise ReplayFailed(f"mappings failed again for events {', '.join(failed)}")
    return counts


def _fold_new(session: Session, letters: list[DeadLetter], started: datetime) -> None:
    """Keep the oldest open mapping dead letter; fold the ones this run opened into it."""
    keep, rest = letters[0], letters[1:]
    for other in rest:
        if other.created_at >= started:
            keep.reason = other.reason
            keep.last_error = other.last_error
            session.delete(other)


def close_delivered_dead_letters(ctx: SweepContext) -> int:
    """Sweeper task: open dead letters whose delivery was delivered after all become `replayed`."""
    now = utcnow()
    delivered = select(WebhookDelivery.id).where(WebhookDelivery.status == DeliveryStatus.DELIVERED)
    with ctx.engine.begin() as conn:
        ids = list(
            conn.scalars(
                select(DeadLetter.id)
                .where(
                    DeadLetter.status == DeadLetterStatus.OPEN,
                    DeadLetter.delivery_id.in_(delivered),
                )
                .limit(1000)
            )
        )
        if ids:
            conn.execute(
                update(DeadLetter)
                .where(DeadLetter.id.in_(ids), DeadLetter.status == DeadLetterStatus.OPEN)
                .values(dead_letters.resolve_values(DeadLetterStatus.REPLAYED, now))
            )
    for letter_id in ids:
        log.info("replay.closed", extra={"dead_letter_id": letter_id, "status": "replayed"})
    return len(ids)
