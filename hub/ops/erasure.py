"""Erasure by person and the person's data on request (LGPD art. 18): `hub erase`, `hub export`,
`POST /admin/erasures`.

A person is found through `person_index` (keyed hashes of the identifiers their sources declare,
hub.ingress.persons): every event holding one of the identifiers, its deliveries, their attempts
and its dead letters. Erasing removes what carries personal data - event payloads, request
headers and errors, delivery requests and last errors, attempts' response excerpts, dead letters'
reasons and errors - and the index rows; rows, statuses and counts stay, marked with `erased_at`.
A delivery still waiting finds its request gone and ends `dead` ("request was purged").

The receipt (table `erasures`, and the audit log) says what kinds of identifier were asked for, how
many rows of each table, when and by whom; never the identifiers or their hashes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, null, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hub.core import audit
from hub.core.crypto import Cipher, DecryptionError, PersonHasher, person_hasher
from hub.core.errors import BadRequest, Forbidden, UnknownTenant
from hub.core.models import (
    DeadLetter,
    DeliveryAttempt,
    Erasure,
    IntegrationEvent,
    PersonIndex,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from hub.ingress.persons import KINDS, normalise
from hub.ingress.principals import Principal, requires_key
from hub.ops.admin import event_dict, json_body
from hub.ops.params import ErasureRequest

log = logging.getLogger("hub.ops.erasure")

BATCH = 500  # events per transaction
ERASED = "[erased]"


def _tenant_id(session: Session, slug: str | None) -> int | None:
    if slug is None:
        return None
    found = session.scalar(select(Tenant.id).where(Tenant.slug == slug))
    if found is None:
        raise UnknownTenant(f"no tenant {slug!r}")
    return found


def _event_ids(
    session: Session, hasher: PersonHasher, wanted: Sequence[tuple[str, str]], tenant_id: int | None
) -> list[str]:
    digests = [hasher.digest(kind, value) for kind, value in wanted]
    query = select(PersonIndex.event_id).where(PersonIndex.digest.in_(digests)).distinct()
    if tenant_id is not None:
        query = query.where(PersonIndex.tenant_id == tenant_id)
    return sorted(session.scalars(query))


PERSON_PAGE = 200  # events shown for one person, newest first


def events_of_person(
    engine: Engine,
    hasher: PersonHasher,
    principal: Principal,
    kind: str,
    value: str,
    cipher: Cipher | None = None,
) -> list[dict[str, Any]]:
    """The newest events that carry a person's identifier (found through the person index, so
    only sources that declare `personal:`), within what `principal` may see."""
    wanted = [(kind, normalise(kind, value))]
    with Session(engine) as session:
        ids = _event_ids(session, hasher, wanted, principal.tenant_scope())[-PERSON_PAGE:]
        events = list(
            session.scalars(
                select(IntegrationEvent)
                .where(IntegrationEvent.id.in_(ids))
                .order_by(IntegrationEvent.id.desc())
            )
        )
        slugs = dict(
            session.execute(
                select(Tenant.id, Tenant.slug).where(Tenant.id.in_({e.tenant_id for e in events}))
            ).all()
        )
    return [event_dict(e, slugs.get(e.tenant_id), cipher) for e in events]


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def erase_person(
    engine: Engine,
    hasher: PersonHasher,
    wanted: Sequence[tuple[str, str]],
    *,
    tenant_slug: str | None = None,
    actor: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Erase (or, dry, count) a person's data; the receipt as a dict."""
    kinds = ",".join(sorted({kind for kind, _ in wanted}))
    counts = {"events": 0, "deliveries": 0, "attempts": 0, "dead_letters": 0}
    with Session(engine) as session:
        tenant_id = _tenant_id(session, tenant_slug)
        event_ids = _event_ids(session, hasher, wanted, tenant_id)
    now = utcnow()
    for chunk in _chunks(event_ids):
        with Session(engine) as session, session.begin():
            delivery_ids = list(
                session.scalars(
                    select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(chunk))
                )
            )
            counts["events"] += len(chunk)
            counts["deliveries"] += len(delivery_ids)
            counts["attempts"] += (
                session.scalar(
                    select(func.count())
                    .select_from(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id.in_(delivery_ids or [""]))
                )
                or 0
            )
            counts["dead_letters"] += (
                session.scalar(
                    select(func.count())
                    .select_from(DeadLetter)
                    .where(DeadLetter.event_id.in_(chunk))
                )
                or 0
            )
            if dry_run:
                continue
            session.execute(
                update(IntegrationEvent)
                .where(IntegrationEvent.id.in_(chunk))
                .values(
                    payload=None, sealed_headers=None, headers=null(), error=None, erased_at=now
                )
            )
            if delivery_ids:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(delivery_ids))
                    .values(request=None, last_error=None, erased_at=now)
                )
                session.execute(
                    update(DeliveryAttempt)
                    .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
                    .values(response_excerpt=None)
                )
            session.execute(
                update(DeadLetter)
                .where(DeadLetter.event_id.in_(chunk))
                .values(reason=ERASED, last_error=None, erased_at=now)
            )
            session.execute(delete(PersonIndex).where(PersonIndex.event_id.in_(chunk)))
    receipt: dict[str, Any] = {
        "erasure_id": None,
        "tenant": tenant_slug,
        "identifiers": kinds,
        **counts,
        "dry_run": dry_run,
        "at": now.isoformat() + "Z",
    }
    if dry_run:
        return receipt
    with Session(engine) as session, session.begin():
        row = Erasure(tenant_id=tenant_id, kinds=kinds, actor=actor[:64], created_at=now, **counts)
        session.add(row)
        session.flush()
        receipt["erasure_id"] = row.id
        audit.record(
            session, actor, "erasure", tenant_id=tenant_id, target=f"erasure {row.id}",
            detail={"identifiers": kinds, **counts},
        )  # fmt: skip
    log.info("erasure.done", extra={"count": counts["events"]})
    return receipt


