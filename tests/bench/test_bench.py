"""`hub bench` runs end to end on scratch data and reports figures a script can read.

Speed targets are checked by running the benchmarks, never here: these tests check that each
benchmark measures what it says (every accepted event stored once, every delivery arrived once)
and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from redis import Redis
from sqlalchemy import Engine, func, select

from hub.core.models import IntegrationEvent

pytestmark = pytest.mark.slow


def hub_bench(args: list[str], database_url: str, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    if not database_url.startswith("sqlite"):
        env["HUB_DATABASE_URL"] = database_url
    if not redis_url.startswith("unix"):
        env["HUB_REDIS_URL"] = redis_url
    result = subprocess.run(
        [sys.executable, "-m", "hub", "bench", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bench:" in result.stderr  # progress goes to stderr, the report alone to stdout
    return json.loads(result.stdout)


def test_bench_ingest_stores_every_accepted_event_exactly_once(
    database_url: str, redis_url: str, engine: Engine, redis: Redis
) -> None:
    report = hub_bench(
        ["ingest", "--duration", "1", "--concurrency", "8", "--builtin"], database_url, redis_url
    )
    assert report["benchmark"] == "ingest"
    assert report["hub"]["statuses"].get("202", 0) > 0
    assert report["errors"] == 0
    assert report["exactly_once"] is True
    assert report["stored_rows"] == report["accepted_total"]  # the built-in client reads all
    assert report["ceiling_per_s"] > 0 and 0 < report["ratio_to_ceiling"]
    assert report["accepted_per_s_per_web_process"] == report["accepted_per_s"]  # one process
    assert report["peak_rss_mb"]
    # hub does more per request than a bare 202 endpoint, and it is counted, not guessed
    assert report["cpu_ms_per_accepted"] > report["ceiling_cpu_ms_per_request"] > 0
    # scratch data only: the test database saw no event
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(IntegrationEvent)) == 0


def test_bench_e2e_delivers_every_fan_out_exactly_once(database_url: str, redis_url: str) -> None:
    """At a steady --rate: 150 events at 100/s take about 1.5 s to send, not a burst."""
    report = hub_bench(
        ["e2e", "--events", "150", "--concurrency", "8", "--rate", "100"], database_url, redis_url
    )
    assert report["rate"] == 100
    assert report["ingest_s"] >= 1.4, f"150 events paced at 100/s sent in {report['ingest_s']}s"
    assert report["deliveries_per_s_per_worker"] > 0
    assert report["accepted"] == 150
    assert report["deliveries_created"] == 300
    assert report["delivered"] == 300
    assert report["arrived_unique"] == 300
    assert report["lost"] == 0
    assert (report["duplicates"], report["duplicated"]) == (0, {})
    assert report["attempts"] == {"delivered": 300}  # one attempt each, none failed
    assert report["latency_p50_ms"] > 0
    assert len(report["peak_rss_mb"]) == 3  # web and two workers
    # a worker process starting takes more than a delivery's share: CPU is counted, not guessed;
    # the target's 300 answers can take less than one clock tick (10 ms) on a fast machine
    assert 0 < report["cpu_ms_per_event_web"] and 0 <= report["cpu_ms_per_delivery_target"]
    assert report["cpu_ms_per_delivery_workers"] > report["cpu_ms_per_delivery_target"]


def test_bench_mapping_reports_transforms_per_second(database_url: str, redis_url: str) -> None:
    report = hub_bench(["mapping", "--seconds", "0.5"], database_url, redis_url)
    assert report["fields"] == 10
    assert report["payload_bytes"] >= 2000
    assert report["transforms"] > 0 and report["per_second"] > 0
