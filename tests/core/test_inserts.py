"""A multi-row insert stores every value exactly as given, whatever its characters or bytes, on
PyMySQL (values written as literals) as on the other drivers (Core's executemany); `ignore`
skips rows that break a unique key and counts only the rows stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from hub.core.inserts import insert_rows, literal_insert
from hub.core.models import EventStatus, Timestamp, status_type

AWKWARD = [
    "it's",
    'say "hi"',
    "back\\slash \\' \\\\",
    "line\nbreak\r\ttab",
    "nul\x00byte",
    "%s %(name)s {} ?",
    "'); DROP TABLE insert_probe; --",
    "São Paulo — ação",
    "emoji 🎉👍🏽",
    "",
    "\x1a ctrl-z",
]


@pytest.fixture
def probe(engine: Engine) -> Iterator[Table]:
    table = Table(
        "insert_probe",
        MetaData(),
        Column("id", String(32), primary_key=True),
        Column("label", Text().with_variant(Text(collation="utf8mb4_bin"), "mysql", "mariadb")),
        Column("blob", LargeBinary),
        Column("at", Timestamp),
        Column("n", Integer),
        Column("status", status_type(EventStatus)),
        Column("flag", Boolean),
        Column("ratio", Float),
    )
    table.drop(engine, checkfirst=True)
    table.create(engine)
    yield table
    table.drop(engine)


def _row(ident: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": ident, "label": None, "blob": None, "at": None, "n": None, "status": None,
        "flag": None, "ratio": None,
    }  # fmt: skip
    row.update(values)
    return row


def test_every_value_comes_back_exactly_as_written(engine: Engine, probe: Table) -> None:
    rows = [_row(f"s{i}", label=value) for i, value in enumerate(AWKWARD)]
    rows += [
        _row("bytes", blob=bytes(range(256)) * 3),
        _row("empty", blob=b""),
        _row("micro", at=dt.datetime(2026, 12, 2, 1, 2, 3, 456789)),
        _row("whole", at=dt.datetime(2026, 12, 2, 1, 2, 3)),
        _row("numbers", n=-2_147_483_648, ratio=0.1, flag=True),
        _row("falsy", n=0, ratio=0.0, flag=False),
        _row("enum", status=EventStatus.NO_ROUTE),
        _row("nulls"),
    ]
    with engine.begin() as conn:
        assert insert_rows(conn, probe, rows) == len(rows)
    with engine.connect() as conn:
        stored = {r.id: r._asdict() for r in conn.execute(select(probe))}
    assert stored == {row["id"]: {**row, "status": row["status"]} for row in rows}
    assert stored["enum"]["status"] == EventStatus.NO_ROUTE


def test_ignore_skips_rows_that_break_a_unique_key_and_counts_the_rest(
    engine: Engine, probe: Table
) -> None:
    with engine.begin() as conn:
        insert_rows(conn, probe, [_row("a", label="first")])
    with engine.begin() as conn:
        inserted = insert_rows(
            conn, probe, [_row("a", label="second"), _row("b", label="new")], ignore=True
        )
    assert inserted == 1
    with engine.connect() as conn:
        assert dict(conn.execute(select(probe.c.id, probe.c.label)).all()) == {
            "a": "first",
            "b": "new",
        }


def test_without_ignore_a_duplicate_fails_the_whole_statement(engine: Engine, probe: Table) -> None:
    with engine.begin() as conn:
        insert_rows(conn, probe, [_row("a")])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_rows(conn, probe, [_row("c"), _row("a")])
    with engine.connect() as conn:
        assert conn.execute(select(probe.c.id)).scalars().all() == ["a"]


def test_nothing_to_insert_sends_nothing(engine: Engine, probe: Table) -> None:
    with engine.begin() as conn:
        assert insert_rows(conn, probe, []) == 0


def test_on_mysql_strings_and_bytes_are_hex_literals_and_nothing_is_escaped(
    engine: Engine, probe: Table, database_url: str
) -> None:
    if not database_url.startswith("mysql"):
        pytest.skip("the literal insert is MySQL's: needs HUB_TEST_DATABASE_URL=mysql://...")
    row = _row("x", label="it's", blob=b"\x00\xff", at=dt.datetime(2026, 1, 2, 3, 4, 5, 6), n=7)
    row["status"] = EventStatus.QUEUED
    with engine.connect() as conn:
        statement = literal_insert(conn.dialect, probe, [row], ignore=True)
    assert statement == (
        "INSERT IGNORE INTO insert_probe (id, label, `blob`, at, n, status, flag, ratio) VALUES "
        "(_utf8mb4 X'78',_utf8mb4 X'69742773',X'00ff','2026-01-02 03:04:05.000006',7,"
        "_utf8mb4 X'717565756564',NULL,NULL)"
    )


def test_a_value_with_no_sql_literal_is_refused_and_nothing_is_stored(
    engine: Engine, probe: Table, database_url: str
) -> None:
    if not database_url.startswith("mysql"):
        pytest.skip("the literal insert is MySQL's: needs HUB_TEST_DATABASE_URL=mysql://...")
    with pytest.raises(ValueError, match="nan"), engine.begin() as conn:
        insert_rows(conn, probe, [_row("x"), _row("y", ratio=float("nan"))])
    with pytest.raises(TypeError, match="no SQL literal for a object"), engine.begin() as conn:
        insert_rows(conn, probe, [_row("z", label=object())])
    with engine.connect() as conn:
        assert conn.execute(select(probe.c.id)).all() == []


def test_strings_follow_the_servers_no_backslash_escapes_mode(
    engine: Engine, probe: Table, database_url: str
) -> None:
    if not database_url.startswith("mysql"):
        pytest.skip("a MySQL sql_mode: needs HUB_TEST_DATABASE_URL=mysql://...")
    rows = [_row(f"s{i}", label=value) for i, value in enumerate(AWKWARD)]
    with engine.begin() as conn:
        conn.execute(text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"))
        try:
            insert_rows(conn, probe, rows)
        finally:
            restore = "SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')"
            conn.execute(text(restore))
    with engine.connect() as conn:
        stored = dict(conn.execute(select(probe.c.id, probe.c.label)).all())
    assert stored == {row["id"]: row["label"] for row in rows}
