"""The applied sources as a web process sees them: what `hub mappings apply` stored in
`event_sources`, never the web host's own copy of sources.yaml.

Every web host serves the sources of the config version, so hosts cannot disagree after a
deploy, and an edited sources.yaml changes nothing until it is applied. Secrets stay the
references the file wrote (`env:NAME`, `secret:NAME`); each web process resolves them per
request (hub.core.envrefs).

`LiveSources` watches the config version as workers watch it for rules (hub.mapping.live): the
Redis key `hub:config:version` every second, and the database's latest `config_versions` id every
few seconds, so a flushed, stale or unpublished key is caught too. When the version moves it hands
that version's sources to its `on_load` callback. It runs in a daemon thread of its own: a
database that is down at the start, or goes away later, neither holds the start nor ends the
process. It waits with a capped backoff and logs once when the database goes and once when it
comes back (hub.core.outages). Until the first load, webhooks are answered 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hub.core.errors import DatabaseUnavailable, HubError, MappingsError
from hub.core.models import ConfigVersion, EventSource
from hub.core.outages import Outage
from hub.core.queues import CONFIG_VERSION_KEY
from hub.ingress.sources import SourceConfig

log = logging.getLogger("hub.ingress.applied")

CHECK_INTERVAL = 1.0  # seconds between looks at the Redis key
DB_CHECK_INTERVAL = 5.0  # seconds between looks at the database's version


@dataclass(frozen=True)
class AppliedSources:
    version: int  # the config version these sources belong to
    configs: dict[str, SourceConfig]


def applied_version(session: Session) -> int:
    """The latest config version in the database (0: nothing applied yet)."""
    return int(session.scalar(select(func.max(ConfigVersion.id))) or 0)


def published_version(redis: Redis | None) -> int | None:
    """The version in the Redis key; None when absent, unreadable or Redis is down."""
    if redis is None:
        return None
    try:
        raw = redis.get(CONFIG_VERSION_KEY)
    except (RedisError, OSError):
        return None
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def load_applied_sources(engine: Engine) -> AppliedSources:
    """The active sources stored by `apply`, with their version; MappingsError if a stored
    definition no longer validates (a newer hub reading an older row)."""
    with Session(engine) as session:
        version = applied_version(session)
        rows = session.scalars(select(EventSource).where(EventSource.active.is_(True))).all()
        stored = [(row.name, row.version, row.definition) for row in rows]
    configs: dict[str, SourceConfig] = {}
    problems: list[str] = []
    for name, row_version, definition in sorted(stored):
        try:
            configs[name] = SourceConfig.model_validate(definition)
        except ValidationError as exc:
            problems.append(f"source {name} (version {row_version}): {exc}")
    if problems:
        raise MappingsError(problems)
    return AppliedSources(version, configs)


class LiveSources:
    """The applied sources of one web process, reloaded when the config version moves."""

    def __init__(
        self,
        engine: Engine,
        redis: Redis | None,
        on_load: Callable[[AppliedSources], None],
        interval: float = CHECK_INTERVAL,
        db_interval: float = DB_CHECK_INTERVAL,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.on_load = on_load
        self.interval = interval
        self.db_interval = db_interval
        self.version: int | None = None  # the version in force; None until the first load
        self.outage = Outage(log, "web", "database")
        self._refused: int | None = None  # a version that did not load (the old one stays)
        self._next_db_check = 0.0
        self._stop = threading.Event()
        self._tried = threading.Event()  # set after the first try, loaded or not
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """One look at the version; load and hand on the sources when it moved. Whether it
        loaded. DatabaseUnavailable when the database does not answer."""
        now = time.monotonic()
        published = published_version(self.redis)
        moved = published is not None and published != self.version
        if not (self.version is None or moved or now >= self._next_db_check):
            return False
        self._next_db_check = now + self.db_interval
        try:
            with Session(self.engine) as session:
                wanted = applied_version(session)
            if wanted == self.version or wanted == self._refused:
                return False
            applied = load_applied_sources(self.engine)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            reason = str(orig) if orig is not None else str(exc)
            raise DatabaseUnavailable(f"cannot read the applied sources ({reason})") from exc
        except MappingsError as exc:
            return self._refuse(wanted, exc)
        try:
            self.on_load(applied)
        except HubError as exc:
            return self._refuse(applied.version, exc)
        self.version, self._refused = applied.version, None
        return True

    def _refuse(self, version: int, exc: HubError) -> bool:
        log.error(
            "ingress.sources_not_loaded",
            extra={"version": version, "reason": exc.message[:500]},
        )
        self._refused = version  # not again until the version moves
        return False

    def watch(self) -> None:
        """Refresh in a daemon thread until `stop`; outages wait with a capped backoff."""

        def loop() -> None:
            while not self._stop.is_set():
                wait = self.interval
                try:
                    self.refresh()
                except DatabaseUnavailable as exc:
                    wait = self.outage.failed(exc.message)
                except Exception as exc:  # noqa: BLE001 - the thread outlives any failure
                    log.warning(
                        "ingress.sources_not_checked", extra={"error_class": type(exc).__name__}
                    )
                else:
                    self.outage.recovered()
                self._tried.set()
                if self._stop.wait(wait):
                    return

        self._thread = threading.Thread(target=loop, name="hub-sources", daemon=True)
        self._thread.start()

    def wait_first(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the first try; whether sources are loaded."""
        self._tried.wait(timeout)
        return self.version is not None

    def stop(self) -> None:
        """End the watcher and wait for it: the caller closes Redis and the engine next."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
