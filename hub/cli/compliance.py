"""`hub rotate-keys`, `hub erase`, `hub export`, `hub audit`: keys, personal data, the audit log.

`rotate-keys` re-encrypts every blob under the newest key (hub.ops.rotation) with a progress bar
on stderr; run it again to resume. `erase` and `export` find a person through the keyed-hash
index (hub.ops.erasure): exactly one of --cpf, --phone, --email. `audit` lists the audit log,
newest first.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from hub.core.errors import BadRequest


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    for command in (rotate_keys, erase, export, audit_command):
        cli.add_command(command)


@click.command("rotate-keys")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--dry-run", is_flag=True, help="Only count what is not under the newest key.")
def rotate_keys(batch_size: int, dry_run: bool) -> None:
    """Re-encrypt payloads, requests, headers and tenant secrets under the newest key."""
    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core.crypto import Cipher
    from hub.core.db import check_database, create_db_engine
    from hub.ops.rotation import pending, rotate

    settings = load_settings()
    cipher = Cipher.from_settings(settings)
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        due = pending(engine, cipher)
        total = sum(due.values())
        if dry_run or not total:
            for label, count in due.items():
                click.echo(f"{label}: {count} not under key {cipher.key_id}")
            if not total:
                click.echo(f"everything is under key {cipher.key_id}")
            return
        bar: Any
        with click.progressbar(length=total, label="re-encrypting", file=sys.stderr) as bar:
            result = rotate(
                engine,
                cipher,
                audit.cli_actor(),
                batch_size=batch_size,
                progress=lambda _label, n: bar.update(n),
            )
    finally:
        engine.dispose()
    for label, count in result.done.items():
        failed = result.failed.get(label, 0)
        click.echo(
            f"{label}: {count} re-encrypted" + (f", {failed} undecryptable" if failed else "")
        )
    if result.remaining:
        raise BadRequest(
            f"{result.remaining} blobs are still not under key {result.key_id} (changed meanwhile "
            "or no configured key decrypts them): run hub rotate-keys again"
        )
    old = [k for k in cipher.key_ids if k != cipher.key_id]
    click.echo(
        f"everything is under key {cipher.key_id}"
        + (f"; keys {', '.join(old)} are no longer needed" if old else "")
    )


def _identifiers(cpf: str | None, phone: str | None, email: str | None) -> list[tuple[str, str]]:
    from hub.ingress.persons import normalise

    given = [
        (kind, value) for kind, value in (("cpf", cpf), ("phone", phone), ("email", email)) if value
    ]
    if not given:
        raise BadRequest("name the person: --cpf, --phone or --email")
    return [(kind, normalise(kind, value)) for kind, value in given]


PERSON = [
    click.option("--cpf", default=None, help="CPF, with or without punctuation."),
    click.option("--phone", default=None, help="Phone; Brazilian numbers without +55 are fine."),
    click.option("--email", default=None, help="E-mail address."),
    click.option("--tenant", "tenant_slug", default=None, help="Only this tenant (default all)."),
]


def person_options(func: Any) -> Any:
    for option in reversed(PERSON):
        func = option(func)
    return func


@click.command()
@person_options
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
def erase(
    cpf: str | None, phone: str | None, email: str | None, tenant_slug: str | None, dry_run: bool
) -> None:
    """Erase a person's data (LGPD art. 18): payloads, requests, headers, response excerpts."""
    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core.crypto import person_hasher
    from hub.core.db import check_database, create_db_engine
    from hub.ops.erasure import erase_person

    wanted = _identifiers(cpf, phone, email)
    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        receipt = erase_person(
            engine, person_hasher(settings), wanted, tenant_slug=tenant_slug,
            actor=audit.cli_actor(), dry_run=dry_run,
        )  # fmt: skip
    finally:
        engine.dispose()
    click.echo(orjson.dumps(receipt, option=orjson.OPT_INDENT_2).decode())


@click.command()
@person_options
def export(cpf: str | None, phone: str | None, email: str | None, tenant_slug: str | None) -> None:
    """Print a person's data as JSON (LGPD access right): events, deliveries, dead letters."""
    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core.crypto import Cipher, person_hasher
    from hub.core.db import check_database, create_db_engine
    from hub.ops.erasure import export_person

    wanted = _identifiers(cpf, phone, email)
    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        data = export_person(
            engine, Cipher.from_settings(settings), person_hasher(settings), wanted,
            tenant_slug=tenant_slug, actor=audit.cli_actor(),
        )  # fmt: skip
    finally:
        engine.dispose()
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@click.command("audit")
@click.option("--tenant", "tenant_slug", default=None, help="Only this tenant.")
@click.option("--action", default=None, help="Only this action, e.g. secret.set.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def audit_command(tenant_slug: str | None, action: str | None, limit: int, as_json: bool) -> None:
    """The audit log of credential and admin operations, newest first."""
    from sqlalchemy.orm import Session

    from hub.cli.group import load_settings
    from hub.core import audit
    from hub.core.db import check_database, create_db_engine
    from hub.core.errors import UnknownTenant
    from hub.core.tenants import by_slug

    settings = load_settings()
    engine = create_db_engine(settings)
    try:
        check_database(engine)
        tenant_id = None
        if tenant_slug is not None:
            with Session(engine) as session:
                tenant = by_slug(session, tenant_slug)
                if tenant is None:
                    raise UnknownTenant(f"no tenant {tenant_slug!r}")
                tenant_id = tenant.id
        rows = audit.entries(engine, audit.AuditFilter(tenant_id, action, None, limit))
    finally:
        engine.dispose()
    if as_json:
        click.echo(orjson.dumps(rows).decode())
        return
    for row in rows:
        detail = orjson.dumps(row["detail"]).decode() if row["detail"] else ""
        where = row["tenant"] or "-"
        cells = [row["at"], row["actor"], where, row["action"], row["target"] or "-", detail]
        click.echo("  ".join(cells).rstrip())
