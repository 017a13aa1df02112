"""A fresh machine: `hub up` in an empty directory with the example mappings, then `hub demo`.

Every immediate delivery of seed 003's flows lands in the demo sink, webhooks with a valid
Standard Webhooks signature, Z-API calls with the right Client-Token, e-mails over SMTP; Ctrl-C
leaves no process behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from running_hub import RunningHub, alive

from hub.core.models import EndpointKind
from hub.delivery.endpoints import load_endpoints
from hub.local.sink import SinkStore, Verdict

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _delivered(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, endpoint, status FROM webhook_deliveries").fetchall()
    return [(str(i), str(e), str(s)) for i, e, s in rows]


def test_hub_up_then_hub_demo_delivers_every_flow_to_the_sink_signed(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    hub = RunningHub(tmp_path).start()
    try:
        assert "DEMO STAND-IN" in hub.banner
        assert set(hub.children()) == {"sink", "web", "worker-1", "sweeper"}
        demo = hub.run("hub demo", timeout=120)
        deliveries = _delivered(tmp_path / ".hub" / "hub.db")
        received = SinkStore.in_data_dir(tmp_path / ".hub").list()
    finally:
        code = hub.stop()

    assert demo.returncode == 0, demo.stdout + demo.stderr
    for title in ("lead from the site", "lead from WhatsApp", "client registered"):
        assert title in demo.stdout
    assert "service completed" in demo.stdout
    assert "feedback-request" in demo.stdout and "scheduled for" in demo.stdout
    assert "12 of 12 immediate deliveries arrived; 1 scheduled for later" in demo.stdout

    kinds = {name: cfg.kind for name, cfg in load_endpoints(tmp_path / "mappings").items()}
    immediate = [(i, e) for i, e, status in deliveries if status == "delivered"]
    assert len(immediate) == 12 and len(deliveries) == 13
    by_id = {r.webhook_id: r for r in received if r.webhook_id}
    zapi = [r for r in received if r.channel == "zapi"]
    for delivery_id, endpoint in immediate:
        if kinds[endpoint] == EndpointKind.WEBHOOK:
            assert by_id[delivery_id].verdict == Verdict.VALID, delivery_id
            assert by_id[delivery_id].system == endpoint
        elif kinds[endpoint] == EndpointKind.EMAIL:
            assert by_id[delivery_id].system == "email"
    assert len(zapi) == sum(1 for _, e in immediate if kinds[e] == EndpointKind.ZAPI)
    assert all(r.verdict == Verdict.TOKEN_OK for r in zapi)
    assert not [r for r in received if r.verdict == Verdict.INVALID]

    assert code == 0
    assert hub.tree and not [pid for pid in hub.tree if alive(pid)]
