"""`hub rotate-keys` while events keep arriving: nothing lost, nothing left under the old key."""

from __future__ import annotations

import threading

import orjson
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select

from hub.cli import cli
from hub.core.crypto import Cipher
from hub.core.models import IntegrationEvent, Tenant, TenantSecret, utcnow
from hub.core.settings import Settings
from hub.ingress.events import NewEvent, store_events

OLD, NEW = Cipher("old-key"), Cipher("new-key", "old-key")


def _events(engine: Engine, tenant_id: int, cipher: Cipher, prefix: str, n: int) -> None:
    for i in range(n):
        body = orjson.dumps({"n": i, "prefix": prefix})
        store_events(engine, [NewEvent(
            tenant_id=tenant_id, source="site", external_id=f"{prefix}-{i}", event_type="x",
            queue="default", payload=cipher.encrypt(body),
            sealed_headers=cipher.encrypt(b'{"user-agent": "t"}'),
        )])  # fmt: skip


def test_rotation_with_live_traffic_loses_nothing_and_leaves_nothing_under_the_old_key(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        tenant = conn.execute(
            insert(Tenant).values(slug="clinic-1", name="c", created_at=utcnow())
        ).inserted_primary_key[0]
        conn.execute(  # a pre-0006 event: clear headers, a version-1 blob of the single key
            insert(IntegrationEvent).values(
                id="evt_00000000000000000000000000", tenant_id=tenant, source="site",
                external_id="legacy", event_type="x", payload=OLD.encrypt(b"{}"),
                headers={"user-agent": "legacy"}, created_at=utcnow(), updated_at=utcnow(),
            )
        )  # fmt: skip
        conn.execute(
            insert(TenantSecret).values(
                tenant_id=tenant, name="CRM_TOKEN", version=1, value=OLD.encrypt(b"tok"),
                updated_by="cli:test", created_at=utcnow(), updated_at=utcnow(),
            )
        )  # fmt: skip
    _events(engine, tenant, OLD, "before", 300)
    # live traffic from processes that already have the new key list
    live = threading.Thread(target=_events, args=(engine, tenant, NEW, "during", 150))
    live.start()
    env = {
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_SECRET_KEYS": "new-key,old-key",
        "HUB_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, ["rotate-keys", "--batch-size", "50"], env=env)
    live.join()
    assert result.exit_code == 0, result.output
    assert "everything is under key" in result.stdout
    again = CliRunner().invoke(cli, ["rotate-keys", "--dry-run"], env=env)  # resumable: idempotent
    assert "everything is under key" in again.stdout

    only_new = Cipher("new-key")
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                IntegrationEvent.payload, IntegrationEvent.sealed_headers, IntegrationEvent.headers
            )
        ).all()
        secret = conn.scalar(select(TenantSecret.value))
    assert len(rows) == 1 + 300 + 150
    for payload, sealed, clear in rows:
        assert only_new.decrypt(payload) and only_new.decrypt(sealed) and clear is None
    assert secret is not None and only_new.decrypt(secret) == b"tok"
