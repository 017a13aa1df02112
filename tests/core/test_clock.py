from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from hub.core import clock


def test_the_clock_reads_the_database_and_keeps_its_offset(engine: Engine) -> None:
    before = clock.database_time(engine)
    offset = clock.measure(engine)
    now = clock.now(engine)
    after = clock.database_time(engine)

    here = datetime.now(UTC).replace(tzinfo=None)
    figures = f"database {before} .. {after}, clock.now {now}, offset {offset}, host {here}"
    assert before.tzinfo is None and now.tzinfo is None, figures
    # the corrected time lies between two readings of the database's clock (1 ms of rounding)
    assert before - timedelta(milliseconds=1) <= now <= after + timedelta(milliseconds=1), figures
    if engine.dialect.name == "sqlite":  # a file on this host: the host's clock, no offset
        assert clock.offset(engine) == timedelta(0), figures
    else:
        assert clock.offset(engine) == offset, figures  # kept, not measured within REFRESH
