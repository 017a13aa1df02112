"""Multi-row inserts on the hot paths: events (web), deliveries (routing), attempts (outcomes).

`insert_rows(conn, table, rows)` sends one INSERT for all `rows`. On PyMySQL the values are
written into the statement as literals: each goes through its column's bind processor (what
SQLAlchemy would do with it: an enum to its value, ...) and is then rendered by its type, a
string quoted by the PyMySQL connection itself (its escaping, and the server's
NO_BACKSLASH_ESCAPES mode when set), bytes as a hex literal, a naive datetime in ISO format,
anything else by the driver's own `escape`. Core's `executemany` sends the same statement, but
SQLAlchemy's parameter processing and PyMySQL's encoders (a dispatch per value, then a regex
rewrite of the statement) cost twice the CPU: half of a web group commit's, in the thread that
competes with the event loop for the GIL, and a fifth of a routing job's. Other drivers
(SQLite, mysqlclient) get Core's executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
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
    if dialect.driver == "pymysql":
        statement = literal_insert(conn, table, rows, ignore=ignore)
        # no parameters: the driver must not read a `%` in a value as a placeholder
        result = conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
        return int(result.rowcount)
    stmt: Any = insert(table)
    if ignore:
        if dialect.name in ("mysql", "mariadb"):
            stmt = stmt.prefix_with("IGNORE")
        elif dialect.name == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect.name == "postgresql":
            stmt = postgresql_insert(table).on_conflict_do_nothing()
    return int(conn.execute(stmt, list(rows)).rowcount)


def literal_insert(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, ignore: bool = False
) -> str:
    """The INSERT of `rows` with every value written as a literal (PyMySQL connections only)."""
    escape = conn.connection.dbapi_connection.escape  # type: ignore[union-attr]
    keys = tuple(rows[0])
    columns = _columns(table, keys, conn.dialect)
    render = functools.partial(_render, escape)
    values = ",".join(
        "(" + ",".join([render(row[k] if p is None else p(row[k])) for k, _, p in columns]) + ")"
        for row in rows
    )
    quote = conn.dialect.identifier_preparer.quote  # only where needed, as Core would
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


def _render(escape: Callable[[Any], str], value: Any) -> str:
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:
        return escape(value)
    if kind is int:
        return str(value)
    if kind is bytes:
        return f"X'{value.hex()}'"
    if kind is datetime and value.tzinfo is None:
        return f"'{value.isoformat(' ')}'"
    return escape(value)  # bool, float, Decimal, a subclass, an aware datetime: the driver's way
