from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from hub.core import dead_letters, ids
from hub.core.db import session_factory
from hub.core.dead_letters import DeadLetterFilter
from hub.core.errors import DeadLetterNotFound
from hub.core.models import (
    DeadLetterStage,
    DeadLetterStatus,
    EventStatus,
    IntegrationEvent,
    Tenant,
    utcnow,
)


@pytest.fixture
def seeded(engine: Engine) -> dict[str, list[Any]]:
    """Two tenants, three dead letters of different sources, endpoints and ages."""
    now = utcnow()
    made: dict[str, list[Any]] = {}
    with engine.begin() as conn:
        tenants = [
            conn.execute(
                insert(Tenant).values(slug=slug, name=slug, created_at=now)
            ).inserted_primary_key[0]
            for slug in ("clinic-1", "clinic-2")
        ]
        made["tenants"] = tenants
        rows = []
        for n, (tenant, source, endpoint, age) in enumerate(
            [(0, "site", "crm", 3), (0, "zapi", "whatsapp", 2), (1, "site", "crm", 1)]
        ):
            event_id = ids.new_id(ids.EVENT)
            conn.execute(
                insert(IntegrationEvent).values(
                    id=event_id,
                    tenant_id=tenants[tenant],
                    source=source,
                    external_id=str(n),
                    event_type="lead.created",
                    status=EventStatus.FAILED,
                    created_at=now,
                    updated_at=now,
                )
            )
            rows.append(
                dead_letters.new_row(
                    tenant_id=tenants[tenant],
                    event_id=event_id,
                    source=source,
                    endpoint=endpoint,
                    stage=DeadLetterStage.DELIVERY,
                    reason="permanent: HTTP 410",
                    last_error="HTTP 410",
                    attempts=1,
                    now=now - timedelta(hours=age),
                )
            )
        made["ids"] = dead_letters.create_many(conn, rows)
    return made


def test_dead_letters_are_listed_newest_first_and_filtered(
    engine: Engine, seeded: dict[str, list[Any]]
) -> None:
    oldest, middle, newest = seeded["ids"]
    with session_factory(engine)() as session:
        assert [d.id for d in dead_letters.list_dead_letters(session)] == [newest, middle, oldest]
        by = dead_letters.list_dead_letters
        assert [d.id for d in by(session, DeadLetterFilter(source="site"))] == [newest, oldest]
        assert [d.id for d in by(session, DeadLetterFilter(endpoint="whatsapp"))] == [middle]
        assert [d.id for d in by(session, DeadLetterFilter(tenant="clinic-2"))] == [newest]
        since = utcnow() - timedelta(hours=2, minutes=30)
        assert [d.id for d in by(session, DeadLetterFilter(since=since))] == [newest, middle]
        until = utcnow() - timedelta(hours=1, minutes=30)
        assert [d.id for d in by(session, DeadLetterFilter(until=until))] == [middle, oldest]
        assert [d.id for d in by(session, limit=1, offset=1)] == [middle]
        assert dead_letters.count_open(session) == 3


def test_discarding_closes_a_dead_letter_and_hides_it_from_the_open_list(
    engine: Engine, seeded: dict[str, list[Any]]
) -> None:
    oldest = seeded["ids"][0]
    with session_factory(engine)() as session:
        letter = dead_letters.discard(session, oldest, actor="cli:test")
        session.commit()
        assert letter.status == DeadLetterStatus.DISCARDED and letter.resolved_at is not None
        assert oldest not in [d.id for d in dead_letters.list_dead_letters(session)]
        every = DeadLetterFilter(status=None)
        assert oldest in [d.id for d in dead_letters.list_dead_letters(session, every)]
        assert dead_letters.get(session, oldest).status == DeadLetterStatus.DISCARDED
        assert dead_letters.count_open(session) == 2


def test_an_unknown_or_foreign_dead_letter_is_not_found(
    engine: Engine, seeded: dict[str, list[Any]]
) -> None:
    newest = seeded["ids"][2]  # tenant 2's
    with session_factory(engine)() as session:
        with pytest.raises(DeadLetterNotFound, match="dlq_nope"):
            dead_letters.get(session, "dlq_nope")
        with pytest.raises(DeadLetterNotFound):
            dead_letters.discard(session, newest, tenant_id=seeded["tenants"][0], actor="cli:test")
        assert dead_letters.get(session, newest, tenant_id=seeded["tenants"][1]).id == newest
        assert DeadLetterNotFound.status_code == 404


def _event(engine: Engine) -> tuple[int, str]:
    now = utcnow()
    with engine.begin() as conn:
        tenant = conn.execute(
            insert(Tenant).values(slug="clinic-9", name="clinic-9", created_at=now)
        ).inserted_primary_key[0]
        event_id = ids.new_id(ids.EVENT)
        conn.execute(
            insert(IntegrationEvent).values(
                id=event_id,
                tenant_id=tenant,
                source="site",
                external_id="x",
                event_type="lead.created",
                status=EventStatus.FAILED,
                created_at=now,
                updated_at=now,
            )
        )
    return tenant, event_id


def _mapping_letter(tenant: int, event_id: str, reason: str) -> dict[str, Any]:
    return dead_letters.new_row(
        tenant_id=tenant,
        event_id=event_id,
        source="site",
        stage=DeadLetterStage.MAPPING,
        reason=reason,
    )


def test_a_second_dead_letter_for_the_same_event_and_stage_refreshes_the_open_one(
    engine: Engine,
) -> None:
    tenant, event_id = _event(engine)
    with engine.begin() as conn:
        [first] = dead_letters.create_many(conn, [_mapping_letter(tenant, event_id, "one")])
    with engine.begin() as conn:
        [second] = dead_letters.create_many(conn, [_mapping_letter(tenant, event_id, "two")])
    with session_factory(engine)() as session:
        letters = dead_letters.list_dead_letters(session, DeadLetterFilter(status=None))
        assert [(d.id, d.reason) for d in letters] == [(first, "two")], letters
        assert second == first
        dead_letters.discard(session, first, actor="cli:test")  # closed: the key is free again
        session.commit()
    with engine.begin() as conn:
        [third] = dead_letters.create_many(conn, [_mapping_letter(tenant, event_id, "three")])
    with session_factory(engine)() as session:
        every = dead_letters.list_dead_letters(session, DeadLetterFilter(status=None))
        assert sorted((d.status.value, d.reason) for d in every) == [
            ("discarded", "two"),
            ("open", "three"),
        ]
        assert third != first


def test_two_transactions_giving_up_on_the_same_event_at_once_write_one_dead_letter(
    engine: Engine,
) -> None:
    """The second writer's look-up runs before the first commits: it meets the unique index
    when it inserts, and folds its letter into the first one's instead of failing."""
    tenant, event_id = _event(engine)
    results: list[Any] = []
    with engine.connect() as first:
        tx = first.begin()
        [mine] = dead_letters.create_many(first, [_mapping_letter(tenant, event_id, "first")])

        def second() -> None:
            try:
                with engine.begin() as conn:
                    letter = _mapping_letter(tenant, event_id, "second")
                    results.append(dead_letters.create_many(conn, [letter]))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results.append(exc)

        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.5)  # the second one has looked (nothing committed) and waits on the index
        tx.commit()
    worker.join(timeout=30)
    assert results == [[mine]], results
    with session_factory(engine)() as session:
        letters = dead_letters.list_dead_letters(session, DeadLetterFilter(status=None))
        assert [(d.id, d.reason) for d in letters] == [(mine, "second")], letters
