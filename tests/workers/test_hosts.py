"""Two app hosts against one MariaDB and one Redis: one dies whole, the other finishes its work.

Each host is a process group of its own, as a machine would be: `hub serve`, `hub worker` (all
queues) and `hub sweeper`, in a directory of its own with its own data directory and its own
Prometheus metrics directory, and no mappings on disk: sources, rules and endpoints reach both
from the database, applied once (`hub mappings apply`). They share only the database, Redis and
the encryption keys (HUB_SECRET_KEYS, HUB_PERSON_KEY), as real hosts must. Leads go to both
web ports; a lead whose host does not answer goes to the other, as a load balancer would. While
sends of A's are in flight, every process of host A, the sweeper leader among them, gets SIGKILL
at once (one `killpg`).

B's worker joins once the first half of the leads is posted, so that A's worker has sends in
flight then for sure: two workers on the queues settle into roles (the one blocked on Redis
takes each deliver job the other's process_events job enqueues), and with both from the start A
could be routing only. The target holds A's sends A_SEND seconds, B's 0.3 s.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from rq import Worker

from hub.core.leader import LEADER_TTL
from hub.core.metrics import MULTIPROC_ENV
from hub.core.queues import SWEEPER_LEADER_KEY
from hub.core.settings import Settings
from hub.ingress.apikeys import create_key
from hub.local.processes import free_port
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from tests.delivery.conftest import Reply, TargetServer
from tests.load import Account, LeadStream, delivering, write_mappings
from tests.workers.test_worker import wait_for
from workers.context import WorkerContext

pytestmark = pytest.mark.slow

LEADS = 300
RATE = 60.0  # leads a second, to both hosts together
KILL_AT = LEADS // 2  # leads posted when B's worker joins; A is killed right after
A_SEND = 1.0  # seconds the target holds a send of host A's (the endpoint's timeout is 2 s)
DRAIN_LIMIT = 60.0  # seconds after the kill by which every accepted lead is delivered


class AppHost:
    """One host: web, worker and sweeper in one process group, in a directory of its own."""

    def __init__(self, name: str, root: Path, env: dict[str, str]) -> None:
        self.name = name
        self.dir = root / name
        self.data = self.dir / ".hub"
        self.metrics = self.data / "metrics"
        self.metrics.mkdir(parents=True)
        self.port = free_port()
        self.env = {
            **env,
            "HUB_DATA_DIR": str(self.data),
            "HUB_MAPPINGS_DIR": str(self.dir / "mappings"),  # none: config comes applied
            MULTIPROC_ENV: str(self.metrics),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.pgid = 0  # the web's pid once started: the group every process of the host joins

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *only: str) -> AppHost:
        """Start the host's processes (`only` those roles, if named): the first is the group's."""
        roles = {
            "web": ["serve", "--port", str(self.port)],
            "worker": ["worker"],
            "sweeper": ["sweeper", "--interval", "0.2"],
        }
        for role, args in roles.items():
            if only and role not in only:
                continue
            with (self.data / f"{role}.log").open("ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "hub", *args],
                    cwd=self.dir,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    process_group=self.pgid,
                )
            self.processes[role] = proc
            self.pgid = self.pgid or proc.pid
        if "web" in self.processes:
            wait_for(self._healthy, 60, f"host {self.name}'s web to answer /health")
        return self

    def pids(self) -> set[int]:
        return {proc.pid for proc in self.processes.values()}

    def exited(self) -> dict[str, int | None]:
        return {role: p.returncode for role, p in self.processes.items() if p.poll() is not None}

    def kill(self) -> None:
        """SIGKILL to every process of the host at once, as a machine that loses power."""
        os.killpg(self.pgid, signal.SIGKILL)
        for proc in self.processes.values():
            proc.wait(10)

    def stop(self) -> dict[str, int]:
        """SIGTERM to the group; each process's exit code."""
        os.killpg(self.pgid, signal.SIGTERM)
        return {role: proc.wait(60) for role, proc in self.processes.items()}

    def close(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {self.name} {path.name}:\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted(self.data.glob("*.log"))
        )

    def metric_pids(self) -> set[int]:
        """The pids the host's metric files belong to (prometheus-client: <kind>_<pid>.db)."""
        return {
            int(m.group(1))
            for p in self.metrics.iterdir()
            if (m := re.search(r"_(\d+)\.db$", p.name))
        }

    def _healthy(self) -> bool:
        dead = self.exited()
        assert not dead, f"host {self.name}: {dead} exited at start\n{self.logs()}"
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def hosts(
    settings: Settings, ctx: WorkerContext, target: TargetServer, tmp_path: Path
) -> Iterator[tuple[AppHost, AppHost]]:
    if not settings.effective_database_url.startswith("mysql"):
        pytest.skip("two hosts need a shared server database (MariaDB lane): SQLite is a file")
    # each host reads the target's address from its environment: its sends say which host
    mappings = write_mappings(tmp_path / "mappings", target.url, url="env:CRM_URL")
    apply_mappings(ctx.engine, ctx.redis, load_mappings(mappings))  # `hub mappings apply`
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": settings.redis_url or "",
        "HUB_SECRET_KEYS": secrets.token_urlsafe(32),  # shared: one host reads what another wrote
        "HUB_PERSON_KEY": secrets.token_urlsafe(32),
        "HUB_EGRESS_ALLOW": "127.0.0.1",  # the target stands in on loopback
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "WARNING",
    }
    a, b = (
        AppHost(name, tmp_path, env | {"CRM_URL": f"{target.url}/{name}/leads"})
        for name in ("a", "b")
    )
    pair = (a, b)
    yield pair
    for host in pair:
        host.close()


