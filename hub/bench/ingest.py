"""`hub bench ingest`: accepted webhooks per second through the real ingress, against the
ceiling of a bare endpoint in the same run, then a check that every accepted event is stored
exactly once."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from hub.bench import workload
from hub.bench.loadgen import LoadResult, run_load
from hub.bench.scratch import Scratch, scratch
from hub.core.models import IntegrationEvent, Tenant
from hub.core.settings import Settings
from hub.local.processes import (
    HUB,
    Child,
    descendants,
    free_port,
    peak_rss_mb,
    stop_all,
    tree_cpu_seconds,
    wait_http_ok,
)
from hub.mapping.apply import apply_mappings
from hub.mapping.config import load_mappings

Progress = Callable[[str], None]


def _load_summary(result: LoadResult) -> dict[str, Any]:
    return {
        "tool": result.tool,
        "duration_s": round(result.duration, 2),
        "requests": result.requests,
        "requests_per_s": round(result.rate(), 1),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors,
        "p50_ms": round(result.p50_ms, 2),
        "p95_ms": round(result.p95_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
    }


def _tree_rss(child: Child) -> dict[str, float]:
    assert child.pid is not None
    out = {}
    for pid in [child.pid, *descendants(child.pid)]:
        rss = peak_rss_mb(pid)
        if rss is not None:
            out[f"{child.name}[{pid}]"] = round(rss, 1)
    return out


def _drive(
    name: str,
    args: list[str],
    env: dict[str, str],
    port: int,
    *,
    concurrency: int,
    duration: float,
    prefer_wrk: bool,
) -> tuple[LoadResult, LoadResult, dict[str, float], float]:
    """The warm-up's and the run's loads, the server's peak RSS, and the CPU seconds it used
    during the run."""
    server = Child(name, args).start(env, quiet=True)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/health", [server])
        url = f"http://127.0.0.1:{port}/webhooks/bench"
        body = workload.payload()
        secret = env[workload.SECRET_VAR]
        headers = {
            "Content-Type": "application/json",
            "X-API-Key": env["BENCH_API_KEY"],
            workload.SIGNATURE_HEADER: workload.signature(secret, body),
        }
        warm = run_load(
            url, body, headers, concurrency=concurrency, duration=1, prefer_wrk=prefer_wrk
        )
        assert server.pid is not None
        before = tree_cpu_seconds(server.pid)
        result = run_load(
            url, body, headers, concurrency=concurrency, duration=duration, prefer_wrk=prefer_wrk
        )
        cpu = tree_cpu_seconds(server.pid) - before
        return warm, result, _tree_rss(server), cpu
    finally:
        stop_all([server])


def _stored(s: Scratch) -> tuple[int, int]:
    with s.engine.connect() as conn:
        tenant_id = conn.scalar(select(Tenant.id).where(Tenant.slug == "bench"))
        where = IntegrationEvent.tenant_id == tenant_id
        rows = conn.scalar(select(func.count()).select_from(IntegrationEvent).where(where)) or 0
        distinct = (
            conn.scalar(
                select(func.count(func.distinct(IntegrationEvent.external_id))).where(where)
            )
            or 0
        )
    return rows, distinct


def bench_ingest(
    settings: Settings,
    *,
    concurrency: int = 64,
    duration: float = 15.0,
    workers: int = 1,
    prefer_wrk: bool = True,
    keep: bool = False,
    redis_db: int = 14,
    progress: Progress = lambda _m: None,
) -> dict[str, Any]:
    with scratch(settings, redis_db=redis_db, keep=keep) as s:
        workload.write_mappings(s.dir / "mappings")
        # web processes serve the applied sources only
        apply_mappings(s.engine, s.redis, load_mappings(s.dir / "mappings"))
        env = s.env(dict(os.environ))
        env["BENCH_API_KEY"] = s.key

        port = free_port()
        progress(f"ceiling: bare Starlette endpoint, {workers} uvicorn worker(s), {duration:.0f}s")
        bare_args = [
            sys.executable, "-m", "uvicorn", "hub.bench.bare:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        _, ceiling, _, ceiling_cpu = _drive(
            "bare", bare_args, env, port,
            concurrency=concurrency, duration=duration, prefer_wrk=prefer_wrk,
        )  # fmt: skip

        port = free_port()
        progress(f"hub: POST /webhooks/bench, signed, stored, {workers} worker(s), {duration:.0f}s")
        hub_args = [*HUB, "serve", "--host", "127.0.0.1", "--port", str(port)]
        hub_args += ["--workers", str(workers)]
        warm, result, rss, cpu = _drive(
            "web", hub_args, env, port,
            concurrency=concurrency, duration=duration, prefer_wrk=prefer_wrk,
        )  # fmt: skip
        rows, distinct = _stored(s)
        accepted = result.statuses.get(202, 0)
        # every request carries a new Idempotency-Key: each 202 (warm-up included) is one row
        all_accepted = accepted + warm.statuses.get(202, 0)
        report = {
            "benchmark": "ingest",
            "database": s.database_label,
            "redis": s.redis_label,
            "concurrency": concurrency,
            "web_workers": workers,
            "accepted_per_s": round(accepted / result.duration, 1) if result.duration else 0.0,
            "accepted_per_s_per_web_process": (
                round(accepted / result.duration / workers, 1) if result.duration else 0.0
            ),
            "ceiling_per_s": round(ceiling.rate(202), 1),
            "ratio_to_ceiling": round((accepted / result.duration) / ceiling.rate(202), 3)
            if ceiling.rate(202)
            else 0.0,
            "p50_ms": round(result.p50_ms, 2),
            "p95_ms": round(result.p95_ms, 2),
            "p99_ms": round(result.p99_ms, 2),
            "errors": result.errors + sum(n for c, n in result.statuses.items() if c >= 400),
            "hub": _load_summary(result),
            "ceiling": _load_summary(ceiling),
            "stored_rows": rows,
            "stored_distinct_ids": distinct,
            "accepted_total": all_accepted,
            # wrk stops with requests in flight: stored, but their 202 never read
            "in_flight_at_stop": rows - all_accepted,
            "exactly_once": rows == distinct and 0 <= rows - all_accepted <= 2 * concurrency,
            "peak_rss_mb": rss,
            # the server's CPU per answer during the run: steadier than rates on a busy machine
            "cpu_ms_per_accepted": round(cpu * 1000 / max(accepted, 1), 3),
            "ceiling_cpu_ms_per_request": round(
                ceiling_cpu * 1000 / max(ceiling.statuses.get(202, 0), 1), 3
            ),
        }
        return report
