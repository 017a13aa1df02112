"""Jobs in Redis are JSON; this converts the ones an older hub pickled.

Before JSON (`hub.core.queues.SERIALIZER`), RQ pickled each job's `(function, instance, args,
kwargs)` tuple. `convert_pickled_jobs(redis)` rewrites every such job that is still in Redis as
JSON, so an upgrade loses no queued work. It reads the pickles with an unpickler that builds
only plain data (str, int, float, bool, None, list, tuple, dict) and refuses any class or
function: a pickle that names one (which is how pickles run code) is left unconverted, logged,
and then fails as a job would, without running anything. The database still holds the work of
such a job; the sweeper enqueues it again.

Workers run the conversion when they start (`hub worker`), before they take a job.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zlib
from typing import Any

from redis import Redis

log = logging.getLogger("hub.core.jobformat")

JOB_KEYS = "rq:job:*"
PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


class _PlainUnpickler(pickle.Unpickler):
    """Plain data only: any global (class, function) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _plain(data: bytes) -> Any:
    value = _PlainUnpickler(io.BytesIO(data)).load()
    if not _is_plain(value):
        raise pickle.UnpicklingError("not plain data")
    return value


def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def convert_pickled_jobs(redis: Redis) -> tuple[int, int]:
    """Rewrite pickled jobs as JSON; returns (converted, refused)."""
    converted = refused = 0
    for key in redis.scan_iter(match=JOB_KEYS, count=500):
        if not isinstance(key, bytes) or key.count(b":") != 2:
            continue  # rq:job:<id> only, not rq:job:<id>:dependents and the like
        raw = redis.hget(key, "data")
        if not isinstance(raw, bytes):
            continue
        try:
            data = zlib.decompress(raw)
        except zlib.error:
            data = raw
        if _is_json(data):
            continue
        try:
            func, instance, args, kwargs = _plain(data)
            payload = json.dumps([func, instance, list(args), kwargs]).encode()
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
            refused += 1
            log.warning("jobs.not_converted", extra={"job_id": key.decode(), "reason": str(exc)})
            continue
        updates: dict[str, bytes] = {"data": zlib.compress(payload)}
        meta = redis.hget(key, "meta")
        if isinstance(meta, bytes) and meta and not _is_json(meta):
            try:
                updates["meta"] = json.dumps(_plain(meta)).encode()
            except (pickle.UnpicklingError, ValueError, TypeError, EOFError):
                updates["meta"] = b"{}"
        redis.hset(key, mapping=updates)  # type: ignore[arg-type]
        converted += 1
    if converted or refused:
        log.info("jobs.converted", extra={"count": converted, "refused": refused})
    return converted, refused
