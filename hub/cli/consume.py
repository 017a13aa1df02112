"""`hub consume SOURCE`: read an amqp source's RabbitMQ queue into events (hub.ingress.consumer).

`hub consume --all` runs every amqp source of the mappings in one process, a thread each (what
supervisord.conf and `hub up` start); a source that cannot start (its broker URL variable unset,
its tenant unknown) is named on stderr and left out, and with none left it exits 0 at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from hub.core.errors import ConfigError


def register(cli: click.Group) -> None:
    cli.add_command(consume)


@click.command()
@click.argument("source", required=False)
@click.option("--all", "every", is_flag=True, help="Every amqp source of the mappings.")
def consume(source: str | None, every: bool) -> None:
    """Read an amqp source's queue into events (ack after commit, poison to its DLX)."""
    from hub.cli.group import load_settings
    from hub.core import logs
    from hub.core.crypto import Cipher
    from hub.core.db import create_db_engine
    from hub.core.queues import connect_redis
    from hub.ingress.consumer import Consumer
    from hub.ingress.sources import load_sources

    if bool(source) == every:
        raise click.UsageError("give one SOURCE or --all")
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    sources = load_sources(settings.mappings_dir)
    names = [n for n, c in sorted(sources.items()) if c.amqp is not None] if every else [source]
    engine = create_db_engine(settings)
    redis = connect_redis(settings)
    cipher = Cipher.from_settings(settings)
    consumers = []
    for name in names:
        assert name is not None
        config = sources.get(name)
        if config is None:
            raise ConfigError(f"no source named {name!r} in {settings.mappings_dir}/sources.yaml")
        try:
            consumers.append(Consumer(name, config, engine, redis, cipher))
        except ConfigError as exc:
            if not every:
                raise
            click.echo(f"hub: consume: skipping {name}: {exc.message}", err=True)
    if not consumers:
        click.echo("hub: consume: no amqp source to read", err=True)
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        for consumer in consumers:
            consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=c.run, name=f"consume-{c.name}") for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    engine.dispose()
    redis.close()
