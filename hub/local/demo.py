"""`hub demo`: seed 003's scenarios sent to a running hub, each event followed to its deliveries.

Four scenarios (seed 003, "Fluxos Principais"): a lead from the site, a lead from WhatsApp, a
client registered in the CRM, a service completed by operations. Each is POSTed to
`/webhooks/{source}` with the demo tenant's key, signed as the source declares in
`mappings/sources.yaml` (secrets from the environment, else from `<data_dir>/demo.env` that
`hub up` writes in demo mode), with fresh ids so every run makes new events. Then the event is
followed, through the admin API (`GET /admin/events/{id}`) or, when the hub has none, the
database, and every change is printed as it happens: the event's status, the rules that matched,
each delivery and its status, a delayed delivery's due time.

A delivery is immediate unless it waits for a due time without having been tried (a route's
`delay`, e.g. the feedback request 2 h after a service). `run_demo` returns True only when every
immediate delivery arrived.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson
from sqlalchemy import Engine, select

from hub.core import envrefs
from hub.core.errors import ConfigError, HubError, NotFound
from hub.core.models import DeliveryStatus, EventStatus, IntegrationEvent, WebhookDelivery
from hub.core.signing import sign_standard_webhooks, signing_key
from hub.ingress.sources import SignatureConfig, SignatureScheme, SourceConfig

DEMO_TENANT = "demo"
POLL_SECONDS = 0.25
SETTLED_EVENT = {EventStatus.PROCESSED, EventStatus.NO_ROUTE, EventStatus.FAILED}
FINAL_DELIVERY = {DeliveryStatus.DELIVERED, DeliveryStatus.DEAD}


class HubDown(HubError):
    """Nothing answers at the hub's URL."""

    code = "hub_down"


class NoAdminApi(HubError):
    """The hub has no `GET /admin/events/{id}` (its operations part is not installed)."""


# -- scenarios ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    title: str
    sources: tuple[str, ...]  # the first one that sources.yaml declares is used
    event_type: str
    payload: dict[str, Any]


def scenarios(run: str) -> list[Scenario]:
    """Seed 003's flows, shaped as the example mappings expect, with ids unique to this run."""
    now = datetime.now(UTC)
    return [
        Scenario(
            "lead from the site",
            ("site",),
            "lead.created",
            {
                "type": "lead.created",
                "name": "Ana Souza",
                "email": "ana.souza@example.com",
                "phone": "(11) 91234-5678",
                "message": "Preciso de uma cuidadora para minha mãe, 3x por semana",
                "utm_source": "google",
                "utm_campaign": "cuidadores-sp",
                "created_at": now.isoformat(timespec="seconds"),
            },
        ),
        Scenario(
            "lead from WhatsApp",
            ("zapi",),
            "whatsapp.message.received",
            {
                "type": "ReceivedCallback",
                "messageId": f"3EB0DEMO{run.upper()}",
                "phone": "5521998765432",
                "fromMe": False,
                "isGroup": False,
                "senderName": "Bruno Lima",
                "momment": int(now.timestamp() * 1000),
                "text": {"message": "Oi, queria saber dos planos de cuidado domiciliar"},
            },
        ),
        Scenario(
            "client registered",
            ("crm",),
            "client.registered",
            {
                "event": "client.registered",
                "id": f"crm-evt-demo-{run}",
                "client": {
                    "id": f"CLI-DEMO-{run}",
                    "name": "Carla Mendes",
                    "email": "carla.mendes@example.com",
                    "phone": "(31) 99876-5432",
                    "cpf": "529.982.247-25",
                    "plan": "premium",
                    "monthly_fee": "1.250,90",
                    "start_date": now.strftime("%d/%m/%Y"),
                },
            },
        ),
        Scenario(
            "service completed",
            ("operacao",),
            "service.completed",
            {
                "event": "service.completed",
                "service": {
                    "id": f"SRV-DEMO-{run}",
                    "status": "completed",
                    "type": "cuidado domiciliar",
                    "billable": True,
                    "completed_at": now.isoformat(timespec="seconds"),
                    "amount": "180,50",
                    "caregiver": {"name": "Luiza"},
                    "items": [
                        {"description": "Visita 4h", "amount": "160,50"},
                        {"description": "Deslocamento", "quantity": 2, "amount": 10},
                    ],
                },
                "client": {
                    "id": f"CLI-DEMO-{run}",
                    "name": "Carla Mendes",
                    "phone": "(31) 99876-5432",
                },
            },
        ),
    ]


