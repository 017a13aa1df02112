"""`hub worker` outlives Redis: cut with a job in hand, it finishes the job, waits, carries on."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from hub.core.models import DeliveryStatus
from hub.core.queues import DELIVER, enqueue_ids
from hub.core.settings import Settings
from tests.delivery.conftest import Reply, TargetServer, World
from tests.delivery.test_jobs import delivery
from tests.faults import TcpProxy, redis_proxy
from tests.hub_processes import HubProcesses
from workers.context import WorkerContext

CUT_SECONDS = 3.0

StartWorker = Callable[..., subprocess.Popen[bytes]]


def log_lines(stderr: bytes) -> list[dict[str, object]]:
    lines = []
    for raw in stderr.splitlines():
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            lines.append({"msg": raw.decode(errors="replace")})
    return lines


def messages(stderr: bytes) -> list[str]:
    return [str(line.get("msg")) for line in log_lines(stderr)]


@pytest.fixture
def proxy(settings: Settings) -> Iterator[TcpProxy]:
    assert settings.redis_url is not None
    with redis_proxy(settings.redis_url) as p:
        yield p


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[StartWorker]:
    processes = HubProcesses(settings, tmp_path)

    def start(*queues: str, redis_url: str | None = None, database_url: str | None = None):
        return processes.start(
            "worker", *queues, redis_url=redis_url, database_url=database_url,
            HUB_LOG_FORMAT="json",
        )  # fmt: skip

    yield start
    processes.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_redis_cut_with_a_job_in_hand_neither_stops_the_worker_nor_loses_the_job(
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    proxy: TcpProxy,
    start_worker: StartWorker,
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="5s")
    target.replies(Reply(delay=1.5))  # the job is in hand when Redis goes
    first = world.delivery("crm", {"name": "Ana"})
    enqueue_ids(ctx.redis, DELIVER, "default", [first])
    worker = start_worker("default", redis_url=proxy.url_for(ctx.settings.redis_url or ""))

    assert target.arrived.wait(30), "the worker never sent"
    proxy.cut()
    # the job writes its outcome to the database, which is still there
    wait_for(lambda: delivery(ctx, first).status == DeliveryStatus.DELIVERED, 15, "first")
    time.sleep(CUT_SECONDS)
    assert worker.poll() is None, f"the worker exited ({worker.returncode}) during a Redis cut"
    proxy.restore()

    second = world.delivery("crm", {"name": "Bia"})
    enqueue_ids(ctx.redis, DELIVER, "default", [second])
    took = wait_for(
        lambda: delivery(ctx, second).status == DeliveryStatus.DELIVERED, 30, "after the cut"
    )
    assert worker.poll() is None, "the worker exited after Redis came back"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0, "SIGTERM after an outage ends the worker cleanly"
    assert worker.stderr is not None
    said = messages(worker.stderr.read())
    assert said.count("worker.redis_down") == 1, f"one line per state change: {said}"
    assert said.count("worker.redis_back") == 1, f"one line per state change: {said}"
    assert not any("could not connect" in m for m in said), said
    assert [s.headers["webhook-id"] for s in target.seen] == [first, second], (
        f"each delivery sent once; the second {took:.1f}s after a {CUT_SECONDS:.0f}s cut"
    )


def test_a_worker_started_while_redis_is_away_waits_for_it(
    ctx: WorkerContext,
    world: World,
    target: TargetServer,
    proxy: TcpProxy,
    start_worker: StartWorker,
) -> None:
    world.endpoint("crm", kind="webhook", url=target.url, timeout="5s")
    proxy.cut()
    worker = start_worker("default", redis_url=proxy.url_for(ctx.settings.redis_url or ""))
    time.sleep(CUT_SECONDS)
    assert worker.poll() is None, f"the worker exited ({worker.returncode}): Redis was away"
    proxy.restore()
    dlv = world.delivery("crm", {"name": "Ana"})
    enqueue_ids(ctx.redis, DELIVER, "default", [dlv])
    took = wait_for(lambda: delivery(ctx, dlv).status == DeliveryStatus.DELIVERED, 30, "delivery")
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert worker.stderr is not None
    said = messages(worker.stderr.read())
    assert said.count("worker.redis_down") == 1, said
    assert said.count("worker.redis_back") == 1, f"delivered {took:.1f}s after restore: {said}"
