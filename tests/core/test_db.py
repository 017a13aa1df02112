"""The MySQL/MariaDB pool spends no round trip a transaction does not need, and stays safe:
no rollback after a commit, no ping before a busy connection's checkout, yet a connection
returned with a transaction open is rolled back, and one the server dropped is replaced; on
either driver. A bare mysql:// URL takes the fastest driver installed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from typing import Any

import pymysql
import pymysql.connections
import pymysql.converters
import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from hub.core.db import PING_IDLE, create_db_engine, with_driver
from hub.core.models import Tenant
from hub.core.settings import Settings
from tests.conftest import require_mysqlclient, with_mysql_driver

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def mysql_settings(settings: Settings, mysql_driver: str) -> Settings:
    """The test database's settings on each MySQL driver in turn."""
    return with_mysql_driver(settings, mysql_driver)


def _driver_connection_class(driver: str) -> type:
    if driver == "mysqldb":
        import MySQLdb.connections

        return MySQLdb.connections.Connection
    return pymysql.connections.Connection


class Counted:
    """Driver calls made on the connections of one engine (a real server answers them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
        self.calls: list[str] = []
        connection_class = _driver_connection_class(driver)
        for name in ("rollback", "ping"):
            original = getattr(connection_class, name)

            def counted(conn: object, *args: object, _n: str = name, _o: Any = original) -> Any:
                self.calls.append(_n)
                return _o(conn, *args)

            monkeypatch.setattr(connection_class, name, counted)


def _direct(engine: Engine) -> pymysql.connections.Connection:
    """A connection of its own, outside the engine's pool."""
    url = engine.url
    return pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
        database=url.database, autocommit=True,
    )  # fmt: skip


def _one_connection(settings: Settings) -> Engine:
    return create_db_engine(settings, pool_size=1, max_overflow=0)


def test_a_committed_transaction_costs_no_rollback_and_a_busy_connection_no_ping(
    mysql_settings: Settings, mysql_driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _one_connection(mysql_settings)
    assert engine.dialect.driver == mysql_driver
    with engine.begin() as conn:  # the first connect rolls back once: not counted
        conn.execute(text("SELECT 1"))
    counted = Counted(monkeypatch, mysql_driver)
    for _ in range(5):
        with engine.begin() as conn:
            conn.execute(text("UPDATE tenants SET name = name WHERE id = -1"))
    assert counted.calls == [], f"5 commits in a row made these extra calls: {counted.calls}"
    engine.dispose()


def test_a_connection_returned_with_a_read_open_is_rolled_back(mysql_settings: Settings) -> None:
    """Without the rollback the next user would read the old snapshot (REPEATABLE READ)."""
    engine = _one_connection(mysql_settings)
    with engine.begin() as conn:
        conn.execute(insert(Tenant).values(slug="snap", name="one", active=True))
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("SELECT name FROM tenants WHERE slug = 'snap'")
    first = cursor.fetchall()
    raw.close()  # a read left open: the pool has to end it
    other = _direct(engine)
    other.cursor().execute("UPDATE tenants SET name = 'two' WHERE slug = 'snap'")
    other.close()
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("SELECT name FROM tenants WHERE slug = 'snap'")
    second = cursor.fetchall()
    raw.close()
    engine.dispose()
    assert (first, second) == ((("one",),), (("two",),)), f"read {first} then {second}"


def test_a_rested_connection_the_server_dropped_is_replaced_on_checkout(
    mysql_settings: Settings,
) -> None:
    engine = _one_connection(mysql_settings)
    with engine.connect() as conn:
        dropped = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    other = _direct(engine)
    other.cursor().execute(f"KILL {int(dropped)}")
    other.close()
    time.sleep(PING_IDLE + 0.2)  # only a connection that rested is pinged
    with engine.connect() as conn:
        now = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    engine.dispose()
    assert now != dropped, f"connection {dropped} was killed; the checkout gave {now}"


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 1, 21, 0, 0, 123456),
        dt.datetime(2026, 12, 1, 21, 0, 0),  # no fraction written
        dt.datetime(999, 1, 2, 3, 4, 5, 6),  # a three-digit year, padded
        dt.datetime(2026, 12, 1, 21, 0, 0, 500, tzinfo=dt.UTC),  # the zone dropped, as PyMySQL
    ],
)
def test_a_datetime_is_written_as_pymysql_writes_it_and_reads_back_whole(
    settings: Settings, database_url: str, value: dt.datetime
) -> None:
    if not database_url.startswith(("mysql", "mariadb")):
        pytest.skip("PyMySQL's datetime literal: needs HUB_TEST_DATABASE_URL=mysql://...")
    engine = _one_connection(with_mysql_driver(settings, "pymysql"))
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection.encoders[dt.datetime] is not pymysql.converters.escape_datetime
        assert connection.escape(value) == pymysql.converters.escape_datetime(value)
        cursor = raw.cursor()
        cursor.execute("SELECT CAST(%s AS DATETIME(6))", (value,))
        assert cursor.fetchone()[0] == value.replace(tzinfo=None)
    finally:
        raw.close()
        engine.dispose()


# -- which driver ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("mysql+pymysql://u:p@db/hub", "mysql+pymysql://u:p@db/hub"),
        ("mysql+mysqldb://u:p@db/hub", "mysql+mysqldb://u:p@db/hub"),
        ("sqlite:///hub.db", "sqlite:///hub.db"),
    ],
)
def test_a_url_that_names_its_driver_keeps_it(given: str, kept: str) -> None:
    assert with_driver(make_url(given)).render_as_string(hide_password=False) == kept


def _bare_urls_driver(blocked: bool) -> str:
    """What a bare mysql:// and mariadb:// URL take in a fresh interpreter, with mysqlclient
    importable or not (None in sys.modules: its import fails, as when it is not installed)."""
    code = (
        "import sys\n"
        + ("sys.modules['MySQLdb'] = None\n" if blocked else "")
        + "from sqlalchemy.engine import make_url\n"
        "from hub.core.db import with_driver\n"
        "print(with_driver(make_url('mysql://u@db/hub')).drivername,"
        " with_driver(make_url('mariadb://u@db/hub')).drivername)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_bare_mysql_url_takes_mysqlclient_where_it_is_installed() -> None:
    require_mysqlclient()
    assert _bare_urls_driver(blocked=False) == "mysql+mysqldb mariadb+mysqldb"


def test_a_bare_mysql_url_takes_pymysql_without_mysqlclient() -> None:
    assert _bare_urls_driver(blocked=True) == "mysql+pymysql mariadb+pymysql"


def test_an_engine_on_a_bare_url_runs_on_mysqlclient_where_it_is_installed(
    settings: Settings, database_url: str
) -> None:
    if not database_url.startswith(("mysql", "mariadb")):
        pytest.skip("an engine on MySQL: needs HUB_TEST_DATABASE_URL=mysql://...")
    require_mysqlclient()
    url = make_url(settings.database_url or "").set(drivername="mysql")
    engine = create_db_engine(
        settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})
    )
    try:
        with engine.begin() as conn:
            conn.execute(insert(Tenant).values(slug="bare", name="b\u00e9", active=True))
        with engine.connect() as conn:
            name = conn.execute(text("SELECT name FROM tenants WHERE slug = 'bare'")).scalar_one()
    finally:
        engine.dispose()
    assert (engine.dialect.driver, name) == ("mysqldb", "b\u00e9")
