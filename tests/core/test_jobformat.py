"""Jobs are JSON in Redis; jobs an older hub pickled are converted, and a pickle that names a
class or function is never loaded."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import DefaultSerializer

from hub.core.jobformat import convert_pickled_jobs
from hub.core.queues import DELIVER, SERIALIZER, enqueue_ids, get_queue


def test_enqueued_jobs_are_stored_as_json(redis: Redis) -> None:
    [job_id] = enqueue_ids(redis, DELIVER, "default", ["dlv_1", "dlv_2"])
    raw = redis.hget(f"rq:job:{job_id}", "data")
    assert isinstance(raw, bytes)
    assert json.loads(zlib.decompress(raw)) == [DELIVER, None, [["dlv_1", "dlv_2"]], {}]
    [job] = get_queue(redis, "default").jobs
    assert job.func_name == DELIVER and job.args == [["dlv_1", "dlv_2"]]


def test_a_job_pickled_by_an_older_hub_is_converted_and_keeps_its_ids(redis: Redis) -> None:
    old = Queue("default", connection=redis, serializer=DefaultSerializer)
    pickled = old.enqueue(DELIVER, ["dlv_9"], result_ttl=0)
    assert convert_pickled_jobs(redis) == (1, 0)
    job = Job.fetch(pickled.id, connection=redis, serializer=SERIALIZER)
    assert (job.func_name, job.args) == (DELIVER, [["dlv_9"]])
    assert get_queue(redis, "default").job_ids == [pickled.id]  # still queued, same place
    assert convert_pickled_jobs(redis) == (0, 0)  # JSON jobs are left alone


class _Payload:
    """What an attacker would write: a pickle that runs a command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_names_a_function_is_refused_and_never_run(
    redis: Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    old = Queue("default", connection=redis, serializer=DefaultSerializer)
    hostile = old.enqueue(DELIVER, _Payload(marker), result_ttl=0)
    before = redis.hget(f"rq:job:{hostile.id}", "data")

    assert convert_pickled_jobs(redis) == (0, 1)
    assert not marker.exists(), "the pickle was loaded: its command ran"
    assert redis.hget(f"rq:job:{hostile.id}", "data") == before  # left as it was
