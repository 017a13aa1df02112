"""Database engines: one per process, built from settings and passed down.

SQLite (the embedded default) runs in WAL mode with a busy timeout so web, worker and sweeper
processes share the file; MySQL/MariaDB gets a pre-ping pool sized for the web threadpool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import DatabaseUnavailable, SettingError
from hub.core.settings import Settings

CONNECT_TIMEOUT = 5  # seconds; a down database must not hang a request or a CLI command


def create_db_engine(settings: Settings, **overrides: Any) -> Engine:
    """Build the engine for `settings`; a malformed URL raises SettingError naming the setting."""
    url_text = settings.effective_database_url
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise SettingError("HUB_DATABASE_URL", f"not a database URL ({exc})") from exc

    kwargs: dict[str, Any] = {"future": True}
    if url.get_backend_name() == "sqlite":
        if settings.embedded_database:
            settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif url.get_backend_name() in ("mysql", "mariadb"):
        kwargs.update(
            pool_pre_ping=True,
            pool_recycle=3600,
            pool_size=20,
            max_overflow=20,
            connect_args={"connect_timeout": CONNECT_TIMEOUT, "charset": "utf8mb4"},
        )
    kwargs.update(overrides)
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise SettingError("HUB_DATABASE_URL", f"unsupported database URL ({exc})") from exc

    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
