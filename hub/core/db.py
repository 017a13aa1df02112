"""Database engines: one per process, built from settings and passed down.

SQLite (the embedded default) runs in WAL mode with a busy timeout so web, worker and sweeper
processes share the file; MySQL/MariaDB gets a pool sized for the web threadpool that spends no
round trip a transaction does not need: a connection is pinged on checkout only after resting
`PING_IDLE` seconds (a busy process does not ping before each transaction, and a dead
connection found later fails its statement and is replaced, as the pool invalidates on a
disconnect), and it is rolled back on return only when the driver says a transaction is still
open (not after every commit; mysqlclient says nothing, so there only when no commit ended it).
The MySQL driver is the URL's (`mysql+pymysql://`, `mysql+mysqldb://`); a bare `mysql://` takes
the fastest one installed (`with_driver`): mysqlclient, else PyMySQL. With PyMySQL, a naive
datetime is written as its `isoformat` (`_pymysql_conversions`): the same literal as PyMySQL's
own, at a tenth of its CPU. On either, an engine may be built to take several statements per
query (`multi_statements`, the web's group commit).
"""

from __future__ import annotations

import datetime as dt
import time
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import DatabaseUnavailable, SettingError
from hub.core.settings import Settings

CONNECT_TIMEOUT = 5  # seconds; a down database must not hang a request or a CLI command
PING_IDLE = 2.0  # seconds a pooled connection may rest before it is pinged on checkout
_IN_TRANSACTION = 1  # the server's SERVER_STATUS_IN_TRANS flag, as PyMySQL keeps it


def create_db_engine(
    settings: Settings, *, multi_statements: bool = False, **overrides: Any
) -> Engine:
    """Build the engine for `settings`; a malformed URL raises SettingError naming the setting.

    `multi_statements`: on MySQL, connections that accept several statements in one query
    (`allows_multi_statements`), for the web's group commit, whose statements carry no value
    that is not hub's own literal (hub.core.inserts): one round trip per commit."""
    url_text = settings.effective_database_url
    try:
        url = with_driver(make_url(url_text))
    except ArgumentError as exc:
        raise SettingError("HUB_DATABASE_URL", f"not a database URL ({exc})") from exc

    kwargs: dict[str, Any] = {"future": True}
    multi = False
    if url.get_backend_name() == "sqlite":
        if settings.embedded_database:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif url.get_backend_name() in ("mysql", "mariadb"):
        kwargs.update(
            pool_reset_on_return=None,  # `_reset_if_open` instead
            pool_recycle=3600,
            pool_size=20,
            max_overflow=20,
            connect_args={"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"},
        )
        if url.get_driver_name() == "pymysql":
            kwargs["connect_args"]["conv"] = _pymysql_conversions()
            if multi_statements:
                from pymysql.constants import CLIENT

                kwargs["connect_args"]["client_flag"] = CLIENT.MULTI_STATEMENTS
                multi = True
        elif url.get_driver_name() == "mysqldb" and multi_statements:
            from MySQLdb.constants import CLIENT as MYSQLDB_CLIENT

            kwargs["connect_args"]["client_flag"] = MYSQLDB_CLIENT.MULTI_STATEMENTS
            multi = True
    kwargs.update(overrides)
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise SettingError("HUB_DATABASE_URL", f"unsupported database URL ({exc})") from exc

    if multi:
        _multi_statement_engines.add(engine)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.get_backend_name() in ("mysql", "mariadb") and not kwargs.get("pool_pre_ping"):
        _economical_pool(engine)
    return engine


def with_driver(url: URL) -> URL:
    """`url` with its MySQL driver named: as given (`mysql+pymysql://`, `mysql+mysqldb://`), or
    for a bare `mysql://` / `mariadb://` the fastest one installed: mysqlclient (C; `pip install
    'hub[mysqlclient]'`), else PyMySQL (pure Python, always installed)."""
    if url.get_backend_name() not in ("mysql", "mariadb") or "+" in url.drivername:
        return url
    return url.set(drivername=f"{url.get_backend_name()}+{fastest_mysql_driver()}")


def fastest_mysql_driver() -> str:
    """`mysqldb` (mysqlclient, C) when it imports, else `pymysql`: reading a routing job's rows
    costs the C driver about half the CPU (README, Performance)."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return "pymysql"
    return "mysqldb"


def _pymysql_conversions() -> dict[Any, Any]:
    """PyMySQL's conversions, with a datetime literal from `isoformat` (C) instead of its
    `str.format` of seven fields: a fifth of the CPU of a multi-row delivery insert went there.
    `'2026-12-01 21:00:00.123456'` either way (no fraction when there are no microseconds)."""
    from pymysql import converters

    def escape_datetime(value: dt.datetime, mapping: Any = None) -> str:
        if value.tzinfo is not None:  # PyMySQL drops the zone; isoformat would keep it
            return str(converters.escape_datetime(value, mapping))
        return "'" + value.isoformat(" ") + "'"

    conversions = dict(converters.conversions)
    conversions[dt.datetime] = escape_datetime
    return conversions


def allows_multi_statements(engine: Engine) -> bool:
    """Whether `engine`'s connections take several statements in one query (built with
    `create_db_engine(multi_statements=True)` on MySQL)."""
    return engine in _multi_statement_engines


_multi_statement_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _economical_pool(engine: Engine) -> None:
    """Ping on checkout only after a rest; roll back on return only an open transaction."""
    ping = engine.dialect.do_ping
    silent_driver = engine.dialect.driver == "mysqldb"  # no server_status to look at

    def rested(_dbapi_connection: Any, record: Any) -> None:
        record.info["rested_at"] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("rested_at")
        if since is None or time.monotonic() - since < PING_IDLE:
            return
        try:
            ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool connects again
            raise DisconnectionError(f"a pooled connection did not answer ({exc})") from exc

    def committed(conn: Any) -> None:
        conn.connection.info["committed"] = True  # the pooled connection's (its record's) info

    def reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        committed = record.info.pop("committed", False) if record is not None else False
        if state.terminate_only or state.transaction_was_reset:
            return  # closing, or the Connection rolled back already
        status = getattr(dbapi_connection, "server_status", None)
        if committed and status is not None and not status & _IN_TRANSACTION:
            return  # committed, and the server says no transaction is open
        if committed and status is None and silent_driver:
            return  # committed; mysqlclient keeps no status (SQLAlchemy rolled back its own)
        dbapi_connection.rollback()  # anything else (a raw connection, an unknown driver)

    event.listen(engine, "commit", committed)
    event.listen(engine.pool, "checkin", rested)
    event.listen(engine.pool, "checkout", check)
    event.listen(engine.pool, "reset", reset)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def check_database(engine: Engine) -> None:
    """Run `SELECT 1`; raise DatabaseUnavailable with the driver's reason when it fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig) if exc.orig is not None else str(exc)
        raise DatabaseUnavailable(f"HUB_DATABASE_URL: cannot connect ({reason})") from exc
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"HUB_DATABASE_URL: {exc}") from exc


def describe_url(engine: Engine) -> str:
    """The engine's URL with the password hidden, for messages and logs."""
    return engine.url.render_as_string(hide_password=True)
