"""Fixtures for real services.

HUB_TEST_DATABASE_URL (MariaDB in CI) and HUB_TEST_REDIS_URL (a real Redis DB in CI) choose the
services; without them the tests run on SQLite in a temp dir and an embedded Redis, so `pytest`
passes on a laptop too. A configured service that cannot be reached skips locally and fails under
CI (`CI` set). Each test gets clean tables and a flushed Redis database. RabbitMQ is the real one
(HUB_TEST_AMQP_URL, default guest on 127.0.0.1:5672) in both lanes: each test's exchanges and
queues carry a name unique to it and are deleted after it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import Engine, delete, text
from sqlalchemy.engine import make_url

from hub.core import schema
from hub.core.db import check_database, create_db_engine
from hub.core.errors import HubError
from hub.core.models import Base
from hub.core.settings import Settings
from hub.local.embedded import EmbeddedRedis

CI = bool(os.environ.get("CI"))

# The suite's stand-ins for target systems listen on loopback, which the egress policy closes to
# deliveries by default: the suite allows it, for every Settings it builds and every process it
# starts (tests/delivery/test_egress.py builds its own policies to check the refusals).
os.environ.setdefault("HUB_EGRESS_ALLOW", "127.0.0.0/8,::1")
ROOT = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_database(url: str) -> None:
    """CREATE DATABASE IF NOT EXISTS for a MySQL URL (no-op for SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.database:
        return
    server = create_db_engine(Settings(database_url=str(parsed.set(database=""))))
    try:
        with server.begin() as conn:
            conn.execute(
                text(
                    f"CREATE DATABASE IF NOT EXISTS `{parsed.database}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
    finally:
        server.dispose()


def reset_schema(engine: Engine) -> None:
    """Drop every table (ours and alembic's), then migrate to head."""
    with engine.begin() as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        if engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))
    schema.upgrade(engine)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub_test.db'}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if url:
        yield url
        return
    data = tmp_path_factory.mktemp("redis")
    with EmbeddedRedis(data / "redis.sock", data) as server:
        yield server.url


@pytest.fixture(params=["pymysql", "mysqldb"])
def mysql_driver(request: pytest.FixtureRequest, database_url: str) -> str:
    """Each MySQL driver in turn (a test taking it runs once per driver): PyMySQL, always
    installed, and mysqlclient, which a bare mysql:// URL takes where it installs (CI installs
    it: missing there, the test fails). Skips without a MySQL test database."""
    if make_url(database_url).get_backend_name() not in ("mysql", "mariadb"):
        pytest.skip("a MySQL driver's behaviour: needs HUB_TEST_DATABASE_URL=mysql://...")
    if request.param == "mysqldb":
        require_mysqlclient()
    return str(request.param)


def require_mysqlclient() -> None:
    """mysqlclient must be importable (CI installs it; a laptop may not have it: skip there)."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        unavailable("mysqlclient is not installed: pip install -e '.[test,mysqlclient]'")


def with_mysql_driver(settings: Settings, driver: str) -> Settings:
    """`settings` with its MySQL URL pinned to `driver` (`pymysql` or `mysqldb`)."""
    assert settings.database_url is not None
    url = make_url(settings.database_url)
    url = url.set(drivername=f"{url.get_backend_name()}+{driver}")
    return settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    try:
        ensure_database(database_url)
        engine = create_db_engine(Settings(database_url=database_url))
        check_database(engine)
    except HubError as exc:
        unavailable(f"test database unavailable: {exc}")
    reset_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    """The migrated test database with every table emptied."""
    with migrated_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    return migrated_engine


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        client.flushdb()
    except Exception as exc:  # noqa: BLE001 - any failure here means the service is missing
        unavailable(f"test Redis unavailable at {redis_url}: {exc}")
    yield client
    client.close()


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, redis_url: str, engine: Engine, redis: Redis
) -> Settings:
    """Settings pointing at the clean test database and Redis, with a private data dir."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path / ".hub",
        mappings_dir=ROOT / "mappings",
        log_format="json",
        _env_file=None,  # type: ignore[call-arg]
    )


class Broker:
    """The real RabbitMQ, with names unique to this test (runs never collide), deleted after."""

    def __init__(self, url: str) -> None:
        import pika

        self.url = url
        self.prefix = f"hubtest.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.exchanges: list[str] = []
        self.queues: list[str] = []

    def name(self, what: str) -> str:
        return f"{self.prefix}.{what}"

    def exchange(self, what: str, kind: str = "topic") -> str:
        name = self.name(what)
        self.channel.exchange_declare(name, kind, durable=True)
        self.exchanges.append(name)
        return name

    def queue(self, what: str, **arguments: object) -> str:
        name = self.name(what)
        self.channel.queue_declare(name, durable=True, arguments=arguments or None)
        self.queues.append(name)
        return name

    def bind(self, queue: str, exchange: str, key: str = "#") -> None:
        self.channel.queue_bind(queue, exchange, routing_key=key)

    def get(self, queue: str, timeout: float = 5.0) -> tuple[object, object, bytes] | None:
        """One message (acked), waiting up to `timeout`; None if none came."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, properties, body
            if time.monotonic() > deadline:
                return None
            self.connection.sleep(0.05)

    def close(self) -> None:
        for queue in self.queues:
            self.channel.queue_delete(queue)
        for exchange in self.exchanges:
            self.channel.exchange_delete(exchange)
        self.connection.close()


@pytest.fixture
def amqp_url() -> str:
    return os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def broker(amqp_url: str) -> Iterator[Broker]:
    import pika.exceptions

    try:
        found = Broker(amqp_url)
    except pika.exceptions.AMQPError as exc:
        unavailable(f"RabbitMQ unavailable at {amqp_url}: {exc!r}")
    yield found
    found.close()
