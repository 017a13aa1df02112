"""What RQ's jobs carry, read by one long-lived InFlight as the sweeper reads it: jobs that come
and go between reads, started jobs whose worker lives or died, failed jobs that will or will not
run again. The detection these reads feed is tested in tests/ingress/test_relay.py and
tests/delivery/test_sweeps.py."""

from __future__ import annotations

import time

from redis import Redis
from rq.job import Job

from hub.core.inflight import InFlight, carried
from hub.core.queues import (
    DELIVER,
    PROCESS_EVENTS,
    REQUEUE_FAILED_MAX,
    WORKER_PULSE_PREFIX,
    enqueue_ids,
    get_queue,
)


def _start(redis: Redis, job_id: str, worker: str) -> None:
    """What a worker does when it takes a job: off the queue, into the started registry."""
    queue = get_queue(redis, "default")
    redis.lrem(queue.key, 0, job_id)
    redis.zadd(queue.started_job_registry.key, {f"{job_id}:execution-1": time.time() + 600})
    redis.hset(Job.key_for(job_id), "worker_name", worker)


def test_jobs_enqueued_and_gone_between_reads_are_seen_at_the_next_read(redis: Redis) -> None:
    inflight = InFlight(reuse=0.0)
    [first] = enqueue_ids(redis, PROCESS_EVENTS, "default", ["evt_1", "evt_2"])
    assert inflight.carried(redis).waiting == {"evt_1", "evt_2"}

    enqueue_ids(redis, DELIVER, "retry", ["dlv_1"])
    redis.lrem(get_queue(redis, "default").key, 0, first)  # lost: a flush, a crash
    seen = inflight.carried(redis)
    assert (seen.waiting, seen.running) == ({"dlv_1"}, set()), seen
    assert seen == carried(redis), "the incremental read differs from a full one"


def test_a_started_job_counts_while_its_workers_pulse_lives(redis: Redis) -> None:
    inflight = InFlight(reuse=0.0)
    [job_id] = enqueue_ids(redis, DELIVER, "default", ["dlv_1"])
    inflight.carried(redis)  # the job's ids are read here, while it waits
    _start(redis, job_id, "w1")
    redis.set(WORKER_PULSE_PREFIX + "w1", "1")
    seen = inflight.carried(redis)
    assert (seen.waiting, seen.running) == (set(), {"dlv_1"}), seen

    redis.delete(WORKER_PULSE_PREFIX + "w1")  # the worker was killed: its pulse expired
    seen = inflight.carried(redis)
    assert "dlv_1" not in seen, f"a dead worker's job still counts: {seen}"


def test_a_job_a_worker_took_off_its_queue_but_never_started_counts_for_nothing(
    redis: Redis,
) -> None:
    """A single-queue worker moves a job to RQ's intermediate list, then (milliseconds later)
    into the started registry; killed in between, it leaves the job on that list alone. Seen
    there, it carries nothing (the sweeper enqueues its ids again once that lasts 2 s)."""
    inflight = InFlight(reuse=0.0)
    queue = get_queue(redis, "retry")
    [stranded, started] = [enqueue_ids(redis, DELIVER, "retry", [i])[0] for i in ("d1", "d2")]
    assert inflight.carried(redis).waiting == {"d1", "d2"}
    for _ in (stranded, started):  # what a worker's BLMOVE does, one job at a time
        redis.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    redis.zadd(queue.started_job_registry.key, {f"{started}:execution-1": time.time() + 600})
    redis.hset(Job.key_for(started), "worker_name", "w1")
    redis.set(WORKER_PULSE_PREFIX + "w1", "1")

    seen = inflight.carried(redis)
    assert (seen.waiting, seen.running) == (set(), {"d2"}), seen
    assert seen == carried(redis), "the incremental read differs from a full one"


def test_a_failed_job_counts_while_the_sweeper_will_enqueue_it_again(redis: Redis) -> None:
    inflight = InFlight(reuse=0.0)
    queue = get_queue(redis, "default")
    [again, spent] = [
        enqueue_ids(redis, DELIVER, "default", [ids])[0] for ids in ("dlv_again", "dlv_spent")
    ]
    for job_id, requeues in ((again, 0), (spent, REQUEUE_FAILED_MAX)):
        job = queue.fetch_job(job_id)
        assert job is not None
        job.meta["hub_requeues"] = requeues
        job.save_meta()
        redis.lrem(queue.key, 0, job_id)
        queue.failed_job_registry.add(job)
    seen = inflight.carried(redis)
    assert (seen.waiting, seen.running) == ({"dlv_again"}, set()), seen


def test_the_tasks_of_one_round_share_one_read(redis: Redis) -> None:
    inflight = InFlight(reuse=0.3)
    first = inflight.carried(redis)
    enqueue_ids(redis, DELIVER, "default", ["dlv_1"])
    assert inflight.carried(redis) is first
    time.sleep(0.35)
    assert inflight.carried(redis).waiting == {"dlv_1"}
