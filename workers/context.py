"""What a worker process builds once and every job in it uses.

RQ jobs carry ids only; they reach the engine, Redis, the cipher and per-process caches (pooled
HTTP clients, compiled mappings) through the context installed when the worker starts
(`install(WorkerContext.from_settings(settings))`). A job run outside `hub worker` builds one
from the environment on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.core.crypto import Cipher
from hub.core.db import create_db_engine, session_factory
from hub.core.queues import connect_redis
from hub.core.settings import Settings


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    redis: Redis
    cipher: Cipher
    sessions: sessionmaker[Session]
    cache: dict[str, Any] = field(default_factory=dict)  # per-process: clients, compiled rules

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        engine = create_db_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            redis=connect_redis(settings, timeout=30),
            cipher=Cipher.from_settings(settings),
            sessions=session_factory(engine),
        )

    def close(self) -> None:
        for value in self.cache.values():
            close = getattr(value, "close", None)
            if callable(close):
                close()
        self.cache.clear()
        self.redis.close()
        self.engine.dispose()


_current: WorkerContext | None = None


def install(ctx: WorkerContext | None) -> None:
    """Make `ctx` the context of this process's jobs (None to forget it)."""
    global _current
    _current = ctx


def current() -> WorkerContext:
    global _current
    if _current is None:
        _current = WorkerContext.from_settings(Settings())
    return _current


def current_or_none() -> WorkerContext | None:
    """The installed context, if any (never builds one)."""
    return _current