def _leader_pid(redis: Redis) -> int | None:
    value = redis.get(SWEEPER_LEADER_KEY)  # "<hostname>:<pid>:<nonce>/<fence>"
    return int(value.decode().split(":")[1]) if value else None


def _worker_up(redis: Redis, pid: int) -> bool:
    return any(worker.pid == pid for worker in Worker.all(connection=redis))


def test_a_host_killed_mid_flight_loses_nothing_and_the_other_finishes_its_work(
    ctx: WorkerContext, target: TargetServer, hosts: tuple[AppHost, AppHost]
) -> None:
    a, b = hosts
    with ctx.sessions() as session, session.begin():
        key = create_key(session, name="site", tenant_slug="clinic-1", create_tenant=True).secret
    a.start()
    wait_for(lambda: _leader_pid(ctx.redis) == a.processes["sweeper"].pid, 20, "A's sweeper leads")
    b.start("web", "sweeper")  # B's worker joins halfway (see the module docstring)
    target.default = Reply(delay=0.3)  # deliveries stay in flight a while, A's longer
    target.by_path["/a/"] = Reply(delay=A_SEND)

    def a_sending() -> bool:  # a send of A's arrived lately: the target still holds it
        now = time.monotonic()
        return any(s.path.startswith("/a/") and now - s.at < A_SEND - 0.3 for s in target.seen)

    stream = LeadStream(key, [a.url, b.url], rate=RATE, count=LEADS).start()
    wait_for(lambda: stream.sent >= KILL_AT and a_sending(), 60, "A's deliveries under way")
    b.start("worker")
    wait_for(lambda: _worker_up(ctx.redis, b.processes["worker"].pid), 30, "B's worker up")
    wait_for(a_sending, 30, "a send of host A's in flight")
    posted_before = stream.sent
    a.kill()
    killed_at = time.monotonic()
    in_flight = delivering(ctx.engine)  # A's sends among them: frozen by the kill

    took_over = wait_for(
        lambda: _leader_pid(ctx.redis) == b.processes["sweeper"].pid,
        LEADER_TTL + 10,
        "B's sweeper to take the leader lock",
    )
    stream.wait(60)
    assert stream.done and len(stream.accepted) == LEADS, (
        f"every lead accepted by one host or the other: {len(stream.accepted)} of {LEADS}, "
        f"answers {dict(stream.answers)}"
    )

    def finished() -> bool:
        return not Account.read(ctx.engine, target, stream.accepted_ids(), in_flight).lost

    try:
        wait_for(finished, DRAIN_LIMIT, "every accepted lead delivered")
    except AssertionError:
        account = Account.read(ctx.engine, target, stream.accepted_ids(), in_flight)
        raise AssertionError(f"{account.figures()}\n{b.logs()}") from None
    drained = time.monotonic() - killed_at
    account = Account.read(ctx.engine, target, stream.accepted_ids(), in_flight)
    figures = (
        f"A killed after {posted_before} of {LEADS} leads posted, with {len(in_flight)} "
        f"deliveries in flight; B's sweeper led {took_over:.1f}s after the kill; all delivered "
        f"{drained:.1f}s after it; accepted by A {stream.by_url[a.url]}, "
        f"by B {stream.by_url[b.url]}; "
        f"answers {dict(stream.answers)}; {account.figures()}"
    )
    assert not account.lost, figures
    assert not account.unexplained, figures
    assert sum(account.lost_attempts.values()) >= 1, f"the kill hit no send in flight: {figures}"
    assert stream.by_url[a.url] and stream.by_url[b.url], f"both hosts took load: {figures}"
    assert took_over <= LEADER_TTL + 2, figures
    assert not b.exited(), f"host B lost a process: {b.exited()}\n{b.logs()}"

    # metrics are per host: each directory holds only its own processes' files
    assert a.metric_pids() <= a.pids() and b.metric_pids() <= b.pids(), (
        f"A {a.metric_pids()} of {a.pids()}, B {b.metric_pids()} of {b.pids()}"
    )
    # a clean stop: uvicorn re-raises the SIGTERM once it has shut down gracefully
    assert b.stop() == {"web": -signal.SIGTERM, "worker": 0, "sweeper": 0}, b.logs()
