"""What the running process hands to the code of each stage: small Protocols, so that the
packages never import `workers/` (which implements them) and tests can pass their own.

    JobContext     an RQ job's: engine, Redis, cipher, sessions and a per-process cache
                   (implemented by workers.context.WorkerContext)
    SweepContext   a sweep task's: settings, engine, Redis, what RQ's jobs carry
                   (workers.sweeper.Sweeper's)
"""

from __future__ import annotations

from typing import Any, Protocol

from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub.core.crypto import Cipher
from hub.core.inflight import InFlight
from hub.core.settings import Settings


class JobContext(Protocol):
    """What a job needs of the worker process that runs it."""

    settings: Settings
    engine: Engine
    redis: Redis
    cipher: Cipher
    sessions: sessionmaker[Session]
    cache: dict[str, Any]  # per process: pooled clients, compiled mappings


class SweepContext(Protocol):
    """What a sweep task needs of the sweeper process that runs it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def inflight(self) -> InFlight: ...  # one per sweeper: its reads are incremental
