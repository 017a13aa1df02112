"""Leads posted to running hub processes, and the account of what became of each of them.

Shared by the fault tests that run whole process trees (two hosts, supervisord):

    stream = LeadStream(key, [url_a, url_b], rate=20).start()   # posts from a thread
    ...                                                         # kill, cut, restore
    stream.stop()
    account = Account.read(engine, target, stream.accepted)
    assert account.lost == set(), account.figures()

`LeadStream` posts `lead.created` to `/webhooks/site`, each lead with its own Idempotency-Key, to
the web addresses in turn; a lead whose host does not answer goes to the next one, as a load
balancer would, so a lead stored by a host that died before answering is answered by another
(200, duplicate). It keeps the event id of every lead accepted (202, or 200 duplicate).

`Account` reads back from the database and the target's log: which accepted events have every
delivery delivered and seen by the target (the others are lost), and each `webhook-id` the target
saw more than once, with the attempts that explain it: a duplicate is explained when the
delivery was in flight at a failure (`in_flight`, the ids `delivering` at a kill or during a
cut) and its lost attempt is on record (`lease_expired`, one per extra copy).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from hub.core.models import (
    DeliveryAttempt,
    DeliveryStatus,
    EventStatus,
    IntegrationEvent,
    RetryQueue,
    WebhookDelivery,
)
from tests.delivery.conftest import TargetServer

LEAD = {"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"}
LOST_ATTEMPT = "lease_expired"  # the error class of an attempt whose worker was lost

# The mappings the fault tests run: one source, one webhook endpoint (the target), one rule.
SOURCES_YAML = """\
sources:
  site:
    queue: default
    event_type: {jsonpath: $.type}
    event_id: {header: Idempotency-Key}
    rate_limit: 100000/min
"""
RULE_YAML = """\
rule: lead
sources: [site]
events: [lead.created]
routes:
  - to: crm
    body: {name: $.name, phone: $.phone}
