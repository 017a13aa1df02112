"""Fixtures for the operations tests: worker context, rows, a loopback target, privileged keys.

The target server and the row builder are the delivery tests' own (`tests.delivery.conftest`);
here they are wired as fixtures for this directory, with keys of every kind and a web client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from redis import Redis
from starlette.testclient import TestClient

from hub.app import create_app
from hub.core.db import session_factory
from hub.core.models import KeyKind
from hub.core.queues import PRIORITY, get_queue
from hub.core.settings import Settings
from hub.delivery.jobs import deliver_batch
from hub.ingress.apikeys import create_key
from tests.delivery.conftest import Reply, TargetServer, World
from workers import context
from workers.context import WorkerContext
from workers.sweeper import SweepContext, sweep_once
from workers.worker import HubWorker

TENANT = "clinic-1"  # the tenant World creates
OTHER = "clinic-2"


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    worker_ctx = WorkerContext.from_settings(settings)
    context.install(worker_ctx)
    yield worker_ctx
    context.install(None)
    worker_ctx.close()


@pytest.fixture
def target() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def world(ctx: WorkerContext, redis: Redis) -> World:
    return World(ctx)


@dataclass(frozen=True)
class Keys:
    operator: str
    admin: str  # clinic-1's admin key
    other_admin: str  # clinic-2's admin key
    ingest: str  # clinic-1, webhooks only


@pytest.fixture
def keys(world: World) -> Keys:
    with session_factory(world.engine).begin() as session:
        made = Keys(
            operator=create_key(
                session, name="ops", tenant_slug=None, kind=KeyKind.OPERATOR
            ).secret,
            admin=create_key(
                session, name="a", tenant_slug=TENANT, kind=KeyKind.ADMIN, create_tenant=True
            ).secret,
            other_admin=create_key(
                session, name="b", tenant_slug=OTHER, kind=KeyKind.ADMIN, create_tenant=True
            ).secret,
            ingest=create_key(session, name="i", tenant_slug=TENANT, create_tenant=True).secret,
        )
    return made


@pytest.fixture
def client(settings: Settings, ctx: WorkerContext) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def work(redis: Redis) -> None:
    """Run every queued job, as a worker would (burst)."""
    HubWorker([get_queue(redis, q) for q in PRIORITY], connection=redis).work(burst=True)


def run_until(ctx: WorkerContext, done: Callable[[], bool], timeout: float = 10) -> None:
    """Sweeper and burst worker in turns until `done()`."""
    sweep = SweepContext(ctx.settings, ctx.engine, ctx.redis)
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        sweep_once(sweep)
        work(ctx.redis)
        time.sleep(0.02)


def dead_delivery(ctx: WorkerContext, world: World, target: TargetServer, **kw: object) -> str:
    """A delivery to endpoint `crm` at `target` that failed for good (one attempt, a 500)."""
    if "crm" not in world._versions:
        world.endpoint(
            "crm",
            kind="webhook",
            url=target.url,
            retry={"max_attempts": 1},
            circuit={"failures": 50},
        )
    delivery_id = world.delivery("crm", {"name": "Ana"}, **kw)  # type: ignore[arg-type]
    target.replies(Reply(status=500))
    deliver_batch(ctx, [delivery_id])
    return delivery_id
