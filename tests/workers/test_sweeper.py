"""The sweeper: every task guarded, one leader among any number, a takeover within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import update

from hub.core.leader import LEADER_TTL, LeaderLock
from hub.core.models import DeliveryStatus, WebhookDelivery, utcnow
from hub.core.outages import BACKOFF_CAP
from hub.core.queues import SWEEPER_FENCE_KEY, SWEEPER_LEADER_KEY
from hub.core.settings import Settings
from tests.delivery.conftest import World
from tests.delivery.test_jobs import delivery
from tests.faults import database_proxy
from tests.hub_processes import HubProcesses
from tests.workers.test_worker import messages, wait_for
from workers.context import WorkerContext
from workers.sweeper import SweepContext, Sweeper


class Flaky:
    """A sweep task that raises for its first `failures` rounds, then works."""

    __name__ = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, _ctx: SweepContext) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("the database went away")  # not a HubError
        return 1


class Overlap:
    """A sweep task that records how many sweepers ran it at the same time, at most."""

    __name__ = "overlap"

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.runs: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, _ctx: SweepContext) -> int:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.runs.append(threading.current_thread().name)
        time.sleep(0.02)
        with self._lock:
            self.running -= 1
        return 0


def test_a_task_that_raises_anything_is_logged_once_and_runs_again_next_round(
    sweep: SweepContext, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(failures=4)
    sweeper = Sweeper(sweep, tasks=[flaky], interval=0.01)
    with caplog.at_level("WARNING", logger="workers.sweeper"):
        for _ in range(6):
            sweeper.round()
    said = [r.getMessage() for r in caplog.records if r.name == "workers.sweeper"]
    assert flaky.calls == 6, f"the task ran every round: {flaky.calls} of 6"
    assert said == ["sweeper.task_flaky_down", "sweeper.task_flaky_back"], said


def test_of_three_sweepers_one_works_and_another_takes_over_when_it_stops(
    sweep: SweepContext,
) -> None:
    task = Overlap()
    sweepers = [Sweeper(sweep, tasks=[task, task], interval=0.01) for _ in range(3)]
    threads = [
        threading.Thread(target=s.run, name=f"sweeper-{i}", daemon=True)
        for i, s in enumerate(sweepers)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(task.runs) >= 40, 20, "40 task runs")
    leaders = [s for s in sweepers if s.lock.held()]
    assert len(leaders) == 1, f"{len(leaders)} sweepers hold the lock"
    first = leaders[0]
    assert set(task.runs) == {threads[sweepers.index(first)].name}, set(task.runs)
    fence = first.lock.fence

    first.stop.set()  # a clean stop releases the lock: the next takes over at once
    threads[sweepers.index(first)].join(10)
    runs = len(task.runs)
    took = wait_for(lambda: len(task.runs) >= runs + 20, 10, "a second leader")
    for s in sweepers:
        s.stop.set()
    for thread in threads:
        thread.join(10)
    assert task.most == 1, f"{task.most} sweepers ran a task at the same time"
    second = {name for name in task.runs[runs:]}
    assert len(second) == 1 and threads[sweepers.index(first)].name not in second, second
    assert sum(s.lock.fence is not None for s in sweepers) == 0, "every lock released on stop"
    assert int(sweep.redis.get(SWEEPER_FENCE_KEY) or 0) > (fence or 0), (
        f"a new leader gets a new fence (took {took:.2f}s)"
    )


def test_a_stale_leader_can_neither_renew_nor_release_its_successors_lock(redis: Redis) -> None:
    old = LeaderLock(redis, SWEEPER_LEADER_KEY, SWEEPER_FENCE_KEY, ttl=0.3)
    assert old.acquire()
    old._stop.set()  # paused: it stops renewing
    time.sleep(0.5)
    new = LeaderLock(redis, SWEEPER_LEADER_KEY, SWEEPER_FENCE_KEY, ttl=5)
    assert new.acquire(), "the expired lock is free"
    assert not old.renew(), "the old leader learns it lost the lock"
    assert not old.held()
    old.fence = 1  # even holding an old fence, it cannot delete the new value
    old.release()
    assert redis.get(SWEEPER_LEADER_KEY) == new.value.encode()
    assert new.fence is not None and new.fence > 1
    new.release()
    assert redis.get(SWEEPER_LEADER_KEY) is None


@pytest.fixture
def start_sweeper(settings: Settings, tmp_path: Path) -> Iterator[object]:
    processes = HubProcesses(settings, tmp_path)

    def start(database_url: str | None = None) -> subprocess.Popen[bytes]:
        return processes.start(
            "sweeper", "--interval", "0.2", database_url=database_url, HUB_LOG_FORMAT="json"
        )

    yield start
    processes.close()


def _leader_pid(redis: Redis) -> int | None:
    value = redis.get(SWEEPER_LEADER_KEY)
    return int(value.decode().split(":")[1]) if value else None


def test_when_the_leading_sweeper_is_killed_another_takes_over_within_seconds(
    redis: Redis, start_sweeper: object
) -> None:
    one = start_sweeper()  # type: ignore[operator]
    two = start_sweeper()  # type: ignore[operator]
    wait_for(lambda: _leader_pid(redis) in (one.pid, two.pid), 20, "a leader")
    leader, other = (one, two) if _leader_pid(redis) == one.pid else (two, one)
    time.sleep(1.0)
    assert _leader_pid(redis) == leader.pid, "the leader keeps its lock"
    os.kill(leader.pid, signal.SIGKILL)
    took = wait_for(lambda: _leader_pid(redis) == other.pid, LEADER_TTL + 5, "a takeover")
    assert took <= LEADER_TTL + 1.5, f"took over {took:.1f}s after the leader's death"
    assert other.poll() is None
    other.send_signal(signal.SIGTERM)
    assert other.wait(15) == 0
    assert redis.get(SWEEPER_LEADER_KEY) is None, "a clean stop releases the lock"


def test_a_database_cut_does_not_stop_the_sweeper_and_its_work_resumes(
    settings: Settings,
    ctx: WorkerContext,
    world: World,
    start_sweeper: object,
) -> None:
    if not settings.effective_database_url.startswith("mysql"):
        pytest.skip("SQLite is a file: there is no connection to cut")
    with database_proxy(settings.effective_database_url) as proxy:
        sweeper = start_sweeper(proxy.url_for(settings.effective_database_url))  # type: ignore[operator]
        world.endpoint("crm", kind="webhook", url="http://127.0.0.1:9/", timeout="1s")
        wait_for(lambda: _leader_pid(ctx.redis) == sweeper.pid, 20, "the sweeper leads")
        proxy.cut()
        time.sleep(3.0)
        assert sweeper.poll() is None, f"the sweeper exited ({sweeper.returncode}) in the cut"
        # a worker died mid-send during the cut: its lease expires
        dlv = world.delivery("crm", {"name": "Ana"})
        with ctx.engine.begin() as conn:
            conn.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == dlv)
                .values(status=DeliveryStatus.DELIVERING, lease_expires_at=utcnow())
            )
        proxy.restore()
        took = wait_for(
            lambda: delivery(ctx, dlv).status != DeliveryStatus.DELIVERING, 20, "lease expiry"
        )
        assert sweeper.poll() is None
        # a round can straddle the restore (its first task failing still): that task is tried
        # again after its backoff, at most BACKOFF_CAP later, and only then logs it is back
        time.sleep(BACKOFF_CAP + 1.0)
        sweeper.send_signal(signal.SIGTERM)
        assert sweeper.wait(15) == 0
    assert sweeper.stderr is not None
    said = messages(sweeper.stderr.read())
    downs = [m for m in said if m.endswith("_down")]
    backs = [m for m in said if m.endswith("_back")]
    assert downs and sorted(downs) == sorted(set(downs)), f"once per task: {said}"
    assert len(backs) == len(downs), f"each failing task logged back once ({took:.1f}s): {said}"
