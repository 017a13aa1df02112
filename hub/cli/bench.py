"""`hub bench ingest|e2e|mapping|sync`: measure this installation; a table, or `--json`."""

from __future__ import annotations

import json
import os
from typing import Any

import click


def register(cli: click.Group) -> None:
    cli.add_command(bench)


def scratch_options(command: Any) -> Any:
    """`--redis-db` and `--keep`: the scratch data every installation benchmark runs on."""
    command = click.option("--keep", is_flag=True, help="Keep the scratch database and files.")(
        command
    )
    return click.option(
        "--redis-db",
        type=click.IntRange(0, 15),
        default=14,
        show_default=True,
        help="Scratch Redis DB index (flushed) on the configured server.",
    )(command)


@click.group()
def bench() -> None:
    """Measure throughput and latency on this machine (on scratch data, never your events)."""


def _progress(_as_json: bool) -> Any:
    """Progress lines go to stderr, so `--json` output on stdout stays parseable."""
    return lambda message: click.echo(f"bench: {message}", err=True)


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = str(value)
        click.echo(f"{key.ljust(width)}  {shown}")


@bench.command()
@click.option("--concurrency", type=click.IntRange(1, 1024), default=64, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(1),
    default=15.0,
    show_default=True,
    help="Seconds of load for each of the two runs.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="uvicorn worker processes.",
)
@click.option("--builtin", is_flag=True, help="Use the built-in load generator even if wrk exists.")
@scratch_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest(
    concurrency: int,
    duration: float,
    workers: int,
    builtin: bool,
    redis_db: int,
    keep: bool,
    as_json: bool,
) -> None:
    """Signed ~1 KB webhooks against the hub and against a bare 202 endpoint (the ceiling)."""
    from hub.bench.ingest import bench_ingest
    from hub.cli.group import load_settings

    report = bench_ingest(
        load_settings(), concurrency=concurrency, duration=duration, workers=workers,
        prefer_wrk=not builtin, keep=keep, redis_db=redis_db, progress=_progress(as_json),
    )  # fmt: skip
    _print(report, as_json)


@bench.command()
@click.option("--events", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 1024), default=32, show_default=True)
@click.option(
    "--workers", type=click.IntRange(1), default=2, show_default=True, help="hub worker processes."
)
@click.option("--timeout", type=click.FloatRange(10), default=600.0, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(1, 100_000),
    default=None,
    help="Events per second at a steady pace (latency under load, not behind a burst); "
    "default: as fast as ingress takes them.",
)
@scratch_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def e2e(
    events: int,
    concurrency: int,
    workers: int,
    timeout: float,
    rate: float | None,
    redis_db: int,
    keep: bool,
    as_json: bool,
) -> None:
    """N events fanned out to a fast local target through the standard worker set."""
    from hub.bench.e2e import bench_e2e
    from hub.cli.group import load_settings

    report = bench_e2e(
        load_settings(), events=events, concurrency=concurrency, workers=workers,
        timeout=timeout, keep=keep, redis_db=redis_db, rate=rate, progress=_progress(as_json),
    )  # fmt: skip
    _print(report, as_json)


@bench.command()
@click.option("--seconds", type=click.FloatRange(0.5), default=3.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def mapping(seconds: float, as_json: bool) -> None:
    """Transforms per second of a ten-field rule on a 2 KB payload, on one core."""
    from hub.bench.mapping import transforms_per_second
    from hub.local.processes import peak_rss_mb

    _progress(as_json)(f"mapping: a ten-field rule on a 2 KB payload, one core, {seconds:g}s")
    report = {"benchmark": "mapping", **transforms_per_second(seconds)}
    report["peak_rss_mb"] = {"bench": round(peak_rss_mb(os.getpid()) or 0.0, 1)}
    _print(report, as_json)


@bench.command("sync")
@click.option("--items", type=click.IntRange(1), default=50_000, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 10_000), default=100, show_default=True)
@scratch_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def sync_bench(items: int, per_page: int, redis_db: int, keep: bool, as_json: bool) -> None:
    """One sync of N items from a paged API on loopback: all missed, then all duplicates."""
    from hub.bench.sync import bench_sync
    from hub.cli.group import load_settings

    report = bench_sync(
        load_settings(), items=items, per_page=per_page, redis_db=redis_db, keep=keep,
        progress=_progress(as_json),
    )  # fmt: skip
    _print(report, as_json)
