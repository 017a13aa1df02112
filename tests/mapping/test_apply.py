"""`apply`: versions and checksums, all or nothing, idempotent, Redis version key bumped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hub.core.models import ConfigVersion, EndpointKind, EventMapping, WebhookEndpoint
from hub.core.queues import CONFIG_VERSION_KEY
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(SHIPPED, target)
    return target


def active(engine: Engine, model: type[EventMapping] | type[WebhookEndpoint]) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.scalars(select(model).where(model.active.is_(True))).all()
        return {row.name: row.version for row in rows}


def count(engine: Engine, model: type[object]) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_first_apply_writes_every_rule_and_endpoint(engine: Engine, redis: Redis) -> None:
    result = apply_mappings(engine, redis, load_mappings(SHIPPED))
    assert result.changed and result.version >= 1
    assert sorted(result.rules.added) == [
        "appointment",
        "client-registered",
        "lead-created",
        "service-completed",
    ]
    assert active(engine, EventMapping) == dict.fromkeys(result.rules.added, 1)
    assert set(active(engine, WebhookEndpoint)) == {
        "agenda", "broker", "crm", "email", "financeiro", "marketing", "whatsapp",
        "whatsapp_cloud",
    }  # fmt: skip
    assert redis.get(CONFIG_VERSION_KEY) == str(result.version).encode()
    with Session(engine) as session:
        crm = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.name == "crm")).one()
        assert crm.kind == EndpointKind.WEBHOOK
        assert crm.definition["url"] == "env:{TENANT}_CRM_URL"  # references, never values
        assert len(crm.checksum) == 64
        rule = session.scalars(
            select(EventMapping).where(EventMapping.name == "service-completed")
        ).one()
        assert rule.definition["routes"][1]["delay"] == 7200.0


def test_applying_the_same_files_twice_changes_nothing(engine: Engine, redis: Redis) -> None:
    first = apply_mappings(engine, redis, load_mappings(SHIPPED))
    rows = count(engine, EventMapping), count(engine, WebhookEndpoint), count(engine, ConfigVersion)
    second = apply_mappings(engine, redis, load_mappings(SHIPPED))
    assert not second.changed
    assert second.version == first.version
    assert len(second.rules.unchanged) == 4
    after = (
        count(engine, EventMapping),
        count(engine, WebhookEndpoint),
        count(engine, ConfigVersion),
    )
    assert after == rows


def test_a_changed_rule_gets_a_new_version_and_the_old_one_is_deactivated(
    engine: Engine, redis: Redis, mappings: Path
) -> None:
    first = apply_mappings(engine, redis, load_mappings(mappings))
    rule = mappings / "rules" / "lead_created.yaml"
    rule.write_text(rule.read_text().replace("default: organico", "default: inbound"))
    (mappings / "rules" / "client_registered.yaml").unlink()
    second = apply_mappings(engine, redis, load_mappings(mappings))
    assert second.version == first.version + 1
    assert second.rules.updated == ["lead-created"]
    assert second.rules.removed == ["client-registered"]
    assert second.endpoints.changed is False
    assert active(engine, EventMapping) == {
        "appointment": 1,
        "lead-created": 2,
        "service-completed": 1,
    }
    assert redis.get(CONFIG_VERSION_KEY) == str(second.version).encode()
    # the removed rule comes back as a new version, not a resurrected old row
    shutil.copy(SHIPPED / "rules" / "client_registered.yaml", mappings / "rules")
    third = apply_mappings(engine, redis, load_mappings(mappings))
    assert third.rules.added == ["client-registered"]
    assert active(engine, EventMapping)["client-registered"] == 2


def test_apply_without_redis_still_writes_the_database(engine: Engine) -> None:
    result = apply_mappings(engine, None, load_mappings(SHIPPED))
    assert result.changed
    assert count(engine, EventMapping) == 4
