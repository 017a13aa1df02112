"""supervisord.conf, run as is (copied next to a private .hub dir) with supervisor from PyPI.

Starts web, the workers and the sweeper against the test database and Redis with the shipped
mappings. A lead POSTed to /webhooks/site goes through ingress, mapping and delivery to a loopback
target; a delivery scheduled in `retry_queue` (as a delayed route leaves it) is enqueued by the
sweeper and delivered too; SIGTERM to supervisord stops every program cleanly.

Under faults (MariaDB lane: the cuts need a server database behind a TCP proxy), with leads
streaming in all along: a storm of worker SIGKILLs (supervisord restarts each), Redis cut for
30 s, MariaDB cut for 30 s. Each time everything accepted is delivered within a minute, no
program but the killed ones ever exits, none ends FATAL, every post gets an answer (202 or 503),
and SIGTERM still stops everything without supervisord having to kill.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from hub.core.models import DeliveryStatus, RetryQueue, WebhookDelivery, utcnow
from hub.core.settings import Settings
from hub.ingress.apikeys import create_key
from hub.local.processes import free_port
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings
from tests.conftest import ROOT
from tests.delivery.conftest import Reply, TargetServer, World
from tests.faults import database_proxy, redis_proxy
from tests.load import Account, LeadStream, delivering, write_mappings
from workers.context import WorkerContext

pytestmark = pytest.mark.slow


PROGRAMS = [
    "web",
    "worker-main:worker-main-0",
    "worker-main:worker-main-1",
    "worker-notifications",
    "worker-low",
    "worker-retry",
    "sweeper",
]  # and `consume`, which exits 0 at once when no amqp source is configured (as here)


def wait_for(check, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what} ({timeout:.0f}s)")
        time.sleep(0.2)
    return time.monotonic() - started


class Supervisor:
    """supervisord with the shipped supervisord.conf, as is, in `root` (programs log there)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        found = shutil.which("supervisord", path=str(Path(sys.executable).parent))
        if found is None:
            pytest.skip("supervisor is not installed (pip install -e '.[test]')")
        self.supervisord = found
        self.root = root
        self.env = env
        self.conf = root / "supervisord.conf"
        shutil.copy(ROOT / "supervisord.conf", self.conf)
        (root / ".hub").mkdir(exist_ok=True)
        self.port = int(env["HUB_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Supervisor:
        self.process = subprocess.Popen(
            [self.supervisord, "-c", str(self.conf)],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _health(self.port) == 200, 60, "the web program to answer /health")
        return self

    def status(self) -> dict[str, tuple[str, int | None]]:
        """`supervisorctl status`: program -> (state, pid)."""
        ctl = str(Path(self.supervisord).with_name("supervisorctl"))
        done = subprocess.run(
            [ctl, "-c", str(self.conf), "status"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )
        out: dict[str, tuple[str, int | None]] = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = re.search(r"pid (\d+)", line)
                out[parts[0]] = (parts[1], int(pid.group(1)) if pid else None)
        return out

    def exits(self) -> list[str]:
        """supervisord's log lines for programs that exited, or that it stopped."""
        log = self.root / ".hub" / "supervisord.log"
        lines = log.read_text().splitlines()
        return [line for line in lines if " exited: " in line or " stopped: " in line]

    def stop(self) -> int:
        """SIGTERM to supervisord: it stops every program; its exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(90)
        self.process = None
        return code

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()


def supervised_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of supervisord: the test's services, PATH to this hub, no other HUB_*."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HUB_DATABASE_URL": settings.effective_database_url,
        "HUB_REDIS_URL": settings.redis_url or "",
        "HUB_DATA_DIR": str(settings.data_dir),
        "HUB_MAPPINGS_DIR": str(settings.mappings_dir),
        "HUB_PORT": str(port),
        "HUB_LOG_LEVEL": "WARNING",
        "HUB_EGRESS_ALLOW": "127.0.0.1",  # the target stands in on loopback
    }


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[list[Supervisor]]:
    """The supervisors a test starts, all stopped after it."""
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.close()


def test_supervisord_runs_web_workers_and_sweeper_and_delivers(
    ctx: WorkerContext,
    world: World,  # the tenant clinic-1 and rows for the scheduled delivery
    target: TargetServer,
    settings: Settings,
    tmp_path: Path,
    supervised: list[Supervisor],
) -> None:
    (tmp_path / ".hub").mkdir(exist_ok=True)  # also the data dir of `settings`
    env = supervised_env(settings, free_port())
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    for name in ("CRM", "MARKETING", "FINANCEIRO"):
        env[f"CLINIC_1_{name}_URL"] = target.url
        env[f"CLINIC_1_{name}_SIGNING_SECRET"] = secret
    env |= {"CLINIC_1_CRM_TOKEN": "Bearer t", "ZAPI_BASE_URL": target.url}
    env |= {f"CLINIC_1_ZAPI_{k}": "x" for k in ("INSTANCE", "TOKEN", "CLIENT_TOKEN")}
    apply_mappings(ctx.engine, ctx.redis, load_mappings(ROOT / "mappings"))
    with ctx.sessions() as session, session.begin():
        key = create_key(
            session, name="site form", tenant_slug="clinic-1", create_tenant=True
        ).secret
    dlv = world.delivery("crm", {"name": "Bia"}, path="/direct")
    with ctx.engine.begin() as conn:
        conn.execute(
            RetryQueue.__table__.insert().values(
                delivery_id=dlv, next_retry_at=utcnow(), attempt=0, created_at=utcnow()
            )
        )

    supervisor = Supervisor(tmp_path, env)
    supervised.append(supervisor.start())
    answer = httpx.post(
        f"{supervisor.url}/webhooks/site",
        json={"type": "lead.created", "name": "Ana", "phone": "(11) 91234-5678"},
        headers={"X-API-Key": key, "Idempotency-Key": "lead-1"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    wait_for(lambda: {"/direct", "/leads"} <= _paths(target), 60, "both deliveries")
    wait_for(lambda: _status(ctx, dlv) == DeliveryStatus.DELIVERED, 30, "the delivered status")
    [lead] = [seen for seen in target.seen if seen.path == "/leads"]
    assert Webhook(secret).verify(lead.body, lead.headers)["phone"] == "+5511912345678"
    [direct] = [seen for seen in target.seen if seen.path == "/direct"]
    assert direct.headers["webhook-id"] == dlv
    status = supervisor.status()
    running = [name for name, (state, _) in status.items() if state == "RUNNING"]
    assert sorted(running) == sorted(PROGRAMS), status
    assert supervisor.stop() == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{supervisor.url}/health", timeout=1)


def _health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
    except httpx.HTTPError:
        return None


def _paths(target: TargetServer) -> set[str]:
    return {seen.path for seen in target.seen}


def _status(ctx: WorkerContext, delivery_id: str) -> DeliveryStatus | None:
    with ctx.sessions() as session:
        row = session.get(WebhookDelivery, delivery_id)
        return row.status if row else None


CUT_SECONDS = 30.0
RESTORE_LIMIT = 60.0  # seconds after a restore (or the last kill) to deliver everything accepted
RATE = 15.0  # leads a second, all through the test
KILLS = [  # SIGKILL, one after another, each once supervisord has it RUNNING again
    "worker-main:worker-main-0",
    "worker-notifications",
    "worker-main:worker-main-1",
    "worker-retry",
    "worker-main:worker-main-0",
]


def test_under_supervisord_outages_and_worker_kills_stop_no_program_and_lose_no_lead(
    ctx: WorkerContext,
    target: TargetServer,
    settings: Settings,
    tmp_path: Path,
    supervised: list[Supervisor],
) -> None:
    """Leads stream in all along (RATE a second; the target answers after 0.5 s, so sends are in
    flight at every fault): five SIGKILLs of workers, then Redis cut for 30 s, then MariaDB cut
    for 30 s, through TCP proxies in front of each. After each fault everything accepted so far
    is delivered within a minute; no program exits but the ones killed, none ends FATAL."""
    if not settings.effective_database_url.startswith("mysql"):
        pytest.skip("the database cut needs a server database behind a TCP proxy (MariaDB lane)")
    mappings = write_mappings(tmp_path / "mappings", target.url)
    apply_mappings(ctx.engine, ctx.redis, load_mappings(mappings))
    with ctx.sessions() as session, session.begin():
        key = create_key(session, name="site", tenant_slug="clinic-1", create_tenant=True).secret
    target.default = Reply(delay=0.5)
    database_url, redis_url = settings.effective_database_url, settings.redis_url or ""
    with redis_proxy(redis_url) as to_redis, database_proxy(database_url) as to_database:
        env = supervised_env(settings, free_port()) | {
            "HUB_DATABASE_URL": to_database.url_for(database_url),
            "HUB_REDIS_URL": to_redis.url_for(redis_url),
            "HUB_MAPPINGS_DIR": str(mappings),
        }
        began = time.monotonic()
        supervisor = Supervisor(tmp_path, env)
        supervised.append(supervisor.start())
        figures = [f"supervisord up in {time.monotonic() - began:.1f}s"]
        stream = LeadStream(key, [supervisor.url], rate=RATE).start()
        in_flight: set[str] = set()  # deliveries in flight at a kill or a cut

        def drained(since: float, after: str) -> None:
            """Everything accepted until now delivered within RESTORE_LIMIT of `since`."""
            accepted = stream.accepted_ids()

            def done() -> bool:
                return not Account.read(ctx.engine, target, accepted).lost

            try:
                wait_for(done, RESTORE_LIMIT - (time.monotonic() - since), f"delivery {after}")
            except AssertionError:
                account = Account.read(ctx.engine, target, accepted, in_flight)
                raise AssertionError(
                    f"not all delivered {RESTORE_LIMIT:.0f}s {after}: {account.figures()}; "
                    f"before: {figures}; status {supervisor.status()}; answers {stream.answers}; "
                    f"not delivered: {account.stuck(ctx.engine)}"
                ) from None
            figures.append(
                f"{len(accepted)} accepted delivered {time.monotonic() - since:.1f}s {after} "
                f"(at {time.monotonic() - began:.0f}s)"
            )

        def a_send_in_flight() -> set[str]:
            wait_for(lambda: bool(delivering(ctx.engine)), 30, "a delivery in flight")
            return delivering(ctx.engine)

        def watch_in_flight(seconds: float) -> set[str]:
            """Every delivery in flight at some point of the next `seconds`."""
            seen: set[str] = set()
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                seen |= delivering(ctx.engine)
                time.sleep(0.2)
            return seen

        # a storm of worker kills; supervisord restarts each
        wait_for(lambda: len(target.seen) >= 20, 60, "deliveries under way")
        killed: list[int] = []
        for program in KILLS:
            wait_for(
                lambda p=program: _running_pid(supervisor, p) not in (None, *killed),
                30,
                f"{program} RUNNING again",
            )
            pid = _running_pid(supervisor, program)
            assert pid is not None
            in_flight |= a_send_in_flight()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            in_flight |= delivering(ctx.engine)  # what it leased since: frozen by the kill
            time.sleep(1.0)
        drained(time.monotonic(), f"after the last of {len(KILLS)} kills")

        def all_running() -> dict[str, tuple[str, int | None]]:
            wait_for(lambda: _running(supervisor) == set(PROGRAMS), 30, "every program RUNNING")
            return supervisor.status()

        for name, proxy in (("Redis", to_redis), ("MariaDB", to_database)):
            before = all_running()  # the last killed worker may still be STARTING
            in_flight |= a_send_in_flight()  # a job in hand at the cut
            proxy.cut()
            in_flight |= watch_in_flight(CUT_SECONDS)  # jobs in hand go on leasing for a while
            during = supervisor.status()
            proxy.restore()
            restored = time.monotonic()
            in_flight |= delivering(ctx.engine)  # held through the cut
            drained(restored, f"after {name} came back from a {CUT_SECONDS:.0f}s cut")
            after = supervisor.status()
            assert during == before == after, (
                f"every program RUNNING, same pids, through the {name} cut: before {before}, "
                f"during {during}, after {after}"
            )

        stream.stop()
        drained(time.monotonic(), "after the stream stopped")
        account = Account.read(ctx.engine, target, stream.accepted_ids(), in_flight)
        said = (
            f"{figures}; answers {dict(stream.answers)}, slowest {stream.slowest}; "
            f"{account.figures()}"
        )
        assert not account.lost, said
        assert not account.unexplained, said
        assert _running(supervisor) == set(PROGRAMS), f"{supervisor.status()}; {said}"
        exits = [line for line in supervisor.exits() if "consume" not in line]
        assert len(exits) == len(KILLS) and all("SIGKILL" in line for line in exits), (
            f"only the killed workers exited: {exits}"
        )
        assert set(stream.answers) <= {"202", "503"}, f"every post answered, none held: {said}"
        stopping = time.monotonic()
        assert supervisor.stop() == 0
        stopped = time.monotonic() - stopping
        stops = [line for line in supervisor.exits() if "SIGKILL" in line][len(KILLS) :]
        assert not stops, f"supervisord had to kill: {stops} ({stopped:.0f}s to stop)"


def _running(supervisor: Supervisor) -> set[str]:
    return {p for p, (state, _) in supervisor.status().items() if state == "RUNNING"}


def _running_pid(supervisor: Supervisor, program: str) -> int | None:
    state, pid = supervisor.status().get(program, ("", None))
    return pid if state == "RUNNING" else None
