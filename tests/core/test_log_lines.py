"""Structured logs: one JSON object per line, only the allowed fields, a UTC millisecond stamp."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
import pytest

from hub.core.logs import JsonFormatter, TextFormatter


def record(created: float, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("hub.test", logging.INFO, __file__, 1, "event.%s", ("stored",), None)
    rec.created = created
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    "created", [1764645123.0, 1764645123.4567, 1764645123.9999, 1764645124.0005, 0.25]
)
def test_the_stamp_is_utc_to_the_millisecond_as_isoformat_writes_it(created: float) -> None:
    formatter = JsonFormatter()
    formatter.format(record(created - 1))  # a stamp of the second before, remembered
    line = orjson.loads(formatter.format(record(created)))
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert line["ts"] == expected


def test_only_allowed_fields_are_written() -> None:
    line = orjson.loads(
        JsonFormatter().format(record(1.0, event_id="evt_1", payload={"cpf": "x"}, count=3))
    )
    assert line == {
        "ts": "1970-01-01T00:00:01.000+00:00",
        "level": "info",
        "logger": "hub.test",
        "msg": "event.stored",
        "event_id": "evt_1",
        "count": 3,
    }
    text = TextFormatter().format(record(1.0, event_id="evt_1", payload={"cpf": "x"}))
    assert text == "info    hub.test: event.stored event_id=evt_1"
