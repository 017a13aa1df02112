"""`hub keys create|list|revoke`: API keys, shown once at creation, stored only as a hash.

`create` prints the key alone on the last line of stdout (scripts read it there: `| tail -1`);
with `--json` it prints one object instead, the key under "key".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click
import orjson

from hub.core import audit
from hub.core.errors import BadRequest
from hub.core.models import ApiKey, KeyKind, utcnow
from hub.core.units import parse_duration


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(keys)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


def _expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise BadRequest(f"--expires: {exc}") from exc
    if seconds <= 0:
        raise BadRequest("--expires must be a positive duration such as 90d or 12h")
    return utcnow() + timedelta(seconds=seconds)


def _sources(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise BadRequest("--sources needs at least one source name, e.g. --sources site,zapi")
    return names


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


@keys.command()
@click.option("--tenant", "tenant_slug", default=None, help="Tenant slug (hub tenants create).")
@click.option(
    "--create-tenant",
    is_flag=True,
    help="Create the --tenant if it does not exist yet (for scripts written before hub tenants).",
)
@click.option("--name", required=True, help="What the key is for, e.g. 'site production'.")
@click.option("--admin", is_flag=True, help="Also allow /admin/* for this tenant's own data.")
@click.option("--operator", is_flag=True, help="An operator key across tenants (no --tenant).")
@click.option("--sources", default=None, help="Only these sources, comma-separated (default all).")
@click.option("--expires", default=None, help="Lifetime such as 90d or 12h (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def create(
    tenant_slug: str | None,
    create_tenant: bool,
    name: str,
    admin: bool,
    operator: bool,
    sources: str | None,
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a key and print it (it is shown only this once)."""
    from hub.cli.group import load_settings
    from hub.core.db import check_database, create_db_engine, session_factory
    from hub.ingress.apikeys import create_key

    if admin and operator:
        raise BadRequest("choose --admin (one tenant) or --operator (every tenant), not both")
    kind = KeyKind.OPERATOR if operator else KeyKind.ADMIN if admin else KeyKind.INGEST
    expires_at = _expiry(expires)
    source_names = _sources(sources)
    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        with session_factory(engine)() as session, session.begin():
            created = create_key(
                session,
                name=name,
                tenant_slug=tenant_slug,
                kind=kind,
                sources=source_names,
                expires_at=expires_at,
                create_tenant=create_tenant,
            )
            audit.record(
                session,
                audit.cli_actor(),
                "key.create",
                tenant_id=session.get(ApiKey, created.id).tenant_id,  # type: ignore[union-attr]
                target=f"key {created.id} {created.prefix}",
                detail={"kind": kind.value, "name": name},
            )
    finally:
        engine.dispose()
    if as_json:
        out = {
            "id": created.id,
            "tenant": created.tenant,
            "name": created.name,
            "kind": created.kind.value,
            "prefix": created.prefix,
            "sources": created.sources,
            "expires_at": _when(created.expires_at),
            "key": created.secret,
        }
        click.echo(orjson.dumps(out).decode())
        return
    who = f"tenant {created.tenant}" if created.tenant else "every tenant"
    scope = ", ".join(created.sources) if created.sources else "all sources"
    until = _when(created.expires_at) or "never"
    click.echo(f"created {created.kind.value} key {created.id} '{created.name}' for {who}")
    click.echo(f"sources: {scope}; expires: {until}")
    click.echo("store it now: it is not shown again")
    click.echo(created.secret)


def _row(key: ApiKey, tenant: str | None) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": tenant,
        "name": key.name,
        "kind": KeyKind(key.kind).value,
        "prefix": key.prefix,
        "sources": key.sources,
        "expires_at": _when(key.expires_at),
        "revoked_at": _when(key.revoked_at),
        "last_used_at": _when(key.last_used_at),
    }


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_command(as_json: bool) -> None:
    """List keys (never the keys themselves: their prefix only)."""
    from hub.cli.group import load_settings
    from hub.core.db import check_database, create_db_engine, session_factory
    from hub.ingress.apikeys import list_keys

    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        with session_factory(engine)() as session:
            rows = [_row(key, tenant) for key, tenant in list_keys(session)]
    finally:
        engine.dispose()
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    columns = [
        ("id", "ID"),
        ("tenant", "TENANT"),
        ("name", "NAME"),
        ("kind", "KIND"),
        ("prefix", "PREFIX"),
        ("sources", "SOURCES"),
        ("expires_at", "EXPIRES"),
        ("revoked_at", "REVOKED"),
        ("last_used_at", "LAST USED"),
    ]
    cells = [[_cell(row[field]) for field, _ in columns] for row in rows]
    widths = [
        max([len(title)] + [len(line[i]) for line in cells]) for i, (_, title) in enumerate(columns)
    ]
    click.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)))
    for line in cells:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


@keys.command()
@click.argument("key_id", type=int)
def revoke(key_id: int) -> None:
    """Revoke key KEY_ID (every web process refuses it within a few seconds)."""
    from hub.cli.group import load_settings
    from hub.core.db import check_database, create_db_engine, session_factory
    from hub.ingress.apikeys import revoke as revoke_key

    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        with session_factory(engine)() as session, session.begin():
            row = revoke_key(session, key_id)
            when = _when(row.revoked_at)
            audit.record(
                session,
                audit.cli_actor(),
                "key.revoke",
                tenant_id=row.tenant_id,
                target=f"key {key_id} {row.prefix}",
            )
    finally:
        engine.dispose()
    click.echo(f"revoked key {key_id} at {when}")
