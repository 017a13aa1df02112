"""A scratch installation for benchmarks: the configured database server and Redis server, but
a database and a Redis DB of their own, so a bench never touches real events, mappings or queues.

- MySQL/MariaDB: database `<name>_bench` on the same server, created, migrated, dropped after.
- SQLite (embedded default): a file in a temp dir.
- Redis: the configured server with DB index `redis_db` (flushed before and after); with the
  embedded default, an embedded Redis in the temp dir.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from hub.core import schema
from hub.core.db import check_database, create_db_engine, session_factory
from hub.core.errors import SettingError
from hub.core.models import KeyKind
from hub.core.queues import check_redis, connect_redis
from hub.core.settings import Settings
from hub.ingress import apikeys
from hub.local.embedded import EmbeddedRedis

SECRET_VAR = "BENCH_WEBHOOK_SECRET"


@dataclass
class Scratch:
    settings: Settings
    engine: Engine
    redis: Redis
    dir: Path
    key: str
    webhook_secret: str
    database_label: str
    redis_label: str

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if not k.startswith("HUB_")}
        env.update(
            HUB_DATABASE_URL=self.settings.effective_database_url,
            HUB_REDIS_URL=self.settings.redis_url or "",
            HUB_DATA_DIR=str(self.dir / "data"),
            HUB_MAPPINGS_DIR=str(self.dir / "mappings"),
            HUB_LOG_LEVEL="INFO",  # as in production: our own log lines are part of the cost
            HUB_DEFAULT_RATE_LIMIT="100000000/minute",
            HUB_EGRESS_ALLOW="127.0.0.1",  # the bench's target listens on loopback
            **{SECRET_VAR: self.webhook_secret},
        )
        return env


def with_redis_db(url: str, db: int) -> str:
    """The same Redis server, another DB index."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        return f"unix://{parts.path}?" + (query + "&" if query else "") + f"db={db}"
    return urlunsplit(parts._replace(path=f"/{db}"))


SCRATCH_MARK = "hub:bench:scratch"  # set in a Redis DB that `hub bench` owns


def claim_redis_db(redis: Redis, settings: Settings, redis_db: int) -> None:
    """Refuse a Redis DB that holds someone else's keys: the bench flushes it."""
    configured = urlsplit(settings.redis_url or "").path.lstrip("/") or "0"
    where = f"Redis DB {redis_db} of {_server(settings.redis_url or '')}"
    if configured == str(redis_db):
        raise SettingError(
            "--redis-db",
            f"{where} is the one HUB_REDIS_URL uses; choose another with --redis-db N",
        )
    keys = int(redis.dbsize())
    if keys and not redis.exists(SCRATCH_MARK):
        raise SettingError(
            "--redis-db",
            f"{where} holds {keys} keys that are not hub bench's (it flushes the DB it uses); "
            "choose an empty DB with --redis-db N, or empty this one yourself",
        )


def _server(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


@contextmanager
def scratch(settings: Settings, *, redis_db: int = 14, keep: bool = False) -> Iterator[Scratch]:
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    embedded: EmbeddedRedis | None = None
    server_engine: Engine | None = None
    db_name: str | None = None
    try:
        configured = settings.database_url
        if configured is None or make_url(configured).get_backend_name() == "sqlite":
            database_url = f"sqlite:///{tmp / 'bench.db'}"
            database_label = "SQLite (scratch file)"
        else:
            url = make_url(configured)
            db_name = f"{url.database or 'hub'}_bench"
            server = str(url.set(database="").render_as_string(hide_password=False))
            server_engine = create_db_engine(settings.model_copy(update={"database_url": server}))
            with server_engine.begin() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{db_name}`"))
                conn.execute(text(f"CREATE DATABASE `{db_name}` CHARACTER SET utf8mb4"))
            database_url = str(url.set(database=db_name).render_as_string(hide_password=False))
            database_label = f"{url.get_backend_name()} database {db_name} (scratch)"
        if settings.redis_url is None:
            embedded = EmbeddedRedis(tmp / "redis.sock", tmp).start()
            redis_url = embedded.url
            redis_label = "embedded Redis (scratch)"
        else:
            redis_url = with_redis_db(settings.redis_url, redis_db)
            redis_label = f"Redis DB {redis_db} (flushed)"
        bench_settings = settings.model_copy(
            update={
                "database_url": database_url,
                "redis_url": redis_url,
                "data_dir": tmp / "data",
                "mappings_dir": tmp / "mappings",
            }
        )
        engine = create_db_engine(bench_settings)
        check_database(engine)
        schema.upgrade(engine)
        redis = connect_redis(bench_settings)
        check_redis(redis, bench_settings)
        if embedded is None:
            claim_redis_db(redis, settings, redis_db)
        redis.flushdb()
        redis.set(SCRATCH_MARK, "1")  # this DB is the bench's: a later bench may flush it
        with session_factory(engine).begin() as session:
            key = apikeys.create_key(
                session, name="bench", tenant_slug="bench", kind=KeyKind.ADMIN, create_tenant=True
            ).secret
        yield Scratch(
            settings=bench_settings,
            engine=engine,
            redis=redis,
            dir=tmp,
            key=key,
            webhook_secret=secrets.token_hex(32),
            database_label=database_label,
            redis_label=redis_label,
        )
        if not keep:
            redis.flushdb()
        redis.close()
        engine.dispose()
    finally:
        if embedded is not None:
            embedded.stop()
        if server_engine is not None:
            if not keep and db_name:
                with server_engine.begin() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{db_name}`"))
            server_engine.dispose()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
