"""One clock per installation: the database's.

Leases, due times and cut-offs are compared across hosts (a worker on one host sets a lease
that the sweeper on another finds expired), so they are read from the database's clock, not
each host's. `now(engine)` is this host's UTC time corrected by its offset from the database,
measured with one query (`UTC_TIMESTAMP(6)` on MariaDB, `now` on SQLite) and measured again
every REFRESH seconds; the query's round trip bounds the error (half of it, a few ms on a LAN).
A database out of reach leaves the last offset in use (none measured yet: zero), so the clock
never turns a database outage into an error of its own.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

REFRESH = 30.0  # seconds between measures of a process's offset from the database

_QUERIES = {
    "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
}


class _Offset:
    def __init__(self) -> None:
        self.value = timedelta(0)
        self.measured_at: float | None = None  # time.monotonic()
        self.lock = threading.Lock()


_offsets: WeakKeyDictionary[Engine, _Offset] = WeakKeyDictionary()
_guard = threading.Lock()


def database_time(engine: Engine) -> datetime:
    """The database's UTC time now (naive, like every stored timestamp); one query."""
    query = _QUERIES.get(engine.dialect.name)
    if query is None:
        raise ValueError(f"no clock query for the {engine.dialect.name} dialect")
    with engine.connect() as conn:
        value = conn.execute(text(query)).scalar_one()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=None)


def measure(engine: Engine) -> timedelta:
    """Measure (again) this process's offset from the database's clock, and keep it."""
    with _guard:
        offset = _offsets.setdefault(engine, _Offset())
    before = time.time()
    at_database = database_time(engine)
    after = time.time()
    here = datetime.fromtimestamp((before + after) / 2, UTC).replace(tzinfo=None)
    with offset.lock:
        offset.value = at_database - here
        offset.measured_at = time.monotonic()
    return offset.value


def offset(engine: Engine) -> timedelta:
    """The offset in use, measured again when older than REFRESH seconds. SQLite is a file on
    this host: its clock is this host's, so the offset is zero (not a ms-rounded measure)."""
    if engine.dialect.name == "sqlite":
        return timedelta(0)
    with _guard:
        found = _offsets.setdefault(engine, _Offset())
    stale = found.measured_at is None or time.monotonic() - found.measured_at > REFRESH
    if stale:
        try:
            return measure(engine)
        except SQLAlchemyError:
            with found.lock:  # tried: not again before REFRESH; the last offset stays in use
                found.measured_at = time.monotonic()
    return found.value


def now(engine: Engine) -> datetime:
    """UTC now on the database's clock (naive, as stored)."""
    return datetime.now(UTC).replace(tzinfo=None) + offset(engine)
