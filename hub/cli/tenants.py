"""`hub tenants`: create, list, show, deactivate, activate, rename, settings, limits, delete.

The same functions as `/admin/tenants` (hub.ops.tenants, hub.ops.offboarding). An unknown slug
exits 2 naming the closest existing one; `delete` changes nothing without `--erase` and the typed
slug (or `--confirm SLUG` for scripts), and `--dry-run` shows its counts first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hub.core.errors import BadRequest, ConfigError


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(tenants)


@contextmanager
def _database() -> Iterator[Engine]:
    from hub.cli.group import load_settings
    from hub.core import schema
    from hub.core.db import check_database, create_db_engine

    engine = create_db_engine(load_settings())
    try:
        check_database(engine)
        if schema.current_revision(engine) != schema.head_revision():
            raise ConfigError("the database schema is not up to date: run hub migrate first")
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _session() -> Iterator[Session]:
    """A session in one transaction, committed when the command's work is done."""
    with _database() as engine, Session(engine) as session, session.begin():
        yield session


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    cells = [[_cell(row[field]) for field, _ in columns] for row in rows]
    widths = [max([len(t)] + [len(c[i]) for c in cells]) for i, (_, t) in enumerate(columns)]
    click.echo("  ".join(t.ljust(w) for (_, t), w in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
TIMEZONE_HELP = "IANA time zone for dates in mappings (default America/Sao_Paulo)."
LOCALE_HELP = "Locale for money and dates: pt-BR (default), pt-PT, es-ES, es-AR, en-GB, en-US."


@click.group()
def tenants() -> None:
    """The clinics and businesses hub serves: onboard, inspect, pause, limit, offboard."""


@tenants.command()
@click.argument("slug")
@click.option("--name", default=None, help="Display name (default: the slug).")
@click.option("--timezone", default=None, help=TIMEZONE_HELP)
@click.option("--locale", default=None, help=LOCALE_HELP)
@JSON_OPTION
def create(
    slug: str, name: str | None, timezone: str | None, locale: str | None, as_json: bool
) -> None:
    """Create tenant SLUG (then: hub keys create --tenant SLUG --name NAME)."""
    from hub.ops import tenants as ops

    with _session() as session:
        out = ops.settings_dict(
            ops.create(session, slug, name=name, timezone=timezone, locale=locale)
        )
    if as_json:
        _echo_json(out)
        return
    click.echo(
        f"created tenant {out['slug']} '{out['name']}' ({out['timezone']}, {out['locale']}); "
        f"its env variables start with {out['env_prefix']}"
    )
    click.echo(f"next: hub keys create --tenant {out['slug']} --name site")


@tenants.command(name="list")
@JSON_OPTION
def list_command(as_json: bool) -> None:
    """Every tenant with its usable keys, events of the last 24 h and open dead letters."""
    from hub.ops import tenants as ops

    with _session() as session:
        rows = ops.list_tenants(session)
    if as_json:
        _echo_json(rows)
        return
    _table(
        rows,
        [
            ("slug", "SLUG"),
            ("name", "NAME"),
            ("active", "ACTIVE"),
            ("keys", "KEYS"),
            ("events_24h", "EVENTS 24H"),
            ("open_dead_letters", "OPEN DEAD LETTERS"),
            ("timezone", "TIME ZONE"),
            ("locale", "LOCALE"),
        ],
    )


@tenants.command()
@click.argument("slug")
@JSON_OPTION
def show(slug: str, as_json: bool) -> None:
    """Settings, counts, keys, limits, and endpoint env variables unset for SLUG."""
    from hub.ops import tenants as ops

    with _session() as session:
        out = ops.show(session, slug)
    if as_json:
        _echo_json(out)
        return
    click.echo(f"tenant      {out['slug']} '{out['name']}'")
    click.echo(f"active      {_cell(out['active'])}")
    click.echo(f"time zone   {out['timezone']}")
    click.echo(f"locale      {out['locale']}")
    click.echo(f"env prefix  {out['env_prefix']}")
    click.echo(f"created     {out['created_at']}")
    click.echo(
        f"last 24 h   {out['events_24h']} events; {out['open_dead_letters']} open dead letters"
    )
    click.echo(f"keys        {out['keys']} usable")
    for key in out["key_list"]:
        state = "revoked" if key["revoked_at"] else f"expires {_cell(key['expires_at'])}"
        sources = ",".join(key["sources"]) if key["sources"] else "all sources"
        click.echo(
            f"  {key['id']:>4}  {key['kind']:<6}  {key['prefix']}  {key['name']}  "
            f"({sources}; {state}; last used {_cell(key['last_used_at'])})"
        )
    limits = ", ".join(f"{row['source']} {row['limit']}" for row in out["limits"])
    click.echo(f"limits      {limits or 'none (the sources’ own or HUB_DEFAULT_RATE_LIMIT)'}")
    if out["unset_env"]:
        click.echo("unset env   deliveries to these endpoints fail until they are set:")
        for line in out["unset_env"]:
            click.echo(f"  {line}")
    else:
        click.echo("unset env   none")


def _set_active(slug: str, active: bool) -> None:
    from hub.ops import tenants as ops

    with _session() as session:
        _, changed = ops.set_active(session, slug, active)
    if active:
        what = "activated" if changed else "already active"
        click.echo(f"{slug}: {what}; its keys work and its waiting deliveries go out again")
    else:
        what = "deactivated" if changed else "already inactive"
        click.echo(
            f"{slug}: {what}; its keys are refused within seconds and its deliveries wait "
            "(nothing is deleted; undo with: hub tenants activate " + slug + ")"
        )


@tenants.command()
@click.argument("slug")
def deactivate(slug: str) -> None:
    """Pause SLUG: keys refused, deliveries held without using attempts, data kept."""
    _set_active(slug, False)


@tenants.command()
@click.argument("slug")
def activate(slug: str) -> None:
    """Resume SLUG after `deactivate`."""
    _set_active(slug, True)


@tenants.command()
@click.argument("slug")
@click.argument("name")
def rename(slug: str, name: str) -> None:
    """Give SLUG a new display name (the slug itself stays: env variables derive from it)."""
    from hub.ops import tenants as ops

    with _session() as session:
        tenant = ops.update(session, slug, name=name)
        click.echo(f"{tenant.slug}: now '{tenant.name}'")


@tenants.command()
@click.argument("slug")
@click.option("--timezone", default=None, help=TIMEZONE_HELP)
@click.option("--locale", default=None, help=LOCALE_HELP)
def settings(slug: str, timezone: str | None, locale: str | None) -> None:
    """Change SLUG's time zone or locale (workers use them from their next batch)."""
    from hub.ops import tenants as ops

    if timezone is None and locale is None:
        raise BadRequest("give --timezone, --locale or both")
    with _session() as session:
        tenant = ops.update(session, slug, timezone=timezone, locale=locale)
        click.echo(f"{tenant.slug}: time zone {tenant.timezone}, locale {tenant.locale}")


# -- limits ---------------------------------------------------------------------------------------


@tenants.group()
def limits() -> None:
    """Per-tenant rate limits on ingest (ingress applies a change within seconds)."""


SOURCE_OPTION = click.option(
    "--source", default=None, help="Only this source (default: every source of the tenant)."
)


@limits.command(name="set")
@click.argument("slug")
@click.argument("rate")
@SOURCE_OPTION
def limits_set(slug: str, rate: str, source: str | None) -> None:
    """Limit SLUG to RATE, such as 600/min (for one --source, or every source)."""
    from hub.ops import tenants as ops

    with _session() as session:
        row = ops.set_limit(session, slug, source, rate)
    where = "every source" if row["source"] == ops.ALL_SOURCES else f"source {row['source']}"
    click.echo(f"{slug}: {row['limit']} for {where}")


@limits.command(name="unset")
@click.argument("slug")
@SOURCE_OPTION
def limits_unset(slug: str, source: str | None) -> None:
    """Remove SLUG's override (for one --source, or the tenant-wide one)."""
    from hub.ops import tenants as ops

    with _session() as session:
        removed = ops.unset_limit(session, slug, source)
    where = f"source {source}" if source and source != ops.ALL_SOURCES else "every source"
    state = "removed" if removed else "there was none"
    click.echo(f"{slug}: override for {where} {state}")


@limits.command(name="list")
@click.argument("slug")
@JSON_OPTION
def limits_list(slug: str, as_json: bool) -> None:
    """SLUG's overrides (`*`: every source)."""
    from hub.ops import tenants as ops

    with _session() as session:
        rows = ops.list_limits(session, slug)
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo(f"{slug}: no overrides (the sources' own limits or HUB_DEFAULT_RATE_LIMIT)")
        return
    _table(rows, [("source", "SOURCE"), ("limit", "LIMIT")])


# -- offboarding ----------------------------------------------------------------------------------


@tenants.command()
@click.argument("slug")
@click.option("--erase", is_flag=True, help="Really delete the tenant and all of its data.")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option("--confirm", "confirmed", default=None, help="The slug again, instead of typing it.")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@JSON_OPTION
def delete(
    slug: str, erase: bool, dry_run: bool, confirmed: str | None, batch_size: int, as_json: bool
) -> None:
    """Offboard SLUG: revoke its keys, delete its events, deliveries, attempts, dead letters,
    limits and keys in batches (resumable: run it again), then print the receipt (counts only)."""
    from hub.ops import offboarding

    with _database() as engine:
        with Session(engine) as session:
            counts = offboarding.plan(session, slug)
            resuming = offboarding.in_progress(
                session, offboarding.require_or_receipt(session, slug).id
            )
        total = sum(counts.values())
        summary = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())
        verb = "left to delete" if resuming else "would delete"
        if dry_run or not erase:
            if as_json:
                _echo_json({"tenant": slug, "dry_run": True, "counts": counts})
            else:
                click.echo(f"{slug}: {verb} {summary}")
            if not dry_run:
                raise BadRequest(
                    f"nothing changed: erasing '{slug}' deletes all of this; "
                    f"add --erase to do it (to pause it instead: hub tenants deactivate {slug})"
                )
            return
        click.echo(f"{slug}: {verb} {summary}", err=True)
        if confirmed is None:
            try:
                confirmed = click.prompt(
                    f"type the tenant's slug ({slug}) to erase it",
                    default="",
                    show_default=False,
                    err=True,
                )
            except click.Abort:
                confirmed = ""
        if confirmed != slug:
            raise BadRequest(f"confirmation did not match '{slug}': nothing changed")
        with click.progressbar(length=total, label="erasing", file=sys.stderr) as bar:
            receipt = offboarding.erase(
                engine, slug, batch_size=batch_size, progress=lambda _what, n: bar.update(n)
            )
    if as_json:
        _echo_json(receipt)
        return
    deleted = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in receipt["deleted"].items())
    click.echo(f"erased tenant {slug} (erasure {receipt['erasure']}, {receipt['finished_at']})")
    click.echo(f"receipt: {deleted}")
