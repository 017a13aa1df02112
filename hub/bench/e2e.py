"""`hub bench e2e`: N events in, N×2 deliveries out to a fast local target, through the standard
worker set; reports time to drain, events/s and deliveries/s, end-to-end latency (event received
→ target got the delivery), and checks that every delivery arrived exactly once per webhook-id."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from redis import Redis
from rq import Worker
from sqlalchemy import func, select

from hub.bench import workload
from hub.bench.ingest import _tree_rss
from hub.bench.loadgen import run_load
from hub.bench.scratch import scratch
from hub.core.errors import HubError
from hub.core.models import DeliveryAttempt, DeliveryStatus, IntegrationEvent, WebhookDelivery
from hub.core.settings import Settings
from hub.local.processes import (
    HUB,
    Child,
    free_port,
    stop_all,
    tree_cpu_seconds,
    wait_http_ok,
    wait_until,
)

Progress = Callable[[str], None]


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


CPU_OF = ("web", "worker", "target")  # the children whose CPU is reported


def _tree_cpu(kids: list[Child], prefix: str) -> float:
    """CPU seconds used so far by the children named `prefix`… and their descendants."""
    return sum(
        tree_cpu_seconds(kid.pid)
        for kid in kids
        if kid.name.startswith(prefix) and kid.pid is not None
    )


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def _wait_for_workers(redis: Redis, count: int, kids: list[Child], timeout: float = 60.0) -> None:
    """Wait until `count` workers have registered with RQ (their start is not timed as latency);
    HubError when a child exits or time runs out."""
    wait_until(
        lambda: Worker.count(connection=redis) >= count,
        f"the {count} workers did not start",
        kids,
        timeout,
    )


def bench_e2e(
    settings: Settings,
    *,
    events: int = 10_000,
    concurrency: int = 32,
    workers: int = 2,
    timeout: float = 600.0,
    keep: bool = False,
    redis_db: int = 14,
    rate: float | None = None,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    """`rate`: events arrive at a steady rate (events/s) instead of as fast as ingress takes
    them, so latency is measured under a load the workers keep up with, not behind a backlog."""
    expected = events * workload.ROUTES_PER_EVENT
    with scratch(settings, redis_db=redis_db, keep=keep) as s:
        mappings = s.dir / "mappings"
        workload.write_mappings(mappings)
        env = s.env(dict(os.environ))
        target_port, web_port = free_port(), free_port()
        env[workload.TARGET_VAR] = f"http://127.0.0.1:{target_port}"

        applied = subprocess.run(
            [*HUB, "mappings", "apply", str(mappings)], env=env, capture_output=True, text=True
        )
        if applied.returncode != 0:
            raise HubError(f"hub mappings apply failed: {applied.stderr.strip()}")

        target = Child(
            "target",
            [sys.executable, "-m", "hub.bench.target", "--host", "127.0.0.1",
             "--port", str(target_port)],
        )  # fmt: skip
        web = Child("web", [*HUB, "serve", "--host", "127.0.0.1", "--port", str(web_port)])
        kids = [target, web]
        kids += [Child(f"worker-{n + 1}", [*HUB, "worker"]) for n in range(workers)]
        kids.append(Child("sweeper", [*HUB, "sweeper"]))
        try:
            for kid in kids:
                kid.start(env, quiet=True)
            wait_http_ok(f"http://127.0.0.1:{web_port}/health", kids)
            wait_http_ok(f"http://127.0.0.1:{target_port}/_records", kids)
            _wait_for_workers(s.redis, workers, kids)  # started: their start is not timed

            pacing = f" at {rate:g}/s" if rate else ""
            progress(
                f"ingesting {events} events{pacing} ({expected} deliveries), {workers} workers"
            )
            body = workload.payload()
            headers = {
                "Content-Type": "application/json",
                "X-API-Key": s.key,
                workload.SIGNATURE_HEADER: workload.signature(s.webhook_secret, body),
            }
            idle_cpu = {name: _tree_cpu(kids, name) for name in CPU_OF}  # their start, not counted
            started = time.time()
            load = run_load(
                f"http://127.0.0.1:{web_port}/webhooks/bench", body, headers,
                concurrency=concurrency, duration=timeout, total=events, rate=rate,
            )  # fmt: skip
            ingested = time.time()
            progress(f"ingested {load.statuses.get(202, 0)} in {ingested - started:.1f}s; draining")

            delivered = 0
            deadline = started + timeout
            last_report = 0.0
            while time.time() < deadline:
                with s.engine.connect() as conn:
                    counts = dict(
                        conn.execute(
                            select(WebhookDelivery.status, func.count())
                            .where(
                                WebhookDelivery.status.in_(
                                    [DeliveryStatus.DELIVERED, DeliveryStatus.DEAD]
                                )
                            )
                            .group_by(WebhookDelivery.status)
                        ).all()
                    )
                    reason = None
                    if counts.get(DeliveryStatus.DEAD):
                        reason = conn.scalar(
                            select(WebhookDelivery.last_error)
                            .where(WebhookDelivery.status == DeliveryStatus.DEAD)
                            .limit(1)
                        )
                delivered = counts.get(DeliveryStatus.DELIVERED, 0)
                if (
                    reason is not None
                ):  # the bench's target answers 200: a dead one is a setup error
                    dead = counts[DeliveryStatus.DEAD]
                    raise HubError(f"bench e2e: {dead} deliveries ended dead, e.g.: {reason}")
                if delivered >= expected:
                    break
                if time.time() - last_report > 2:
                    progress(f"  {delivered}/{expected} delivered")
                    last_report = time.time()
                time.sleep(0.25)
            rss = {}
            for kid in kids:
                if kid.name.startswith(("web", "worker")):
                    rss.update(_tree_rss(kid))
            cpu = {name: _tree_cpu(kids, name) - idle_cpu[name] for name in CPU_OF}
            arrivals = httpx.get(f"http://127.0.0.1:{target_port}/_records", timeout=30).json()
        finally:
            stop_all(kids)

        first_seen: dict[str, float] = {}
        for webhook_id, at in arrivals["arrivals"]:
            first_seen.setdefault(webhook_id, at)
        duplicates = len(arrivals["arrivals"]) - len(first_seen)
        copies = Counter(webhook_id for webhook_id, _ in arrivals["arrivals"])
        twice = sorted(d for d, n in copies.items() if n > 1)
        with s.engine.connect() as conn:
            # each delivery the target got more than once: copies received / attempts recorded
            # (equal: each copy was an attempt hub knows of; more copies: a send hub does not)
            recorded = (
                dict(
                    conn.execute(
                        select(DeliveryAttempt.delivery_id, func.count())
                        .where(DeliveryAttempt.delivery_id.in_(twice[:200]))
                        .group_by(DeliveryAttempt.delivery_id)
                    ).all()
                )
                if twice
                else {}
            )
            rows = conn.execute(
                select(WebhookDelivery.id, IntegrationEvent.created_at).join(
                    IntegrationEvent, IntegrationEvent.id == WebhookDelivery.event_id
                )
            ).all()
            journeys = conn.execute(
                select(
                    WebhookDelivery.id,
                    IntegrationEvent.created_at,
                    IntegrationEvent.processed_at,
                    DeliveryAttempt.started_at,
                )
                .join(IntegrationEvent, IntegrationEvent.id == WebhookDelivery.event_id)
                .join(DeliveryAttempt, DeliveryAttempt.delivery_id == WebhookDelivery.id)
                .where(DeliveryAttempt.number == 1)
            ).all()
            statuses = dict(
                conn.execute(
                    select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
                ).all()
            )
            # the target answers 200 at once: anything but one delivered attempt each says why
            # a delivery was sent again
            attempts = {
                f"{outcome}/{error_class}" if error_class else str(outcome): count
                for outcome, error_class, count in conn.execute(
                    select(
                        DeliveryAttempt.outcome, DeliveryAttempt.error_class, func.count()
                    ).group_by(DeliveryAttempt.outcome, DeliveryAttempt.error_class)
                ).all()
            }
        latencies = [
            (first_seen[d_id] - created.replace(tzinfo=UTC).timestamp()) * 1000
            for d_id, created in rows
            if d_id in first_seen
        ]
        stages: dict[str, list[float]] = {"routed": [], "sending": [], "arrived": []}
        for d_id, created, processed, sending in journeys:
            if processed is None or d_id not in first_seen:
                continue
            times = [_epoch(created), _epoch(processed), _epoch(sending), first_seen[d_id]]
            for name, (a, b) in zip(stages, itertools.pairwise(times), strict=True):
                stages[name].append((b - a) * 1000)
        missing = sum(1 for d_id, _ in rows if d_id not in first_seen)
        drained = max(first_seen.values(), default=started) - started
        return {
            "benchmark": "e2e",
            "database": s.database_label,
            "redis": s.redis_label,
            "events": events,
            "accepted": load.statuses.get(202, 0),
            "deliveries_expected": expected,
            "deliveries_created": len(rows),
            "delivered": delivered,
            "delivery_statuses": {str(k): v for k, v in statuses.items()},
            "attempts": attempts,
            "worker_processes": workers,
            "rate": rate,  # events/s offered (None: as fast as ingress took them)
            "ingest_s": round(ingested - started, 2),
            "drain_s": round(drained, 2),
            "events_per_s": round(events / drained, 1) if drained else 0.0,
            "deliveries_per_s": round(len(first_seen) / drained, 1) if drained else 0.0,
            "deliveries_per_s_per_worker": (
                round(len(first_seen) / drained / workers, 1) if drained else 0.0
            ),
            "latency_p50_ms": round(_percentile(latencies, 0.50), 1),
            "latency_p95_ms": round(_percentile(latencies, 0.95), 1),
            "latency_p99_ms": round(_percentile(latencies, 0.99), 1),
            # where the latency goes: stored -> routed (its deliveries made) -> the first send
            # started -> the target got it
            "latency_stages_ms": {
                name: f"p50 {_percentile(v, 0.5):.1f}, p99 {_percentile(v, 0.99):.1f}"
                for name, v in stages.items()
            },
            "arrived_unique": len(first_seen),
            "duplicates": duplicates,
            "duplicated": {
                d: f"{copies[d]} copies/{recorded.get(d, 0)} attempts" for d in twice[:5]
            },
            "lost": missing + (expected - len(rows)),
            "peak_rss_mb": rss,
            # CPU per unit of work from the load's start (not the processes' own start), steadier
            # than rates on a shared machine: the web's per event, the workers' per delivery
            "cpu_ms_per_event_web": round(cpu["web"] * 1000 / max(events, 1), 3),
            "cpu_ms_per_delivery_workers": round(cpu["worker"] * 1000 / max(len(first_seen), 1), 3),
            "cpu_ms_per_delivery_target": round(cpu["target"] * 1000 / max(len(first_seen), 1), 3),
        }
