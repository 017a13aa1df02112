"""`hub secrets set|list|rm`: tenant secrets in the database, for `secret:NAME` references.

The value of `set` is read from stdin when it is not a terminal (`printf %s "$TOKEN" | hub secrets
set --tenant clinic-1 CRM_TOKEN`; one trailing newline is dropped) or else from a hidden prompt;
never from an argument, which would land in shell history and `ps`. Running workers and web
processes use a new value within a few seconds.
"""

from __future__ import annotations

import sys

import click
import orjson

from hub.core.errors import BadRequest

TENANT = click.option("--tenant", "tenant_slug", required=True, help="Tenant slug.")


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(secrets)


@click.group()
def secrets() -> None:
    """Set, list and remove tenant secrets (values are never shown)."""


def _read_value() -> str:
    if sys.stdin.isatty():
        value: str = click.prompt("value", hide_input=True, confirmation_prompt=True)
        return value
    value = sys.stdin.read()
    if value.endswith("\n"):
        value = value[:-1]
        if value.endswith("\r"):
            value = value[:-1]
    if not value:
        raise BadRequest("no value on stdin (pipe it in, or run on a terminal to be prompted)")
    return value


@secrets.command(name="set")
@TENANT
@click.argument("name")
def set_command(tenant_slug: str, name: str) -> None:
    """Store secret NAME for a tenant (a new version when it exists)."""
    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core import secrets as store
    from hub.core.crypto import Cipher
    from hub.core.db import check_database, create_db_engine
    from hub.core.queues import connect_redis

    store.validate_name(name)
    value = _read_value()
    settings = load_settings()
    engine = create_db_engine(settings)
    redis = connect_redis(settings)
    try:
        check_database(engine)
        cipher = Cipher.from_settings(settings)
        version = store.set_secret(
            engine, cipher, redis, tenant_slug, name, value, audit.cli_actor()
        )
    finally:
        redis.close()
        engine.dispose()
    click.echo(f"set secret {name} of tenant {tenant_slug}: version {version}")


@secrets.command(name="list")
@click.option("--tenant", "tenant_slug", default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(tenant_slug: str | None, as_json: bool) -> None:
    """Names, versions, who set them and when; never values."""
    from hub.cli.group import load_settings
    from hub.core import secrets as store
    from hub.core.db import check_database, create_db_engine

    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        rows = store.list_secrets(engine, tenant_slug)
    finally:
        engine.dispose()
    out = [
        {
            "tenant": r.tenant,
            "name": r.name,
            "version": r.version,
            "updated_by": r.updated_by,
            "updated_at": r.updated_at.isoformat(timespec="seconds") + "Z",
        }
        for r in rows
    ]
    if as_json:
        click.echo(orjson.dumps(out).decode())
        return
    if not out:
        click.echo("no secrets")
        return
    titles = ["TENANT", "NAME", "VERSION", "UPDATED BY", "UPDATED AT"]
    cells = [[str(v) for v in row.values()] for row in out]
    widths = [max([len(t)] + [len(c[i]) for c in cells]) for i, t in enumerate(titles)]
    click.echo("  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@secrets.command(name="rm")
@TENANT
@click.argument("name")
def rm_command(tenant_slug: str, name: str) -> None:
    """Remove secret NAME of a tenant (references fall back to the environment)."""
    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core import secrets as store
    from hub.core.db import check_database, create_db_engine
    from hub.core.queues import connect_redis

    settings = load_settings()
    engine = create_db_engine(settings)
    redis = connect_redis(settings)
    try:
        check_database(engine)
        store.remove_secret(engine, redis, tenant_slug, name, audit.cli_actor())
    finally:
        redis.close()
        engine.dispose()
    click.echo(f"removed secret {name} of tenant {tenant_slug}")
