"""`hub sink`: the DEMO STAND-IN for the target systems (hub.local.sink); `--tail` watches it."""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING

import click

from hub.core.errors import SettingError

if TYPE_CHECKING:
    from hub.local.sink import SinkStore

DEFAULT_PORT = 8100
DEFAULT_SMTP_PORT = 2525


def register(cli: click.Group) -> None:
    """Add this module's commands to `cli`."""
    cli.add_command(sink)


def _loopback(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        if host == "localhost":
            return host
    raise SettingError("--host", f"the demo sink listens on loopback only, not {host}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="HUB_SINK_PORT",
    help="HTTP port (CRM, finance, operations, marketing, Z-API).",
)
@click.option(
    "--smtp-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_SMTP_PORT,
    show_default=True,
    envvar="HUB_SINK_SMTP_PORT",
    help="SMTP port (e-mail); 0 turns the SMTP sink off.",
)
@click.option(
    "--secret",
    "secrets_",
    multiple=True,
    envvar="HUB_SINK_SECRETS",
    help="Standard Webhooks secret(s) to verify with [the one in <data_dir>/sink.secret].",
)
@click.option(
    "--zapi-client-token",
    envvar="HUB_SINK_ZAPI_CLIENT_TOKEN",
    default=None,
    help="Client-Token that Z-API calls must carry (unset: any).",
)
@click.option(
    "--smtp-starttls",
    is_flag=True,
    help="Offer STARTTLS on SMTP, with a certificate from a demo CA in <data_dir>/sink-tls/.",
)
@click.option("--tail", is_flag=True, help="Print what the sink received, and follow it.")
@click.option("--no-follow", is_flag=True, help="With --tail: print and exit.")
@click.option("--system", default=None, help="With --tail: only this target system (e.g. crm).")
@click.option(
    "--last",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="With --tail: start with the last N.",
)
@click.option("--clear", is_flag=True, help="Forget everything received, then exit.")
def sink(
    host: str,
    port: int,
    smtp_port: int,
    secrets_: tuple[str, ...],
    zapi_client_token: str | None,
    smtp_starttls: bool,
    tail: bool,
    no_follow: bool,
    system: str | None,
    last: int,
    clear: bool,
) -> None:
    """Run the DEMO STAND-IN for the CRM, finance, operations, marketing, Z-API and e-mail.

    It verifies each webhook's Standard Webhooks signature and records what every target system
    received in <data_dir>/sink.db; its page (GET /) and `hub sink --tail` show it. `hub up`
    starts it by itself for the demo tenant when the example endpoints are not configured.
    """
    from hub.cli.group import load_settings
    from hub.core import logs
    from hub.core.errors import ConfigError
    from hub.local.sink import (
        LABEL,
        STORE_FILE,
        SinkConfig,
        SinkStore,
        ensure_tls,
        load_or_create_secret,
        run_sink,
    )

    settings = load_settings()
    if (tail or clear) and not (settings.data_dir / STORE_FILE).is_file():
        raise ConfigError(
            f"the demo sink has recorded nothing here: {settings.data_dir / STORE_FILE} does not "
            "exist (run this where `hub up` or `hub sink` runs, or set HUB_DATA_DIR)"
        )
    store = SinkStore.in_data_dir(settings.data_dir)
    if clear:
        click.echo(f"hub sink ({LABEL}): forgot {store.clear()} received item(s)")
        return
    if tail:
        _tail(store, system, last, follow=not no_follow)
        return
    _loopback(host)
    logs.configure(settings.log_format, settings.log_level)
    secret_list = [s for value in secrets_ for s in value.split()]
    if not secret_list:
        secret_list = [load_or_create_secret(settings.data_dir)]
    config = SinkConfig(tuple(secret_list), zapi_client_token or None)
    tls = ensure_tls(settings.data_dir) if smtp_starttls and smtp_port else None
    base = f"http://{host}:{port}"
    smtp = f"; SMTP on {host}:{smtp_port}" if smtp_port else ""
    smtp += " (STARTTLS)" if tls else ""
    click.echo(f"hub sink: {LABEL} for the target systems on {base}{smtp}", err=True)
    click.echo(f"  page: {base}/   recorded in {store.path}   watch: hub sink --tail", err=True)
    run_sink(store, config, host, port, smtp_port or None, tls)


def _tail(store: SinkStore, system: str | None, last: int, follow: bool) -> None:
    from hub.local.sink import LABEL, describe

    click.echo(f"hub sink ({LABEL}): what each target system received", err=True)
    items = store.list(system=system, last=last)
    for item in items:
        click.echo(describe(item, width=_width()))
    seen = items[-1].id if items else _newest(store)
    while follow:
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return
        for item in store.list(after=seen or 0, system=system):
            click.echo(describe(item, width=_width()))
            seen = item.id


def _newest(store: SinkStore) -> int:
    newest = store.list(last=1)
    return (newest[-1].id or 0) if newest else 0


def _width() -> int:
    import shutil

    return max(80, shutil.get_terminal_size((160, 24)).columns)
