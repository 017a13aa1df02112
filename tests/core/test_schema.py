"""The migrations create exactly the schema the models describe, and go down again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from hub.core import schema
from hub.core.db import create_db_engine
from hub.core.models import Base
from hub.core.settings import Settings
from tests.conftest import ensure_database


def _fresh_engines(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    yield "sqlite", create_db_engine(Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}"))
    url = make_url(database_url)
    if url.get_backend_name() in ("mysql", "mariadb"):
        own = str(url.set(database=f"{url.database}_schema"))
        ensure_database(own)
        engine = create_db_engine(Settings(database_url=own))
        with engine.begin() as conn:
            for name in inspect(conn).get_table_names():
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
                conn.exec_driver_sql(f"DROP TABLE `{name}`")
        yield "mysql", engine


@pytest.fixture
def fresh(database_url: str, tmp_path: Path) -> list[tuple[str, Engine]]:
    engines = list(_fresh_engines(database_url, tmp_path))
    yield engines
    for _, engine in engines:
        engine.dispose()


def test_upgrade_creates_every_table_and_matches_the_models(
    fresh: list[tuple[str, Engine]],
) -> None:
    for _, engine in fresh:
        schema.upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert schema.current_revision(engine) == schema.head_revision()
        assert schema.drift(engine) == []


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(
    fresh: list[tuple[str, Engine]],
) -> None:
    for _, engine in fresh:
        schema.upgrade(engine)
        schema.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert schema.current_revision(engine) is None
        schema.upgrade(engine)
        assert schema.drift(engine) == []


def test_the_promises_are_unique_constraints() -> None:
    def uniques(table: str) -> set[tuple[str, ...]]:
        t = Base.metadata.tables[table]
        return {
            tuple(c.name for c in con.columns)
            for con in t.constraints
            if con.__class__.__name__ == "UniqueConstraint"
        }

    assert ("tenant_id", "source", "external_id") in uniques("integration_events")
    assert ("event_id", "mapping", "route") in uniques("webhook_deliveries")
    assert ("delivery_id",) in uniques("retry_queue")


def test_seed_indexes_exist_after_migration(engine: Engine) -> None:
    def indexed(table: str) -> list[list[str]]:
        return [list(i["column_names"]) for i in inspect(engine).get_indexes(table)]

    assert ["status", "created_at"] in indexed("integration_events")
    assert ["endpoint_id", "status"] in indexed("webhook_deliveries")
    assert ["next_retry_at"] in indexed("retry_queue")
