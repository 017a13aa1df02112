from __future__ import annotations

import socket

import pytest
from redis import Redis

from hub.core.errors import RedisUnavailable
from hub.core.queues import DELIVER, PROCESS_EVENTS, QueueName, enqueue_ids, get_queue


def test_ids_are_enqueued_in_batches_on_the_named_queue(redis: Redis) -> None:
    ids = [f"evt_{i}" for i in range(120)]
    job_ids = enqueue_ids(redis, PROCESS_EVENTS, QueueName.HIGH, ids, batch_size=50)
    queue = get_queue(redis, "high")
    assert queue.count == 3 == len(job_ids)
    batches = [job.args[0] for job in queue.jobs]
    assert [len(b) for b in batches] == [50, 50, 20]
    assert sum(batches, []) == ids
    assert {job.func_name for job in queue.jobs} == {PROCESS_EVENTS}


def test_nothing_to_enqueue_makes_no_job(redis: Redis) -> None:
    assert enqueue_ids(redis, DELIVER, "default", []) == []
    assert get_queue(redis, "default").count == 0


def test_redis_down_raises_redis_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Redis(port=port, socket_connect_timeout=0.5)
    with pytest.raises(RedisUnavailable):
        enqueue_ids(down, DELIVER, "default", ["dlv_1"])