# -- signing as each source declares ---------------------------------------------------------------


def sign(signature: SignatureConfig, secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """The headers that make `body` pass the source's signature check."""
    now = int(time.time())
    if signature.scheme == SignatureScheme.STANDARD_WEBHOOKS:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhooks(signing_key(secret), msg_id, now, body),
        }
    if signature.scheme == SignatureScheme.STRIPE:
        mac = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256)
        return {signature.header or "Stripe-Signature": f"t={now},v1={mac.hexdigest()}"}
    if signature.scheme == SignatureScheme.HMAC_SHA256:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        value = digest.hex() if signature.encoding == "hex" else base64.b64encode(digest).decode()
        return {signature.header or "X-Signature": (signature.prefix or "") + value}
    return {signature.header or "Authorization": secret}  # token


def source_secret(
    name: str, signature: SignatureConfig, environ: Mapping[str, str], saved: Mapping[str, str]
) -> str:
    """The current secret of a source for the demo tenant; ConfigError naming the variable."""
    variable = envrefs.variable_name(signature.secrets[0], DEMO_TENANT)
    value = environ.get(variable) or saved.get(variable)
    if not value:
        raise ConfigError(
            f"source {name} is signed ({signature.scheme.value}) with {variable}, which is not "
            "set here nor in <data_dir>/demo.env: run `hub up` (demo mode) first, or export it"
        )
    return value


@dataclass(frozen=True)
class Outgoing:
    scenario: Scenario
    source: str
    body: bytes
    headers: dict[str, str]


def build_request(
    scenario: Scenario,
    sources: Mapping[str, SourceConfig],
    environ: Mapping[str, str],
    saved: Mapping[str, str],
    run: str,
) -> Outgoing:
    """The scenario as its source would send it: event id and type where declared, signed."""
    source = next((s for s in scenario.sources if s in sources), None)
    if source is None:
        raise ConfigError(
            f"scenario '{scenario.title}' needs one of the sources {', '.join(scenario.sources)} "
            "in mappings/sources.yaml"
        )
    config = sources[source]
    payload = dict(scenario.payload)
    headers = {"Content-Type": "application/json", "X-Correlation-Id": f"demo-{run}-{source}"}
    msg_id = f"msg_demo_{run}_{source}"
    if config.event_id is not None and config.event_id.header:
        headers[config.event_id.header] = msg_id
    elif config.event_id is not None and config.event_id.jsonpath:
        key = config.event_id.jsonpath.removeprefix("$.")
        if key.isidentifier() and key not in payload:
            payload[key] = msg_id
    if config.event_type.header:
        headers[config.event_type.header] = scenario.event_type
    body = orjson.dumps(payload)
    if config.signature is not None:
        secret = source_secret(source, config.signature, environ, saved)
        signed = sign(config.signature, secret, headers.get("webhook-id", msg_id), body)
        headers.update(signed)
    return Outgoing(scenario, source, body, headers)


# -- following an event ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryView:
    id: str
    rule: str
    route: str
    endpoint: str
    status: str
    attempts: int = 0
    next_attempt_at: datetime | None = None  # naive UTC
    last_error: str | None = None

    def is_delayed(self, now: datetime) -> bool:
        """Waiting for its due time without a try: a route's `delay`."""
        return (
            self.status == DeliveryStatus.PENDING
            and self.attempts == 0
            and self.next_attempt_at is not None
            and self.next_attempt_at > now
        )


@dataclass(frozen=True)
class EventView:
    id: str
    status: str
    deliveries: tuple[DeliveryView, ...] = ()
    error: str | None = None

    @property
    def rules(self) -> list[str]:
        return sorted({d.rule for d in self.deliveries})


class EventReader(Protocol):
    def read(self, event_id: str) -> EventView:
        """The event and its deliveries as they are now; NotFound when there is no such event."""
        ...


