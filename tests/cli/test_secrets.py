"""`hub secrets`: the value from stdin only, never shown again, audited, removable."""

from __future__ import annotations

import orjson
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from hub.cli import cli
from hub.core.models import AuditEntry, Tenant, TenantSecret, utcnow
from hub.core.settings import Settings


def run(args: list[str], settings: Settings, stdin: str | None = None) -> tuple[int, str, str]:
    env = {
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": settings.redis_url or "",
        "HUB_DATA_DIR": str(settings.data_dir),
    }
    result = CliRunner().invoke(cli, ["secrets", *args], input=stdin, env=env)
    return result.exit_code, result.stdout, result.stderr


def _tenant(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Tenant).values(slug="clinic-1", name="c", created_at=utcnow()))


def test_set_reads_stdin_and_list_never_shows_the_value(engine: Engine, settings: Settings) -> None:
    _tenant(engine)
    code, out, err = run(["set", "--tenant", "clinic-1", "CRM_TOKEN"], settings, "tok-abc-1\n")
    assert code == 0, err
    assert "version 1" in out
    code, out, _ = run(["set", "--tenant", "clinic-1", "CRM_TOKEN"], settings, "tok-abc-2\n")
    assert "version 2" in out

    code, out, err = run(["list", "--json"], settings)
    assert code == 0, err
    (row,) = orjson.loads(out)
    assert row["name"] == "CRM_TOKEN" and row["version"] == 2 and row["tenant"] == "clinic-1"
    assert row["updated_by"].startswith("cli:")
    code, table, _ = run(["list"], settings)
    assert "CRM_TOKEN" in table and "tok-abc" not in out + table

    with Session(engine) as session:
        stored = session.scalar(select(TenantSecret.value))
        assert stored is not None and b"tok-abc" not in stored
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        details = str(list(session.scalars(select(AuditEntry.detail))))
    assert actions == ["secret.set", "secret.rotate"] and "tok-abc" not in details

    code, out, err = run(["rm", "--tenant", "clinic-1", "CRM_TOKEN"], settings)
    assert code == 0, err
    assert orjson.loads(run(["list", "--json"], settings)[1]) == []


def test_mistakes_are_one_line_with_exit_2_and_change_nothing(
    engine: Engine, settings: Settings
) -> None:
    _tenant(engine)
    cases = [
        (["set", "--tenant", "clinic-1", "bad-name"], "x"),
        (["set", "--tenant", "nobody", "TOKEN"], "x"),
        (["set", "--tenant", "clinic-1", "TOKEN"], ""),
        (["rm", "--tenant", "clinic-1", "TOKEN"], None),
    ]
    for args, stdin in cases:
        code, _, err = run(args, settings, stdin)
        assert code == 2, args
        assert err.startswith("hub: error:") and err.count("\n") == 1, err
    with Session(engine) as session:
        assert session.scalar(select(TenantSecret.id)) is None
        assert session.scalar(select(AuditEntry.id)) is None
