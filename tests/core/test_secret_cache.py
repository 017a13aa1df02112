"""A process's cache of tenant secrets outlives a database outage: it keeps what it had, and logs
the outage once when it starts and once when it ends, never once a retry."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from hub.core.crypto import Cipher
from hub.core.db import create_db_engine
from hub.core.secrets import SecretCache
from hub.core.settings import Settings
from hub.local.processes import free_port


def test_reloads_that_fail_log_the_outage_once_and_the_return_once(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    away = create_db_engine(
        Settings(database_url=f"mysql+pymysql://root@127.0.0.1:{free_port()}/hub")
    )  # nothing listens there: every connect is refused
    cache = SecretCache(away, Cipher.from_settings(settings), None)
    with caplog.at_level("WARNING", logger="hub.core.secrets"):
        tries = [cache.refresh() for _ in range(5)]
        cache.engine = engine  # the database is back
        back = cache.refresh()
    away.dispose()
    said = [r.getMessage() for r in caplog.records]
    assert tries == [False] * 5 and back, f"5 failed reloads, then one: {tries}, {back}"
    assert said == ["secrets.database_down", "secrets.database_back"], said