def _utc(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else _naive(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is None else _naive(parsed)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


class AdminApiReader:
    """`GET /admin/events/{id}` with the demo tenant's admin key."""

    def __init__(self, client: httpx.Client, key: str) -> None:
        self.client = client
        self.key = key

    def read(self, event_id: str) -> EventView:
        path = f"/admin/events/{event_id}"
        try:
            answer = self.client.get(path, headers={"X-API-Key": self.key})
        except httpx.TransportError as exc:
            raise HubDown(f"the hub stopped answering (GET {path})") from exc
        if answer.status_code == 404:
            try:
                error = answer.json()["error"]
            except (ValueError, KeyError, TypeError):
                raise NoAdminApi("the hub answers 404 for /admin/events/{id}") from None
            raise NotFound(f"event {event_id}: {error.get('message')}")
        if answer.status_code != 200:
            raise HubError(f"GET /admin/events/{event_id} answered {answer.status_code}")
        data = answer.json()
        event = data.get("event", data)
        raw = data.get("deliveries") or event.get("deliveries") or []
        return EventView(
            id=str(event.get("id", event_id)),
            status=str(event.get("status")),
            error=event.get("error"),
            deliveries=tuple(
                DeliveryView(
                    id=str(d.get("id")),
                    rule=str(d.get("mapping") or d.get("rule")),
                    route=str(d.get("route")),
                    endpoint=str(d.get("endpoint")),
                    status=str(d.get("status")),
                    attempts=_count(d.get("attempts")),
                    next_attempt_at=_utc(d.get("next_attempt_at")),
                    last_error=d.get("last_error"),
                )
                for d in raw
            ),
        )


def _count(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    return int(value or 0)


class DatabaseReader:
    """The same view straight from the tables (when the hub's admin API is not there)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read(self, event_id: str) -> EventView:
        with self.engine.connect() as conn:
            event = conn.execute(
                select(IntegrationEvent.id, IntegrationEvent.status, IntegrationEvent.error).where(
                    IntegrationEvent.id == event_id
                )
            ).one_or_none()
            if event is None:
                raise NotFound(f"event {event_id} is not in the database")
            rows = conn.execute(
                select(
                    WebhookDelivery.id,
                    WebhookDelivery.mapping,
                    WebhookDelivery.route,
                    WebhookDelivery.endpoint,
                    WebhookDelivery.status,
                    WebhookDelivery.attempts,
                    WebhookDelivery.next_attempt_at,
                    WebhookDelivery.last_error,
                )
                .where(WebhookDelivery.event_id == event_id)
                .order_by(WebhookDelivery.mapping, WebhookDelivery.route)
            ).all()
        return EventView(
            id=event.id,
            status=str(event.status),
            error=event.error,
            deliveries=tuple(
                DeliveryView(
                    r.id,
                    r.mapping,
                    r.route,
                    r.endpoint,
                    str(r.status),
                    r.attempts,
                    r.next_attempt_at,
                    r.last_error,
                )
                for r in rows
            ),
        )


class FallbackReader:
    """The admin API while the hub has one; the database from the first sign it has none."""

    def __init__(self, api: EventReader, database: Callable[[], EventReader]) -> None:
        self.current = api
        self.database = database

    def read(self, event_id: str) -> EventView:
        try:
            return self.current.read(event_id)
        except NoAdminApi:
            self.current = self.database()
            return self.current.read(event_id)


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Tally:
    immediate: dict[str, DeliveryView] = field(default_factory=dict)
    delayed: dict[str, DeliveryView] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def arrived(self) -> int:
        return sum(1 for d in self.immediate.values() if d.status == DeliveryStatus.DELIVERED)

    @property
    def ok(self) -> bool:
        """Every immediate delivery arrived (and there was at least one)."""
        if self.problems or not self.immediate:
            return False
        return self.arrived == len(self.immediate)


def _mark(view: DeliveryView, now: datetime) -> str:
    if view.is_delayed(now):
        return "⏲"
    marks = {DeliveryStatus.DELIVERED.value: "✓", DeliveryStatus.DEAD.value: "✗"}
    return marks.get(view.status, "…")


def describe_delivery(view: DeliveryView, now: datetime) -> str:
    where = f"{view.endpoint:<10} {view.rule}/{view.route}"
    if view.is_delayed(now) and view.next_attempt_at is not None:
        due = view.next_attempt_at
        wait = _human((due - now).total_seconds())
        status = f"scheduled for {due:%Y-%m-%d %H:%M:%S} UTC (in {wait})"
    else:
        status = view.status
        if view.attempts > 1:
            status += f" (attempt {view.attempts})"
        if view.last_error and view.status != DeliveryStatus.DELIVERED:
            status += f": {view.last_error}"
    return f"     {_mark(view, now)} {where:<46} {status:<10} {view.id}"


def _human(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def follow(
    reader: EventReader,
    event_id: str,
    tally: Tally,
    deadline: float,
    say: Callable[[str], None],
    utcnow: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
) -> EventView | None:
    """Print each change of the event and its deliveries until all settle or `deadline` passes."""
    shown_status: str | None = None
    shown: dict[str, tuple[str, int]] = {}
    last: EventView | None = None
    while True:
        try:
            view = reader.read(event_id)
        except NotFound:
            view = None
        now = utcnow()
        if view is not None:
            last = view
            if view.status != shown_status:
                rules = f" · rules: {', '.join(view.rules)}" if view.rules else ""
                error = f" · {view.error}" if view.error else ""
                say(f"     event {view.status}{rules}{error}")
                shown_status = view.status
            for delivery in view.deliveries:
                state = (delivery.status, delivery.attempts)
                if shown.get(delivery.id) != state:
                    say(describe_delivery(delivery, now))
                    shown[delivery.id] = state
            if _settled(view, now):
                break
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    if last is None:
        tally.problems.append(f"event {event_id} never became visible")
        return None
    now = utcnow()
    for delivery in last.deliveries:
        if delivery.is_delayed(now):
            tally.delayed[delivery.id] = delivery
            continue
        tally.immediate[delivery.id] = delivery
        if delivery.status != DeliveryStatus.DELIVERED:
            why = f": {delivery.last_error}" if delivery.last_error else ""
            tally.problems.append(
                f"{delivery.id} to {delivery.endpoint} ({delivery.rule}/{delivery.route}) "
                f"is {delivery.status}{why}"
            )
    if last.status == EventStatus.FAILED:
        tally.problems.append(f"event {event_id} failed: {last.error or 'see hub logs'}")
    elif last.status == EventStatus.NO_ROUTE:
        tally.problems.append(f"event {event_id} matched no rule")
    elif last.status not in SETTLED_EVENT:
        tally.problems.append(f"event {event_id} still {last.status} when time ran out")
    return last


def _settled(view: EventView, now: datetime) -> bool:
    if view.status not in SETTLED_EVENT:
        return False
    return all(d.status in FINAL_DELIVERY or d.is_delayed(now) for d in view.deliveries)


def post(client: httpx.Client, base: str, key: str, outgoing: Outgoing) -> str:
    """POST the scenario; its event id. HubDown when nothing answers, HubError on a 4xx/5xx."""
    headers = {**outgoing.headers, "X-API-Key": key}
    path = f"/webhooks/{outgoing.source}"
    try:
        answer = client.post(path, content=outgoing.body, headers=headers)
    except httpx.TransportError as exc:
        raise HubDown(
            f"no hub answers at {base} (tried POST {base}{path}); is `hub up` running?"
        ) from exc
    if answer.status_code not in (200, 202):
        try:
            error = answer.json()["error"]
            detail = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            detail = answer.text[:200]
        raise HubError(f"POST {base}{path} answered {answer.status_code} {detail}")
    return str(answer.json()["event_id"])


def new_run_id() -> str:
    return secrets.token_hex(4)


def run_demo(
    client: httpx.Client,
    base: str,
    key: str,
    sources: Mapping[str, SourceConfig],
    reader: EventReader,
    say: Callable[[str], None],
    environ: Mapping[str, str],
    saved: Mapping[str, str],
    timeout: float = 60.0,
) -> Tally:
    """Send every scenario and follow it; the tally says what arrived."""
    run = new_run_id()
    tally = Tally()
    deadline = time.monotonic() + timeout
    outgoing = [build_request(s, sources, environ, saved, run) for s in scenarios(run)]
    for number, request in enumerate(outgoing, 1):
        event_id = post(client, base, key, request)
        say(f"{number}. {request.scenario.title}: POST /webhooks/{request.source} → {event_id}")
        follow(reader, event_id, tally, deadline, say)
    return tally
