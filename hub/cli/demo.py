"""`hub demo`: seed 003's flows sent to a running hub and followed to their deliveries."""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_URL = "http://127.0.0.1:8000"


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(demo)


@click.command()
@click.option(
    "--url", default=DEFAULT_URL, show_default=True, envvar="HUB_DEMO_URL", help="The hub."
)
@click.option(
    "--key",
    default=None,
    envvar="HUB_DEMO_KEY",
    help="The demo tenant's admin key [the one `hub up` saved in <data_dir>/demo.key].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for every immediate delivery.",
)
@click.option(
    "--follow",
    "follow_with",
    type=click.Choice(["auto", "api", "db"]),
    default="auto",
    show_default=True,
    help="Follow events through the admin API, the database, or the API when the hub has it.",
)
def demo(url: str, key: str | None, timeout: float, follow_with: str) -> None:
    """Send seed 003's scenarios to a running hub and show where each event went.

    A lead from the site, a lead from WhatsApp, a client registered, a service completed: each is
    sent signed as mappings/sources.yaml declares, then followed: the rules that matched, every
    delivery and its status, the delayed feedback request's due time. Exit 0 only when every
    immediate delivery arrived.
    """
    import httpx

    from hub.cli.group import load_settings
    from hub.core.db import create_db_engine
    from hub.core.errors import ConfigError
    from hub.ingress.sources import load_sources
    from hub.local import demo as scenarios
    from hub.local import demomode

    base = url.rstrip("/")
    settings = load_settings()
    with httpx.Client(base_url=base, timeout=10.0) as client:
        try:
            client.get("/health")
        except httpx.TransportError as exc:
            raise scenarios.HubDown(
                f"no hub answers at {base} (tried GET {base}/health); is `hub up` running?"
            ) from exc
        key = key or _saved_key(settings.data_dir)
        if not key:
            raise ConfigError(
                f"no demo key: {settings.data_dir / 'demo.key'} does not exist; "
                "start `hub up` in this directory first, or pass --key"
            )
        sources = load_sources(settings.mappings_dir)
        saved = demomode.demo_env(settings.data_dir)
        api = scenarios.AdminApiReader(client, key)

        def database() -> scenarios.EventReader:
            return scenarios.DatabaseReader(create_db_engine(settings))

        reader: scenarios.EventReader
        if follow_with == "api":
            reader = api
        elif follow_with == "db":
            reader = database()
        else:
            reader = scenarios.FallbackReader(api, database)
        click.echo(f"hub demo → {base} (tenant demo): seed 003's flows, followed as they happen")
        tally = scenarios.run_demo(
            client, base, key, sources, reader, click.echo, os.environ, saved, timeout
        )
    delayed = len(tally.delayed)
    click.echo("")
    click.echo(
        f"{tally.arrived} of {len(tally.immediate)} immediate deliveries arrived"
        + (f"; {delayed} scheduled for later" if delayed else "")
    )
    sink = saved.get("HUB_SINK_URL")
    if sink:
        click.echo(f"what the target systems received: {sink}/  or  hub sink --tail")
    for problem in tally.problems:
        click.echo(f"problem: {problem}", err=True)
    if not tally.ok:
        raise SystemExit(1)


def _saved_key(data_dir: Path) -> str | None:
    path = data_dir / "demo.key"
    return path.read_text().strip() if path.is_file() else None
