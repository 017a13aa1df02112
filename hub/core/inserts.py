"""Multi-row inserts on the hot paths: events (web), deliveries (routing), attempts (outcomes).

`insert_rows(conn, table, rows)` sends one INSERT for all `rows`. On MySQL and MariaDB the
values are written into the statement as literals: each goes through its column's bind
processor (what SQLAlchemy would do with it: an enum to its value) and is then rendered by its
type: a string as its UTF-8 in hex with a charset introducer (`_utf8mb4 X'..'`: nothing is
escaped, so neither the server's NO_BACKSLASH_ESCAPES mode nor any character can change what
the statement means), bytes as a hex literal, numbers as numbers, a naive datetime in ISO
format. Core's `executemany` sends the same multi-row statement, but SQLAlchemy's parameter
processing and PyMySQL's encoders (a dispatch and an escape per value, then a regex rewrite of
the statement) cost twice the CPU: half of a web group commit's, in the thread that competes
with the event loop for the GIL, and a fifth of a routing job's. SQLite and PostgreSQL get
Core's executemany.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, ignore: bool = False
) -> int:
    """Insert `rows` (dicts with the same keys) in one statement; the number of rows inserted.

    `ignore`: rows that would break a unique key are skipped, not an error (MySQL `INSERT
    IGNORE`, SQLite and PostgreSQL `ON CONFLICT DO NOTHING`).
    """
    if not rows:
        return 0
    dialect = conn.dialect
    if dialect.name in ("mysql", "mariadb"):
        statement = literal_insert(dialect, table, rows, ignore=ignore)
        # no parameters: the driver must not read a `%` in a value as a placeholder
        result = conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
        return int(result.rowcount)
    stmt: Any = insert(table)
    if ignore:
        if dialect.name == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect.name == "postgresql":
            stmt = postgresql_insert(table).on_conflict_do_nothing()
    return int(conn.execute(stmt, list(rows)).rowcount)


def literal_insert(
    dialect: Dialect, table: Table, rows: Sequence[dict[str, Any]], *, ignore: bool = False
) -> str:
    """The INSERT of `rows` with every value written as a literal (MySQL and MariaDB)."""
    keys = tuple(rows[0])
    columns = _columns(table, keys, dialect)
    values = ",".join(
        "(" + ",".join([literal(row[k] if p is None else p(row[k])) for k, _, p in columns]) + ")"
        for row in rows
    )
    quote = dialect.identifier_preparer.quote  # only where needed, as Core would
    names = ", ".join(quote(name) for _, name, _ in columns)
    verb = "INSERT IGNORE" if ignore else "INSERT"
    return f"{verb} INTO {quote(table.name)} ({names}) VALUES {values}"


@functools.lru_cache(maxsize=64)
def _columns(
    table: Table, keys: tuple[str, ...], dialect: Dialect
) -> list[tuple[str, str, Processor]]:
    """Each key with its column's name and bind processor for `dialect` (None: as it is)."""
    found: list[tuple[str, str, Processor]] = []
    for key in keys:
        column = table.c[key]  # KeyError: not a column of the table, as Core would refuse
        processor = column.type.dialect_impl(dialect).bind_processor(dialect)
        found.append((key, column.name, processor))
    return found


def literal(value: Any) -> str:
    """`value` as a MySQL literal, as `literal_insert` writes it (strings and bytes in hex)."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:  # its UTF-8 in hex: nothing to escape, whatever the server's sql_mode
        return f"_utf8mb4 X'{value.encode().hex()}'"
    if kind is int:
        return str(value)
    if kind is bytes:
        return f"X'{value.hex()}'"
    if kind is datetime and value.tzinfo is None:
        return f"'{value.isoformat(' ')}'"
    return _render_other(value)


def _render_other(value: Any) -> str:
    """The rarer kinds, and subclasses (an enum member, a bool)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be stored")
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return literal(str.__str__(value))
    if isinstance(value, bytearray | memoryview):
        return literal(bytes(value))
    if isinstance(value, datetime):  # an aware one: its wall time, as PyMySQL writes it
        return literal(value.replace(tzinfo=None))
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    raise TypeError(f"no SQL literal for a {type(value).__name__} value")
