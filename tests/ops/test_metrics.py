"""GET /metrics: counters from every process (multiprocess mode), state gauges read at scrape."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from hub.app import create_app
from hub.core import metrics
from hub.core.metrics import sample_value
from hub.core.queues import DELIVER, enqueue_ids
from hub.core.settings import Settings
from tests.delivery.conftest import TargetServer, World
from tests.ops.conftest import dead_delivery
from workers.context import WorkerContext


def test_metrics_show_counters_and_the_state_of_queues_circuits_and_dead_letters(
    ctx: WorkerContext, world: World, target: TargetServer, client: TestClient
) -> None:
    before = sample_value(
        client.get("/metrics").text, "hub_webhooks_received_total", {"source": "site"}
    )
    metrics.webhook_received("site", "accepted", 0.004)
    dead_delivery(ctx, world, target)
    metrics.delivery_attempted("crm", "dead", 0.02)
    enqueue_ids(ctx.redis, DELIVER, "retry", ["dlv_a"])

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    received = sample_value(
        text, "hub_webhooks_received_total", {"source": "site", "outcome": "accepted"}
    )
    assert received == (before or 0) + 1
    assert sample_value(text, "hub_ingest_duration_seconds_count", {"source": "site"})
    assert sample_value(text, "hub_delivery_attempts_total", {"endpoint": "crm"})
    assert sample_value(text, "hub_queue_depth", {"queue": "retry"}) == 1
    assert sample_value(text, "hub_queue_depth", {"queue": "high"}) == 0
    assert sample_value(text, "hub_dead_letters_open") == 1
    assert sample_value(text, "hub_circuit_state", {"endpoint": "crm"}) == 0  # closed
    assert sample_value(text, "hub_workers_alive") == 0


COUNT = "from hub.core import metrics; metrics.delivery_attempted('crm', 'delivered', 0.05)"
SHOW = "from hub.core import metrics; print(metrics.render().decode())"


def test_counts_from_separate_processes_add_up(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    for _ in range(3):  # three "workers", each its own process
        subprocess.run([sys.executable, "-c", COUNT], env=env, check=True, timeout=30)
    shown = subprocess.run(
        [sys.executable, "-c", SHOW], env=env, check=True, timeout=30, capture_output=True
    ).stdout.decode()
    labels = {"endpoint": "crm", "outcome": "delivered"}
    assert sample_value(shown, "hub_delivery_attempts_total", labels) == 3
    assert sample_value(shown, "hub_delivery_attempt_duration_seconds_count", {"endpoint": "crm"})
    assert len(list((tmp_path / "metrics").glob("*.db"))) >= 3


def test_counters_are_still_served_when_redis_is_down(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    metrics.replay_requested("dead_letter", "enqueued")
    with TestClient(create_app(down)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert sample_value(response.text, "hub_replays_total", {"kind": "dead_letter"})
    assert sample_value(response.text, "hub_queue_depth") is None
