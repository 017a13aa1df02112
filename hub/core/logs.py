"""Structured logs: one JSON object per line on stderr.

Call sites log a message and ids only (`log.info("event.stored", extra={"event_id": ...})`);
payload contents, secrets, phone numbers, e-mails and CPF never go to a log (LGPD). Only the
fields in `ALLOWED_FIELDS` are copied from `extra`, so an accidental `extra={"payload": ...}`
is dropped rather than written.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

ALLOWED_FIELDS = frozenset(
    {
        "event_id",
        "event_ids",  # a batch's new events (ingress logs one line per stored batch)
        "delivery_id",
        "dead_letter_id",
        "tenant",
        "tenant_id",
        "source",
        "endpoint",
        "rule",
        "route",
        "queue",
        "status",
        "from_status",
        "outcome",
        "attempt",
        "status_code",
        "duration_ms",
        "delay_s",
        "error_class",
        "correlation_id",
        "correlation_ids",
        "request_id",
        "count",
        "pid",
        "version",
        "url",
        "reason",
        "service",  # hub.core.outages: which service went down or came back
        "down_s",
        "fence",  # the sweeper leader's fencing token
    }
)


_FIELD_ORDER = tuple(sorted(ALLOWED_FIELDS))


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1  # the second `_prefix` spells (a worker logs hundreds of lines in one)
        self._prefix = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # format() runs under the handler's lock: one at a time
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        millis = int((record.created - second) * 1000)
        out: dict[str, Any] = {
            "ts": f"{self._prefix}.{millis:03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for key in _FIELD_ORDER:
            value = fields.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{k}={record.__dict__[k]}"
            for k in sorted(ALLOWED_FIELDS)
            if record.__dict__.get(k) is not None
        )
        return (
            f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {fields}".rstrip()
        )


def configure(log_format: str = "json", level: str = "INFO") -> None:
    """Send hub's logs to stderr in the chosen format (idempotent)."""
    # what neither formatter writes is not gathered for each record either: the caller's file
    # and line (a walk up the stack), thread, process (see "Optimization" in the logging HOWTO)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("hub")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name, floor in (("workers", logging.NOTSET), ("rq", logging.WARNING)):
        other = logging.getLogger(name)
        other.handlers[:] = [handler]
        other.setLevel(max(logging.getLevelName(level.upper()), floor))
        other.propagate = False
