"""Process commands: up, serve, worker, sweeper, migrate."""

from __future__ import annotations

import click

from hub.core.queues import PRIORITY, QueueName


def register(cli: click.Group) -> None:
    for command in (up, serve, worker, sweeper, migrate):
        cli.add_command(command)


@click.command()
@click.option("--host", default=None, envvar="HUB_HOST", help="Listen address [127.0.0.1].")
@click.option("--port", type=int, default=None, envvar="HUB_PORT", help="Listen port [8000].")
@click.option(
    "--workers",
    "worker_count",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="RQ worker processes to start.",
)
def up(host: str | None, port: int | None, worker_count: int) -> None:
    """Run everything in one process tree: web, worker(s), sweeper.

    Without HUB_DATABASE_URL / HUB_REDIS_URL this is the embedded default: SQLite in .hub/hub.db
    and an embedded Redis. Migrates, loads ./mappings, prints a demo API key. Ctrl-C stops it all.
    """
    from hub.cli.group import load_settings
    from hub.local.up import run_up

    settings = load_settings(host=host, port=port)
    raise SystemExit(run_up(settings, worker_count=worker_count))


@click.command()
@click.option("--host", default=None, envvar="HUB_HOST", help="Listen address [127.0.0.1].")
@click.option("--port", type=int, default=None, envvar="HUB_PORT", help="Listen port [8000].")
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="uvicorn worker processes.",
)
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the web server (uvicorn, no access log: hub logs its own lines).

    It starts even while the database is down: /health and webhooks answer 503 until it is back,
    and the applied sources load then, without a restart.
    """
    import uvicorn

    from hub.cli.group import load_settings
    from hub.core.protocol import HttpProtocol

    settings = load_settings(host=host, port=port)
    uvicorn.run(
        "hub.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is judged by hub (HUB_TRUSTED_PROXIES), not uvicorn
        log_level="warning",
        loop="auto",
        http=HttpProtocol,  # uvicorn's httptools, one write per response (hub.core.protocol)
        # slow or too many clients: what uvicorn offers (see the README's "Production" for the
        # reverse proxy's header and body timeouts, which uvicorn has not)
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.keepalive_timeout,
    )


@click.command()
@click.argument("queues", nargs=-1, type=click.Choice([q.value for q in PRIORITY]))
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: host and pid).")
def worker(queues: tuple[str, ...], burst: bool, name: str | None) -> None:
    """Run an RQ worker on QUEUES in priority order (default: all five)."""
    from hub.cli.group import load_settings
    from hub.core import logs
    from workers.worker import run_worker

    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    chosen = tuple(QueueName(q) for q in queues) or PRIORITY
    run_worker(settings, chosen, burst=burst, name=name)


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="Seconds between sweeps.",
)
def sweeper(interval: float) -> None:
    """Run the sweeper: outbox relay, due retries, expired leases, due sync jobs."""
    from hub.cli.group import load_settings
    from hub.core import logs
    from workers.sweeper import run_sweeper

    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    run_sweeper(settings, interval)


@click.command()
@click.option(
    "--revision",
    default="head",
    show_default=True,
    help="Target revision for upgrade; with --down, the one to go down to.",
)
@click.option("--down", is_flag=True, help="Downgrade to --revision (e.g. base).")
def migrate(revision: str, down: bool) -> None:
    """Bring the database schema to the latest revision (alembic upgrade head)."""
    from hub.cli.group import load_settings
    from hub.core import schema
    from hub.core.db import check_database, create_db_engine, describe_url

    settings = load_settings()
    engine = create_db_engine(settings)
    check_database(engine)
    before = schema.current_revision(engine)
    if down:
        if revision == "head":
            raise click.UsageError("--down needs --revision (e.g. --revision base)")
        schema.downgrade(engine, revision)
    else:
        schema.upgrade(engine, revision)
    after = schema.current_revision(engine)
    click.echo(f"{describe_url(engine)}: schema {before or 'empty'} -> {after or 'empty'}")
    engine.dispose()
