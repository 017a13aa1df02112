"""`hub rotate-keys`: every encrypted blob re-encrypted under the newest key, in batches.

Blobs: event payloads and request headers, delivery requests, tenant secrets; and request
headers still kept in clear (before revision 0006) are encrypted on the way. A blob is due when
its first bytes are not the newest key's prefix (hub.core.crypto), so the database finds what is
left and a rotation stopped half way resumes where it was: run it again.

Each batch reads up to `batch_size` due rows by primary key, re-encrypts them in this process, and
writes each back only if it is unchanged since it was read (a compare-and-set on the old blob), so
a replay or a purge running meanwhile is never overwritten; a row that changed under it is left
for the next run, which `remaining` counts. Give every process the new key list first (newest
first, old keys still listed), then rotate, then drop the old key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Column, Engine, Table, and_, bindparam, func, null, select, update

from hub.core import audit
from hub.core.crypto import HEADER_BYTES, Cipher, DecryptionError
from hub.core.models import IntegrationEvent, TenantSecret, WebhookDelivery

log = logging.getLogger("hub.ops.rotation")

DEFAULT_BATCH = 500


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


# (label, table, blob column)
BLOBS: tuple[tuple[str, Table, str], ...] = (
    ("event payloads", _table(IntegrationEvent), "payload"),
    ("event headers", _table(IntegrationEvent), "sealed_headers"),
    ("delivery requests", _table(WebhookDelivery), "request"),
    ("tenant secrets", _table(TenantSecret), "value"),
)
EVENTS = _table(IntegrationEvent)

Progress = Callable[[str, int], None]  # (label, rows just done)


@dataclass
class RotationResult:
    key_id: str
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)  # no configured key decrypts them
    remaining: int = 0  # due after the run (changed meanwhile, or undecryptable)


def _due(column: Column[Any], cipher: Cipher) -> Any:
    return and_(column.is_not(None), func.substr(column, 1, HEADER_BYTES) != cipher.prefix)


def pending(engine: Engine, cipher: Cipher) -> dict[str, int]:
    """How many blobs (and clear headers) are not yet under the newest key."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for label, table, name in BLOBS:
            column = table.c[name]
            counts[label] = (
                conn.scalar(select(func.count()).select_from(table).where(_due(column, cipher)))
                or 0
            )
        counts["clear headers"] = (
            conn.scalar(select(func.count()).select_from(EVENTS).where(_clear_headers())) or 0
        )
    return counts


def _clear_headers() -> Any:
    # JSON null (written by older code for None) counts as absent
    return and_(EVENTS.c.headers.is_not(None), func.length(EVENTS.c.headers) > 4)


def rotate(
    engine: Engine,
    cipher: Cipher,
    actor: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> RotationResult:
    result = RotationResult(key_id=cipher.key_id)
    for label, table, name in BLOBS:
        done, failed = _rotate_column(engine, cipher, table, name, batch_size, label, progress)
        result.done[label], result.failed[label] = done, failed
    result.done["clear headers"] = _seal_clear_headers(engine, cipher, batch_size, progress)
    result.remaining = sum(pending(engine, cipher).values())
    audit.record_now(
        engine,
        actor,
        "keys.rotate",
        target=f"key {cipher.key_id}",
        detail={"done": result.done, "failed": result.failed, "remaining": result.remaining},
    )
    log.info("keys.rotated", extra={"count": sum(result.done.values())})
    return result


def _rotate_column(
    engine: Engine,
    cipher: Cipher,
    table: Table,
    name: str,
    batch_size: int,
    label: str,
    progress: Progress | None,
) -> tuple[int, int]:
    key, column = table.c.id, table.c[name]
    write = (
        update(table)
        .where(key == bindparam("b_id"), column == bindparam("b_old"))
        .values({name: bindparam("b_new")})
    )
    done = failed = 0
    after: Any = None
    while True:
        query = select(key, column).where(_due(column, cipher)).order_by(key).limit(batch_size)
        if after is not None:
            query = query.where(key > after)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return done, failed
        after = rows[-1][0]
        params = []
        for row_id, blob in rows:
            try:
                params.append({"b_id": row_id, "b_old": blob, "b_new": cipher.reencrypt(blob)})
            except DecryptionError:
                failed += 1
        if params:
            with engine.begin() as conn:
                conn.execute(write, params)
        done += len(params)
        if progress is not None:
            progress(label, len(rows))


def _seal_clear_headers(
    engine: Engine, cipher: Cipher, batch_size: int, progress: Progress | None
) -> int:
    """Headers stored in clear before revision 0006: encrypted into `sealed_headers`."""
    key = EVENTS.c.id
    write = (
        update(EVENTS)
        .where(key == bindparam("b_id"), EVENTS.c.sealed_headers.is_(None))
        .values(sealed_headers=bindparam("b_new"), headers=null())
    )
    done = 0
    after = ""
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(key, EVENTS.c.headers)
                .where(_clear_headers(), key > after)
                .order_by(key)
                .limit(batch_size)
            ).all()
        if not rows:
            return done
        after = rows[-1][0]
        params = [
            {"b_id": row_id, "b_new": cipher.encrypt(orjson.dumps(headers))}
            for row_id, headers in rows
            if headers
        ]
        if params:
            with engine.begin() as conn:
                conn.execute(write, params)
        done += len(params)
        if progress is not None:
            progress("clear headers", len(rows))
