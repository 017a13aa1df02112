"""supervisord.conf, run as is (copied next to a private .hub dir) with supervisor from PyPI.

Starts web, the workers and the sweeper against the test database and Redis with the shipped
mappings. A lead POSTed to /webhooks/site goes through ingress, mapping and delivery to a loopback
target; a delivery scheduled in `retry_queue` (as a delayed route leaves it) is enqueued by the
sweeper and delivered too; SIGTERM to supervisord stops every program cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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
from tests.delivery.conftest import TargetServer, World
from workers.context import WorkerContext

pytestmark = pytest.mark.slow


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_supervisord_runs_web_workers_and_sweeper_and_delivers(
    ctx: WorkerContext,
    world: World,  # the tenant clinic-1 and rows for the scheduled delivery
    target: TargetServer,
    settings: Settings,
    tmp_path: Path,
) -> None:
    supervisord = shutil.which("supervisord", path=str(Path(sys.executable).parent))
    if supervisord is None:
        pytest.skip("supervisor is not installed (pip install -e '.[test]')")
    conf = tmp_path / "supervisord.conf"
    shutil.copy(ROOT / "supervisord.conf", conf)
    (tmp_path / ".hub").mkdir(exist_ok=True)  # also the data dir of `settings`
    port = free_port()
    env = {
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

    proc = subprocess.Popen(
        [supervisord, "-c", str(conf)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _health(port) == 200, 60, "the web program to answer /health")
        answer = httpx.post(
            f"http://127.0.0.1:{port}/webhooks/site",
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
        status = subprocess.run(
            [str(Path(supervisord).with_name("supervisorctl")), "-c", str(conf), "status"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        running = [line.split()[0] for line in status.stdout.splitlines() if "RUNNING" in line]
        assert sorted(running) == sorted(
            [
                "web",
                "worker-main:worker-main-0",
                "worker-main:worker-main-1",
                "worker-notifications",
                "worker-low",
                "worker-retry",
                "sweeper",
            ]
        ), status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(90)
    assert code == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)


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