def _open(cipher: Cipher, blob: bytes | None) -> Any:
    if blob is None:
        return None
    try:
        plain = cipher.decrypt(blob)
    except DecryptionError:
        return {"undecryptable": True}
    try:
        return orjson.loads(plain)
    except orjson.JSONDecodeError:
        return plain.decode("utf-8", "replace")


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def export_person(
    engine: Engine,
    cipher: Cipher,
    hasher: PersonHasher,
    wanted: Sequence[tuple[str, str]],
    *,
    tenant_slug: str | None = None,
    actor: str,
) -> dict[str, Any]:
    """Everything hub holds of a person, decrypted, as JSON-ready dicts (the access right)."""
    with Session(engine) as session:
        tenant_id = _tenant_id(session, tenant_slug)
        event_ids = _event_ids(session, hasher, wanted, tenant_id)
        slugs = {t_id: slug for t_id, slug in session.execute(select(Tenant.id, Tenant.slug))}
        out: dict[str, Any] = {"events": [], "deliveries": [], "dead_letters": []}
        for chunk in _chunks(event_ids):
            for e in session.scalars(
                select(IntegrationEvent).where(IntegrationEvent.id.in_(chunk))
            ):
                out["events"].append({
                    "id": e.id, "tenant": slugs.get(e.tenant_id), "source": e.source,
                    "event_type": e.event_type, "status": e.status.value,
                    "received_at": _iso(e.created_at), "erased_at": _iso(e.erased_at),
                    "payload": _open(cipher, e.payload),
                    "headers": e.headers or _open(cipher, e.sealed_headers),
                })  # fmt: skip
            deliveries = list(
                session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id.in_(chunk)))
            )
            attempts: dict[str, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
            for a in session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(list(attempts) or [""]))
                .order_by(DeliveryAttempt.id)
            ):
                attempts[a.delivery_id].append({
                    "number": a.number, "at": _iso(a.started_at), "status_code": a.status_code,
                    "response_excerpt": a.response_excerpt, "outcome": a.outcome,
                })  # fmt: skip
            for d in deliveries:
                out["deliveries"].append({
                    "id": d.id, "event_id": d.event_id, "endpoint": d.endpoint,
                    "status": d.status.value, "request": _open(cipher, d.request),
                    "last_error": d.last_error, "attempts": attempts[d.id],
                })  # fmt: skip
            for dl in session.scalars(select(DeadLetter).where(DeadLetter.event_id.in_(chunk))):
                out["dead_letters"].append({
                    "id": dl.id, "event_id": dl.event_id, "status": dl.status.value,
                    "reason": dl.reason, "last_error": dl.last_error,
                })  # fmt: skip
    audit.record_now(
        engine, actor, "export", tenant_id=tenant_id,
        detail={"identifiers": ",".join(sorted({k for k, _ in wanted})), "events": len(event_ids)},
    )  # fmt: skip
    return out


# -- POST /admin/erasures -------------------------------------------------------------------------


def _erase_request(state: Any, principal: Principal, body: ErasureRequest) -> dict[str, Any]:
    given = {kind: getattr(body, kind) for kind in KINDS}
    wanted = [(kind, normalise(kind, value)) for kind, value in given.items() if value is not None]
    if not wanted:
        raise BadRequest("name the person: cpf, phone or email")
    dry_run, slug = body.dry_run, body.tenant
    if not principal.is_operator:
        if slug is not None and slug != principal.tenant_slug:
            raise Forbidden("an admin key erases within its own tenant only")
        slug = principal.tenant_slug
    return erase_person(
        state.engine, person_hasher(state.settings), wanted, tenant_slug=slug,
        actor=audit.key_actor(principal.key_id), dry_run=dry_run,
    )  # fmt: skip


@requires_key()
async def erasures_create(request: Request, principal: Principal) -> Response:
    body = await json_body(request, ErasureRequest)
    receipt = await run_in_threadpool(_erase_request, request.app.state, principal, body)
    return JSONResponse(receipt, status_code=200 if receipt["dry_run"] else 201)


ROUTES: list[BaseRoute] = [Route("/admin/erasures", erasures_create, methods=["POST"])]