"""


def write_mappings(
    root: Path, target_url: str, *, timeout: str = "2s", url: str | None = None
) -> Path:
    """sources.yaml, endpoints.yaml (crm -> `target_url`/leads, or `url` such as an `env:`
    reference) and rules/lead.yaml in `root`."""
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "sources.yaml").write_text(SOURCES_YAML)
    (root / "endpoints.yaml").write_text(
        "endpoints:\n  crm:\n    kind: webhook\n"
        f"    url: {url or target_url + '/leads'}\n    timeout: {timeout}\n"
        "    retry: {max_attempts: 8, base: 1s, max_delay: 2s}\n"
    )
    (root / "rules" / "lead.yaml").write_text(RULE_YAML)
    return root


@dataclass
class LeadStream:
    """Posts leads from a thread, `rate` a second (as fast as answered with 0), `count` at most."""

    key: str
    urls: Sequence[str]
    rate: float = 0.0
    count: int | None = None
    prefix: str = "lead"
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> event id
    answers: Counter[str] = field(default_factory=Counter)  # "202", "503", "refused", ...
    by_url: Counter[str] = field(default_factory=Counter)  # accepted per web address
    slowest: tuple[float, str] = (0.0, "")  # the longest a post took (s), and its answer

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lead-stream", daemon=True)
        self._lock = threading.Lock()
        self.sent = 0

    def start(self) -> LeadStream:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> LeadStream:
        self._stop.set()
        self._thread.join(timeout)
        return self

    def wait(self, timeout: float) -> LeadStream:
        """Until `count` leads were posted (or `timeout`)."""
        self._thread.join(timeout)
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def accepted_ids(self) -> set[str]:
        with self._lock:
            return set(self.accepted.values())

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            started = time.monotonic()
            while not self._stop.is_set() and (self.count is None or n < self.count):
                self._post(client, f"{self.prefix}-{n}", n)
                n += 1
                self.sent = n
                if self.rate:
                    self._stop.wait(max(0.0, started + n / self.rate - time.monotonic()))

    def _post(self, client: httpx.Client, idempotency: str, n: int) -> None:
        for turn in range(len(self.urls)):
            url = self.urls[(n + turn) % len(self.urls)]
            started = time.monotonic()
            try:
                answer = client.post(
                    f"{url}/webhooks/site",
                    json=LEAD,
                    headers={"X-API-Key": self.key, "Idempotency-Key": idempotency},
                )
            except httpx.TransportError as exc:
                self._answered(type(exc).__name__, started)
                continue  # the next host, as a load balancer would
            self._answered(str(answer.status_code), started)
            if answer.status_code in (200, 202):
                with self._lock:
                    self.accepted[idempotency] = answer.json()["event_id"]
                self.by_url[url] += 1
            return

    def _answered(self, what: str, started: float) -> None:
        self.answers[what] += 1
        took = time.monotonic() - started
        if took > self.slowest[0]:
            self.slowest = (round(took, 2), what)


def delivering(engine: Engine) -> set[str]:
    """The deliveries in flight right now (leased by a worker): what a failure may duplicate."""
    with engine.connect() as conn:
        rows = conn.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.status == DeliveryStatus.DELIVERING)
        )
        return set(rows)


@dataclass
class Account:
    """What became of the accepted events (see the module docstring)."""

    events: set[str]  # accepted
    deliveries: dict[str, tuple[str, DeliveryStatus]]  # delivery id -> event id, status
    processed: set[str]  # accepted events that are processed
    seen: Counter[str]  # webhook-id -> times the target received it
    lost_attempts: Counter[str]  # delivery id -> attempts recorded as lost with their worker
    in_flight: set[str]  # deliveries in flight at a failure

    @classmethod
    def read(
        cls,
        engine: Engine,
        target: TargetServer,
        accepted: Iterable[str],
        in_flight: Iterable[str] = (),
    ) -> Account:
        events = set(accepted)
        with engine.connect() as conn:
            rows = conn.execute(
                select(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.status)
            ).all()
            processed = set(
                conn.scalars(
                    select(IntegrationEvent.id).where(
                        IntegrationEvent.status == EventStatus.PROCESSED
                    )
                )
            )
            lost_attempts = Counter(
                conn.scalars(
                    select(DeliveryAttempt.delivery_id).where(
                        DeliveryAttempt.error_class == LOST_ATTEMPT
                    )
                )
            )
        return cls(
            events=events,
            deliveries={d: (e, s) for d, e, s in rows if e in events},
            processed=processed & events,
            seen=Counter(s.headers.get("webhook-id", "") for s in list(target.seen)),
            lost_attempts=lost_attempts,
            in_flight=set(in_flight),
        )

    def stuck(self, engine: Engine) -> list[tuple[object, ...]]:
        """The deliveries of lost events that are not delivered, as the database has them
        (id, status, attempts, next attempt, lease, last error, retry rows due at), and the
        times the target received each: what a failed drain shows to explain itself."""
        lost = self.lost
        ids = [d for d, (e, status) in self.deliveries.items() if e in lost]
        if not ids:
            return []
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.status,
                    WebhookDelivery.attempts,
                    WebhookDelivery.next_attempt_at,
                    WebhookDelivery.lease_expires_at,
                    WebhookDelivery.last_error,
                ).where(WebhookDelivery.id.in_(ids[:20]))
            ).all()
            retries = Counter(
                conn.scalars(select(RetryQueue.delivery_id).where(RetryQueue.delivery_id.in_(ids)))
            )
        return [(*r, f"retry rows {retries[r[0]]}", f"seen {self.seen[r[0]]}") for r in rows]

    @property
    def lost(self) -> set[str]:
        """Accepted events not processed, or with a delivery not delivered or never received."""
        done = {
            e
            for d, (e, status) in self.deliveries.items()
            if status == DeliveryStatus.DELIVERED and self.seen[d]
        }
        return self.events - (done & self.processed)

    @property
    def duplicates(self) -> dict[str, int]:
        """Delivery id -> extra copies the target received."""
        return {d: n - 1 for d, n in self.seen.items() if n > 1}

    @property
    def unexplained(self) -> dict[str, str]:
        """Duplicates that were not in flight at a failure, or lack the lost attempts."""
        out = {}
        for d, extra in self.duplicates.items():
            if d not in self.in_flight:
                out[d] = f"{extra} extra cop(ies), not in flight at any failure"
            elif self.lost_attempts[d] < extra:
                out[d] = f"{extra} extra cop(ies), {self.lost_attempts[d]} lost attempt(s)"
        return out

    def figures(self) -> str:
        waiting = Counter(getattr(s, "value", s) for _, s in self.deliveries.values())
        return (
            f"{len(self.events)} events accepted, {len(self.events - self.processed)} not "
            "processed; "
            f"{len(self.deliveries)} deliveries {dict(waiting)}; {len(self.lost)} lost; "
            f"target received {sum(self.seen.values())} requests, "
            f"{sum(self.duplicates.values())} duplicate(s) of {len(self.duplicates)} deliveries, "
            f"{len(self.in_flight)} in flight at the failures, "
            f"{sum(self.lost_attempts.values())} lost attempts recorded; "
            f"unexplained duplicates: {self.unexplained}"
        )
